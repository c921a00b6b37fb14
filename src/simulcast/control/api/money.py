"""Endpoints that read money and time: wallet, bandwidth, stats, history; operator credits."""

from __future__ import annotations

import time
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request, Response

from simulcast.control.api.deps import Admin, Ctx, Manager
from simulcast.control.api.errors import ApiError
from simulcast.control.api.hls_route import Served
from simulcast.control.api.urls import BaseUrl
from simulcast.control.schemas.common import ERRORS
from simulcast.control.schemas.money import (
    BandwidthUsage,
    CreditIn,
    CreditOut,
    DashboardStats,
    HistoryItem,
    LedgerItem,
    WalletBalanceOut,
)
from simulcast.control.services import auth, ledger, pricing, reports, usage
from simulcast.control.timeutil import hour_start, now_ms

router = APIRouter(prefix="/api", tags=["Money"], responses=ERRORS)

TimeFilter = Literal["hour", "day", "week", "month", "year", "all"]
_FILTER_MS = {
    "day": 86_400_000,
    "week": 7 * 86_400_000,
    "month": 30 * 86_400_000,
    "year": 365 * 86_400_000,
}
MAX_HISTORY_PAGE = 1000
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


@router.get("/wallet/ledger", response_model=list[LedgerItem], summary="Wallet ledger")
async def wallet_ledger(
    principal: Manager,
    ctx: Ctx,
    limit: Annotated[int, Query(ge=1, le=500, description="At most this many, newest first")] = 50,
) -> list[LedgerItem]:
    """The wallet's postings, newest first: credits and every charge, with signed amounts."""
    async with ctx.read() as session:
        rows = await ledger.wallet_movements(session, account_id=principal.account_id, limit=limit)
    return [
        LedgerItem(id=r.id, kind=r.kind, amountSats=r.amount, memo=r.memo, createdAt=r.created_ms)
        for r in rows
    ]


@router.get("/bandwidth/usage", response_model=BandwidthUsage, summary="Bandwidth usage")
async def bandwidth_usage(
    principal: Manager,
    ctx: Ctx,
    served: Served,
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
    for hour, nbytes in served.unflushed_hourly(account_id=principal.account_id).items():
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
    request: Request,
    response: Response,
    base_url: BaseUrl,
    startDate: Millis = None,
    endDate: Millis = None,
    minCost: Annotated[int | None, Query(ge=0, le=2**53)] = None,
    maxCost: Annotated[int | None, Query(ge=0, le=2**53)] = None,
    platform: Annotated[str | None, Query(max_length=64)] = None,
    streamKeyId: Annotated[int | None, Query(ge=1, le=2**53)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_HISTORY_PAGE, description="Rows per page")] = 100,
    before: Annotated[
        int | None,
        Query(ge=1, le=2**53, description="Rows after (older than) the row with this id"),
    ] = None,
) -> list[HistoryItem]:
    """Past and live sessions, one row per session and platform, newest first.

    Pages of ``limit`` rows; when more follow, a ``Link: <...>; rel="next"`` header gives the
    next page's URL (the same query with ``before`` set to this page's last row id).
    """
    async with ctx.read() as session:
        rows = await reports.history(
            session,
            account_id=principal.account_id,
            start_ms=startDate,
            end_ms=endDate,
            stream_id=streamKeyId,
        )
    if before is not None:
        # Keyset paging in the list's own order (newest first by start, then row id).
        anchor = next((r for r in rows if r.id == before), None)
        if anchor is None:
            raise ApiError(
                400, "Invalid field 'before': no history row with that id", field="before"
            )
        rows = [r for r in rows if (r.started_ms, r.id) < (anchor.started_ms, anchor.id)]
    now = now_ms()
    out: list[HistoryItem] = []
    for row in rows:
        if minCost is not None and row.cost_sats < minCost:
            continue
        if maxCost is not None and row.cost_sats > maxCost:
            continue
        if platform is not None and row.platform.lower() != platform.lower():
            continue
        if len(out) == limit:
            next_url = request.url.include_query_params(before=out[-1].id)
            query = f"?{next_url.query}" if next_url.query else ""
            response.headers["Link"] = f'<{base_url}{next_url.path}{query}>; rel="next"'
            break
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
