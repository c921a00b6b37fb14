"""Shapes of the endpoints that read money and time."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, StrictInt


class WalletBalanceOut(BaseModel):
    """``GET /api/wallet/balance``: sats; ``cached`` says it came from the cached balance row."""

    balance: int
    cached: bool


class BandwidthUsage(BaseModel):
    """``GET /api/bandwidth/usage``."""

    totalGB: float
    overageGB: float
    overageSats: int


class DashboardStats(BaseModel):
    """``GET /api/dashboard/stats``."""

    totalMinutes: float
    totalSatsSpent: int


class HistoryItem(BaseModel):
    """A row of ``GET /api/stream-history``: one session on one platform."""

    id: int
    streamKeyId: int
    streamKeyLabel: str
    sessionId: str
    platform: str
    startedAt: int = Field(description="Unix milliseconds")
    endedAt: int | None = Field(description="Unix milliseconds; null while live")
    durationMinutes: float
    totalCostSats: int


class CreditIn(BaseModel):
    """An operator's credit to an account's wallet."""

    model_config = ConfigDict(extra="forbid")
    account: str = Field(min_length=1, max_length=200, description="Account name")
    sats: StrictInt = Field(gt=0, le=21_000_000 * 100_000_000)
    reason: str = Field(default="operator credit", max_length=500)
    idempotencyKey: str | None = Field(default=None, max_length=150)


class CreditOut(BaseModel):
    """The credit's result and the new balance."""

    success: bool = True
    balance: int
    duplicate: bool = False


class LedgerItem(BaseModel):
    """A row of ``GET /api/wallet/ledger``: one posting to the wallet."""

    id: int
    kind: str = Field(description="credit, stream_minute, bandwidth, ...")
    amountSats: int = Field(description="Signed: credits positive, charges negative")
    memo: str
    createdAt: int = Field(description="Unix milliseconds")
