"""Request and response shapes of the stream and destination management endpoints."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt

DestinationType = Literal["rtmp", "twitch", "self-hosted", "cloud-archive"]


class DestinationConfig(BaseModel):
    """Destination settings: ``url``/``key`` for rtmp and twitch; ``mode``/``dvrWindowSeconds``/
    ``lowLatency`` for self-hosted; ``bucket``/``prefix``/``endpointUrl``/``accessKeyId``/
    ``secretAccessKey`` for cloud-archive (each optional: the server's S3 settings fill in)."""

    model_config = ConfigDict(extra="forbid")
    url: str | None = Field(default=None, max_length=2048)
    key: str | None = Field(default=None, max_length=512)
    mode: Literal["testing", "production"] | None = None
    dvrWindowSeconds: StrictInt | None = Field(default=None, ge=0, le=3600)
    lowLatency: StrictBool | None = Field(
        default=None,
        description="self-hosted: serve low-latency HLS (parts, blocking reload) in production "
        "mode; default true",
    )
    bucket: str | None = Field(
        default=None, max_length=63, description="cloud-archive: S3 bucket (else the server's)"
    )
    prefix: str | None = Field(
        default=None, max_length=512, description="cloud-archive: key prefix"
    )
    endpointUrl: str | None = Field(
        default=None, max_length=2048, description="cloud-archive: S3 endpoint (empty: AWS)"
    )
    accessKeyId: str | None = Field(default=None, max_length=128)
    secretAccessKey: str | None = Field(
        default=None, max_length=256, description="cloud-archive: stored sealed, never returned"
    )


class DestinationIn(BaseModel):
    """A destination to add to a stream."""

    model_config = ConfigDict(extra="forbid")
    type: DestinationType
    config: DestinationConfig = Field(default_factory=DestinationConfig)
    enabled: bool = True


class DestinationPatch(BaseModel):
    """Fields of a destination that can change after creation."""

    model_config = ConfigDict(extra="forbid")
    enabled: bool | None = None
    config: DestinationConfig | None = None


class ProtectionIn(BaseModel):
    """Disconnect protection settings; an absent field stays as it is (default: on, 120 s)."""

    model_config = ConfigDict(extra="forbid")
    enabled: bool | None = None
    graceSeconds: StrictInt | None = Field(default=None, ge=1, le=1800)


class ProtectionOut(BaseModel):
    """Disconnect protection: when the publisher drops without unpublishing, destinations get
    a slate for up to ``graceSeconds`` while the session waits for it (or another device)."""

    enabled: bool
    graceSeconds: int


class StreamCreate(BaseModel):
    """A new stream key, optionally with its initial destinations (Unified Creation)."""

    model_config = ConfigDict(extra="forbid")
    label: str = Field(default="Untitled stream", min_length=1, max_length=200)
    # At most ``max_destinations_per_stream`` (a setting, checked by the endpoint).
    destinations: list[DestinationIn] | None = None
    protection: ProtectionIn | None = None
    srtPassphrase: str | None = Field(
        default=None,
        min_length=10,
        max_length=79,
        description="SRT publishers must encrypt (AES) with this passphrase; null: clear SRT",
    )


class StreamPatch(BaseModel):
    """Fields of a stream that can change after creation."""

    model_config = ConfigDict(extra="forbid")
    label: str | None = Field(default=None, min_length=1, max_length=200)
    protection: ProtectionIn | None = None
    srtPassphrase: str | None = Field(
        default=None,
        min_length=10,
        max_length=79,
        description="SRT publishers must encrypt (AES) with this; null clears it, absent keeps it",
    )


class LimitsIn(BaseModel):
    """Per-session caps; a field set to ``null`` clears it, an absent field stays as it is."""

    model_config = ConfigDict(extra="forbid")
    maxSats: StrictInt | None = Field(default=None, ge=0, le=2**53)
    maxDurationMinutes: StrictInt | None = Field(default=None, ge=1, le=525600)


class DestinationOut(BaseModel):
    """A destination as shown to its owner: the URL masked past the app path, live state added."""

    id: int
    type: DestinationType
    platform: str
    enabled: bool
    url: str | None
    createdAt: int
    mode: str | None = None
    dvrWindowSeconds: int | None = None
    lowLatency: bool | None = None
    playbackToken: str | None = None
    bucket: str | None = None
    prefix: str | None = None
    endpointUrl: str | None = None
    accessKeyId: str | None = None
    state: str = Field(
        description="idle | disabled | connecting | live | retrying | failed | stopped"
    )
    attempt: int = 0
    nextTryAt: int | None = None
    lastError: str | None = None
    bytesSent: int = 0
    bitrateKbps: float = 0.0
    droppedFrames: int = 0
    reconnects: int = 0
    protecting: bool = Field(
        default=False, description="Connected and receiving the slate: the publisher is away"
    )


class StreamSummary(BaseModel):
    """A row of ``GET /api/streams``."""

    id: int
    streamKey: str
    label: str
    status: Literal["idle", "active"]
    createdAt: int
    locked: bool = False
    lockReason: str | None = None


class StreamOut(StreamSummary):
    """``GET /api/streams/{id}``: the stream with limits, live session and destinations."""

    limits: dict[str, int]
    startedAt: int | None
    sessionId: str | None = None
    destinations: list[DestinationOut]
    protection: ProtectionOut
    protecting: bool = Field(
        default=False, description="Live, publisher away: destinations get the slate"
    )
    protectionSecondsLeft: int | None = Field(
        default=None, description="While protecting: seconds until the session ends"
    )
    srtPassphrase: str | None = Field(
        default=None, description="The SRT passphrase publishers encrypt with (null: none)"
    )


class StreamCreated(BaseModel):
    """``POST /api/streams``: both of the seed's shapes in one (additive fields)."""

    id: int
    streamKey: str
    label: str
    status: Literal["idle", "active"] = "idle"
    limits: dict[str, int] = Field(default_factory=dict)
    destinationsCount: int = 0
    destinations: list[dict[str, Any]] = Field(
        default_factory=list, description="Created destinations with any one-time apiKey"
    )
    protection: ProtectionOut
    srtPassphrase: str | None = None


class DestinationCreated(BaseModel):
    """``POST /api/streams/{id}/destinations``; ``apiKey`` (shown once) for self-hosted."""

    success: bool = True
    id: int
    apiKey: str | None = None
    playbackToken: str | None = None
