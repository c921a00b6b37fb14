"""Request and response shapes of the webhook management endpoints."""

from __future__ import annotations

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, StrictInt


class WebhookCreate(BaseModel):
    """A new webhook (the seed's field names; ``streamKeyId`` is accepted too)."""

    model_config = ConfigDict(extra="forbid")
    url: str = Field(min_length=1, max_length=2048, description="HTTPS endpoint")
    events: list[str] = Field(max_length=20, description="Event names to subscribe to")
    secret: str | None = Field(
        default=None, max_length=500, description="Signing secret for X-Simulcast-Signature"
    )
    stream_key_id: StrictInt | None = Field(
        default=None,
        ge=1,
        le=2**53,
        validation_alias=AliasChoices("stream_key_id", "streamKeyId"),
        description="Only events of this stream key; null for all streams",
    )


class WebhookOut(BaseModel):
    """A webhook as listed: the secret never leaves the server, ``hasSecret`` says if one is set."""

    id: int
    url: str
    events: list[str]
    streamKeyId: int | None
    hasSecret: bool
    createdAt: int


class WebhookTestQueued(BaseModel):
    """The queued ``test.ping``; its delivery shows up in the webhook's delivery log."""

    success: bool = True
    deliveryId: str
    message: str = "test.ping queued"


class DeliveryOut(BaseModel):
    """One event delivery to one webhook and where it stands (times in unix ms)."""

    id: str
    event: str
    status: str = Field(description="pending, delivered or failed")
    attempts: int
    lastStatusCode: int | None
    lastResponse: str | None = Field(description="The last response body, truncated")
    lastError: str | None
    nextAttemptAt: int | None = Field(description="When the next try is due; null unless pending")
    createdAt: int
    deliveredAt: int | None
