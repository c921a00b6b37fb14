"""Lightning top-up shapes: wallet connection, invoices, auto top-up rule."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

MAX_SATS = 21_000_000 * 100_000_000


class NwcConnectIn(BaseModel):
    """``POST /api/wallet/nwc``."""

    model_config = ConfigDict(extra="forbid")
    uri: str = Field(
        min_length=1, max_length=2000, description="nostr+walletconnect://<wallet key>?relay=..."
    )


class BudgetOut(BaseModel):
    """A wallet connection's spending budget."""

    usedSats: int
    totalSats: int
    renewsAt: int | None = Field(description="Unix seconds")
    renewalPeriod: str | None = Field(description="daily, weekly, monthly, yearly or never")


class NwcConnectionOut(BaseModel):
    """A connected wallet as its owner sees it: never the connection secret."""

    connected: bool = True
    alias: str | None
    methods: list[str]
    notifications: list[str]
    walletPubkey: str
    balanceSats: int | None = Field(description="Balance the wallet reported when connected")
    budget: BudgetOut | None = Field(
        description="The connection's spending budget as the wallet reported it when connected "
        "(get_budget); null when it reports none"
    )
    connectedAt: int = Field(description="Unix milliseconds")


class TopupIn(BaseModel):
    """``POST /api/wallet/topup``."""

    model_config = ConfigDict(extra="forbid")
    amountSats: int = Field(ge=1, le=MAX_SATS)
    payWithNwc: bool = Field(
        default=False, description="Have the connected wallet pay the invoice now"
    )


class TopupOut(BaseModel):
    """A top-up invoice and its state."""

    invoice: str = Field(description="BOLT11 invoice (show it as a QR code)")
    paymentHash: str
    amountSats: int
    expiresAt: int = Field(description="Unix milliseconds")
    status: Literal["pending", "paid", "expired", "failed"]
    source: str = Field(description="manual | auto | fee")
    createdAt: int = Field(description="Unix milliseconds")
    paidAt: int | None = Field(description="Unix milliseconds")
    error: str | None = Field(description="Why a failed top-up failed (the wallet's message)")


class AutoTopupIn(BaseModel):
    """``PUT /api/wallet/auto-topup``: below ``belowSats``, pay ``amountSats`` from the
    connected wallet, at most ``maxPerDaySats`` in any 24 hours."""

    model_config = ConfigDict(extra="forbid")
    belowSats: int = Field(ge=1, le=MAX_SATS)
    amountSats: int = Field(ge=1, le=MAX_SATS)
    maxPerDaySats: int = Field(ge=1, le=MAX_SATS)


class AutoTopupOut(BaseModel):
    """The auto top-up rule (``enabled: false`` when none is set) and its last failure."""

    enabled: bool
    belowSats: int | None = None
    amountSats: int | None = None
    maxPerDaySats: int | None = None
    spentLast24hSats: int = 0
    lastFailure: str | None = None
    lastFailureAt: int | None = Field(default=None, description="Unix milliseconds")
