"""Shapes of the archive endpoints."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class ArchiveOut(BaseModel):
    """A recording of one session."""

    id: int
    fileName: str
    streamKeyId: int
    status: str = Field(description="recording | uploading | ready | failed")
    sizeBytes: int
    durationSeconds: float
    url: str | None
    createdAt: int


class RecoverIn(BaseModel):
    """Which failed upload to retry."""

    model_config = ConfigDict(extra="forbid")
    fileName: str = Field(min_length=1, max_length=300)
