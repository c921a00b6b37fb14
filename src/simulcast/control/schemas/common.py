"""Shapes shared by every dialect."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict


class ErrorBody(BaseModel):
    """Every error: a human sentence, sometimes with the offending field or a retry hint."""

    model_config = ConfigDict(extra="allow")
    error: str


class Success(BaseModel):
    """``{"success": true}``."""

    success: bool = True


class SuccessMessage(Success):
    """``{"success": true, "message": "..."}``."""

    message: str


def error_responses(described: Mapping[int, str]) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for these error statuses, each answered with an :class:`ErrorBody`."""
    return {status: {"model": ErrorBody, "description": text} for status, text in described.items()}


ERRORS = error_responses(
    {
        400: "Invalid body or query; `field` names the culprit",
        401: "Missing or invalid credential",
        403: "Credential of the wrong type for this endpoint",
        404: "No such object on this account",
        409: "Not possible in the object's current state",
        413: "Request body over 1 MiB",
        429: "Rate limit exceeded (`retryAfter` seconds)",
    }
)
