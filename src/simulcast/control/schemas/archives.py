"""Shapes of the archive endpoints."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

ArchiveStatus = Literal["recording", "uploading", "uploaded", "failed"]


class ArchiveOut(BaseModel):
    """A recording of one session to S3-compatible storage."""

    id: int
    fileName: str = Field(description="archive_{streamKeyId}_{startedAtUnixSeconds}.mp4")
    streamKeyId: int
    sessionId: str
    status: ArchiveStatus
    sizeBytes: int = Field(description="Bytes recorded so far (final once uploaded)")
    durationSeconds: float = Field(description="Known once the recording is complete")
    createdAt: int = Field(description="Unix milliseconds")
    partsUploaded: int = Field(description="Multipart upload parts stored so far")
    error: str | None = Field(default=None, description="Why it failed (or why it is retrying)")
    url: str | None = Field(default=None, description="Presigned GET URL, once uploaded")


class RecoverIn(BaseModel):
    """Which failed upload to retry."""

    model_config = ConfigDict(extra="forbid")
    fileName: str = Field(min_length=1, max_length=300)
