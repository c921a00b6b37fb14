"""Dashboard login shapes."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class LoginIn(BaseModel):
    """Account name and password."""

    model_config = ConfigDict(extra="forbid")
    username: str = Field(min_length=1, max_length=200)
    password: str = Field(min_length=1, max_length=1024)


class LoginOut(BaseModel):
    """A session token (use as ``Authorization: Bearer``) and its expiry (unix ms)."""

    token: str
    expiresAt: int
