"""Tip shapes: a viewer's tip request, its invoice and status, and the streamer's settings."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from simulcast.control.schemas.lightning import MAX_SATS

TipStatus = Literal["pending", "paid", "expired"]


class TipIn(BaseModel):
    """``POST /api/public/tips``."""

    model_config = ConfigDict(extra="forbid")
    amountSats: int = Field(ge=1, le=MAX_SATS, description="Within the streamer's range")
    message: str | None = Field(
        default=None,
        max_length=4000,
        description="Plain text, at most 280 characters (longer or with markup: 400)",
    )


class TipStatusOut(BaseModel):
    """What a viewer's player may know about its tip."""

    paymentHash: str
    amountSats: int
    status: TipStatus
    expiresAt: int = Field(description="Unix milliseconds")


class TipInvoiceOut(TipStatusOut):
    """A tip invoice made by the streamer's own wallet."""

    invoice: str = Field(description="BOLT11 invoice (show it as a QR code)")


class TipOfferOut(BaseModel):
    """Whether the player should offer tips: ``available`` false hides the button."""

    available: bool
    minSats: int
    maxSats: int
    presets: list[int] = Field(description="Suggested amounts within the range")
    reason: str | None = Field(
        description="Why not: tips_disabled, no_wallet or wallet_cannot_invoice"
    )
    message: str | None


class TipOut(BaseModel):
    """A tip as the streamer sees it (dashboard, ``GET /api/wallet/tips``)."""

    paymentHash: str
    amountSats: int
    message: str | None
    status: TipStatus
    streamKeyId: int | None
    createdAt: int
    expiresAt: int
    paidAt: int | None


class TipSettingsIn(BaseModel):
    """``PUT /api/wallet/tips/settings``."""

    model_config = ConfigDict(extra="forbid")
    enabled: bool
    minSats: int = Field(default=100, ge=1, le=MAX_SATS)
    maxSats: int = Field(default=100_000, ge=1, le=MAX_SATS)


class TipSettingsOut(BaseModel):
    """The account's tip settings, and whether its wallet can take tips now."""

    enabled: bool
    minSats: int
    maxSats: int
    available: bool
    reason: str | None
    message: str | None
