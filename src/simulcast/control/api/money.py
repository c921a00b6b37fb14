"""Endpoints that read money and time: wallet, bandwidth, stats, history; operator credits."""

from __future__ import annotations

import time
from typing import Annotated, Literal

from fastapi import APIRouter, Query

from simulcast.control.api.deps import Admin, Ctx, Manager
from simulcast.control.api.errors import ApiError
from simulcast.control.api.hls import Meter
from simulcast.control.schemas.common import ERRORS
from simulcast.control.schemas.money import (
    BandwidthUsage,
    CreditIn,
    CreditOut,
    DashboardStats,
    HistoryItem,
    WalletBalanceOut,
)
from simulcast.control.services import auth, ledger, pricing, reports, usage
from simulcast.control.timeutil import hour_start, now_ms

router = APIRouter(prefix="/api", tags=["Money"], responses=ERRORS)  # type: ignore[arg-type]

TimeFilter = Literal["hour", "day", "week", "month", "year", "all"]
_FILTER_MS = {
    "day": 86_400_000,
    "week": 7 * 86_400_000,
    "month": 30 * 86_400_000,
    "year": 365 * 86_400_000,
}
Millis = Annotated[int | None, Query(ge=0, le=2**53, description="Unix milliseconds")]


def _window(filter_: TimeFilter, start: int | None, end: int | None) -> tuple[int | None, int]:
    """``[start_ms, end_ms]`` of a filter; explicit ``startDate``/``endDate`` take precedence."""
    now = now_ms()
    end_ms = end if end is not None else now
    if start is not None:
        start_ms: int | None = start
    elif filter_ == "hour":
        start_ms = hour_start(now / 1000) * 1000
    elif filter_ == "all":
        start_ms = None
    else:
        start_ms = end_ms - _FILTER_MS[filter_]
    if start_ms is not None and start_ms > end_ms:
        raise ApiError(400, "startDate must not be after endDate", field="startDate")
    return start_ms, end_ms


@router.get("/wallet/balance", response_model=WalletBalanceOut, summary="Wallet balance")
async def wallet_balance(principal: Manager, ctx: Ctx) -> WalletBalanceOut:
    """The wallet's balance in sats.

    Served from the cached balance row (``cached: true``), which every posting updates in its own
    transaction under a row lock, so it always equals the sum of the wallet's ledger entries.
    """
    async with ctx.read() as session:
        balance = await ledger.balance(session, account_id=principal.account_id)
    return WalletBalanceOut(balance=balance, cached=True)


@router.get("/bandwidth/usage", response_model=BandwidthUsage, summary="Bandwidth usage")
async def bandwidth_usage(
    principal: Manager,
    ctx: Ctx,
    meter: Meter,
    filter: TimeFilter = "hour",
    startDate: Millis = None,
    endDate: Millis = None,
) -> BandwidthUsage:
    """Self-hosted HLS bytes served (GB = 10^9 bytes) and the overage per clock hour."""
    start_ms, end_ms = _window(filter, startDate, endDate)
    since_s = hour_start(start_ms / 1000) if start_ms is not None else None
    async with ctx.read() as session:
        hours = await usage.hourly_bytes(
            session, account_id=principal.account_id, since_s=since_s, until_s=end_ms // 1000 + 1
        )
    until_s = end_ms // 1000 + 1
    for hour, nbytes in meter.unflushed_hourly(account_id=principal.account_id).items():
        if (since_s is None or hour >= since_s) and hour < until_s:
            hours[hour] = hours.get(hour, 0) + nbytes
    total = sum(hours.values())
    over = sum(pricing.overage_bytes(ctx.settings, used) for used in hours.values())
    sats = sum(pricing.overage_sats(ctx.settings, used) for used in hours.values())
    return BandwidthUsage(
        totalGB=round(total / 1e9, 2), overageGB=round(over / 1e9, 2), overageSats=sats
    )


@router.get("/dashboard/stats", response_model=DashboardStats, summary="Streaming totals")
async def dashboard_stats(
    principal: Manager,
    ctx: Ctx,
    filter: Annotated[Literal["day", "week", "month", "year", "all"], Query()] = "day",
    startDate: Millis = None,
    endDate: Millis = None,
) -> DashboardStats:
    """Minutes streamed and sats spent in the period."""
    start_ms, end_ms = _window(filter, startDate, endDate)
    async with ctx.read() as session:
        streamed = await reports.streamed_ms(
            session,
            account_id=principal.account_id,
            start_ms=start_ms,
            end_ms=end_ms,
            now_ms=now_ms(),
        )
        spent = await reports.spent(
            session, account_id=principal.account_id, start_ms=start_ms, end_ms=end_ms
        )
    return DashboardStats(totalMinutes=round(streamed / 60_000, 1), totalSatsSpent=spent)


@router.get("/stream-history", response_model=list[HistoryItem], summary="Stream history")
async def stream_history(
    principal: Manager,
    ctx: Ctx,
    startDate: Millis = None,
    endDate: Millis = None,
    minCost: Annotated[int | None, Query(ge=0, le=2**53)] = None,
    maxCost: Annotated[int | None, Query(ge=0, le=2**53)] = None,
    platform: Annotated[str | None, Query(max_length=64)] = None,
    streamKeyId: Annotated[int | None, Query(ge=1, le=2**53)] = None,
) -> list[HistoryItem]:
    """Past and live sessions, one row per session and platform, newest first."""
    async with ctx.read() as session:
        rows = await reports.history(
            session,
            account_id=principal.account_id,
            start_ms=startDate,
            end_ms=endDate,
            stream_id=streamKeyId,
        )
    now = now_ms()
    out = []
    for row in rows:
        if minCost is not None and row.cost_sats < minCost:
            continue
        if maxCost is not None and row.cost_sats > maxCost:
            continue
        if platform is not None and row.platform.lower() != platform.lower():
            continue
        ended = row.ended_ms if row.ended_ms is not None else now
        out.append(
            HistoryItem(
                id=row.id,
                streamKeyId=row.stream_id,
                streamKeyLabel=row.stream_label,
                sessionId=row.session_id,
                platform=row.platform,
                startedAt=row.started_ms,
                endedAt=row.ended_ms,
                durationMinutes=round((ended - row.started_ms) / 60_000, 1),
                totalCostSats=row.cost_sats,
            )
        )
    return out


@router.post("/admin/wallet/credit", response_model=CreditOut, summary="Credit a wallet")
async def credit_wallet(body: CreditIn, principal: Admin, ctx: Ctx) -> CreditOut:
    """Operator only: add sats to an account's wallet through the ledger, with a reason."""
    key = body.idempotencyKey or f"credit:http:{principal.account_id}:{time.time_ns()}"
    async with ctx.db.begin() as session:
        account = await auth.account_by_name(session, body.account)
        if account is None:
            raise ApiError(404, "Account not found", field="account")
        posted = await ledger.credit(
            session,
            account_id=account.id,
            amount=body.sats,
            idempotency_key=key,
            memo=body.reason,
        )
        balance = await ledger.balance(session, account_id=account.id)
    return CreditOut(balance=balance, duplicate=not posted)
