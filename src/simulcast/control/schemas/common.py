"""Shapes shared by every dialect."""

from __future__ import annotations

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


ERRORS = {
    400: {"model": ErrorBody, "description": "Invalid body or query; `field` names the culprit"},
    401: {"model": ErrorBody, "description": "Missing or invalid credential"},
    403: {"model": ErrorBody, "description": "Credential of the wrong type for this endpoint"},
    404: {"model": ErrorBody, "description": "No such object on this account"},
    409: {"model": ErrorBody, "description": "Not possible in the object's current state"},
    413: {"model": ErrorBody, "description": "Request body over 1 MiB"},
    429: {"model": ErrorBody, "description": "Rate limit exceeded (`retryAfter` seconds)"},
}
