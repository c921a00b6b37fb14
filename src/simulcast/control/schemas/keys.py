"""Shapes of the key and dashboard-session management endpoints."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class KeyCreate(BaseModel):
    """A new permanent key; the label is for people (e.g. "CI", "OBS laptop")."""

    model_config = ConfigDict(extra="forbid")
    label: str = Field(default="", max_length=200)


class KeyOut(BaseModel):
    """A permanent ``sk_`` key as listed: never the secret, only its first characters."""

    id: int
    prefix: str
    label: str
    createdAt: int
    lastUsedAt: int | None = Field(description="Unix ms, to the minute; null if never used")


class KeyCreated(BaseModel):
    """A new permanent key: ``key`` is shown this once and stored only as a hash."""

    id: int
    key: str
    label: str
    prefix: str
    createdAt: int


class SessionOut(BaseModel):
    """An open dashboard session (login); ``current`` marks the one making this request."""

    id: int
    createdAt: int
    expiresAt: int
    lastUsedAt: int | None = Field(description="Unix ms, to the minute; null if never used")
    current: bool


class PublicKeyRotated(BaseModel):
    """A self-hosted destination's new public key (shown once); the old one is refused."""

    apiKey: str
