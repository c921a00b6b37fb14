"""Shapes of the public (``pk_``) endpoints, exactly as the seed shows them."""

from __future__ import annotations

from pydantic import BaseModel, Field


class Dvr(BaseModel):
    """Rolling buffer (DVR-style rewind) information."""

    enabled: bool = Field(description="Whether rewind is available (only while live)")
    windowSeconds: int = Field(description="Seconds of rewind currently available")
    maxWindowSeconds: int = Field(description="The configured maximum window")
    availableFrom: int | None = Field(description="Unix seconds of the oldest rewindable moment")


class Bandwidth(BaseModel):
    """Bandwidth of the current clock hour (GB strings with two decimals)."""

    usedGB: str
    limitGB: int
    remainingGB: str
    overageGB: str
    overageSats: int
    hourStart: int = Field(description="Start of the current hour bucket, unix seconds")


class StreamStatus(BaseModel):
    """``GET /api/public/stream/status``."""

    isLive: bool
    hlsReady: bool
    hlsUrl: str | None
    streamKeyLabel: str = Field(description="Deprecated alias of `label`")
    label: str
    startedAt: int | None = Field(description="Unix seconds")
    playbackToken: str | None
    dvr: Dvr
    bandwidth: Bandwidth


class Pricing(BaseModel):
    """Current prices; an operator may set them all to 0."""

    BANDWIDTH_LIMIT_GB_PER_HOUR: int
    BANDWIDTH_OVERAGE_SATS_PER_GB: int
    COST_PER_PLATFORM: int
    FREE_PLATFORMS: int
    INSTANCE_SATS_PER_HOUR: int = Field(description="v1 instances, billed per running second")


class PublicConfig(BaseModel):
    """``GET /api/public/config``."""

    pricing: Pricing
    version: str
    timestamp: int = Field(description="Unix seconds")


class ActiveStreamCost(BaseModel):
    """One live session's spend so far."""

    sessionId: str
    streamKeyId: int
    label: str
    streamKeyLabel: str
    startedAt: int = Field(description="Unix milliseconds")
    durationMinutes: int
    durationSeconds: int = Field(description="Seconds past the last whole minute")
    totalCharged: int
    ratePerMinute: int


class ActiveCost(BaseModel):
    """``GET /api/public/streams/active/cost``."""

    hasActiveStream: bool
    totalCost: int
    streams: list[ActiveStreamCost]
