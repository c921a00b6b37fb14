"""Read models over sessions and the ledger: history rows, totals, live spend."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from simulcast.control.db.models import (
    LedgerTransaction,
    LiveSession,
    SessionDestination,
    Stream,
)
from simulcast.control.services import ledger


@dataclass(frozen=True, slots=True)
class HistoryRow:
    """One session on one platform."""

    id: int
    stream_id: int
    stream_label: str
    session_id: str
    platform: str
    started_ms: int
    ended_ms: int | None
    cost_sats: int


async def history(
    session: AsyncSession,
    *,
    account_id: int,
    start_ms: int | None = None,
    end_ms: int | None = None,
    stream_id: int | None = None,
) -> list[HistoryRow]:
    """Per-session, per-platform rows (newest first), sessions started in ``[start, end]``."""
    query = (
        select(SessionDestination, LiveSession, Stream.label)
        .join(LiveSession, LiveSession.id == SessionDestination.session_pk)
        .join(Stream, Stream.id == LiveSession.stream_id)
        .where(LiveSession.account_id == account_id)
    )
    if start_ms is not None:
        query = query.where(LiveSession.started_ms >= start_ms)
    if end_ms is not None:
        query = query.where(LiveSession.started_ms <= end_ms)
    if stream_id is not None:
        query = query.where(LiveSession.stream_id == stream_id)
    parts = (await session.execute(query)).all()
    pks = sorted({live.id for _, live, _ in parts})
    costs: dict[tuple[int, int], int] = defaultdict(int)
    if pks:
        for pk, dest_id, total in (
            await session.execute(
                select(
                    LedgerTransaction.session_pk,
                    LedgerTransaction.destination_id,
                    func.sum(LedgerTransaction.amount_sats),
                )
                .where(
                    LedgerTransaction.session_pk.in_(pks),
                    LedgerTransaction.kind == ledger.Kind.STREAM_MINUTE,
                )
                .group_by(LedgerTransaction.session_pk, LedgerTransaction.destination_id)
            )
        ).all():
            if pk is not None:
                costs[(int(pk), int(dest_id or 0))] += int(total or 0)
    grouped: dict[tuple[int, str], HistoryRow] = {}
    for part, live, label in parts:
        key = (live.id, part.platform)
        cost = costs.get((live.id, part.destination_id), 0)
        row = grouped.get(key)
        if row is None:
            grouped[key] = HistoryRow(
                id=part.id,
                stream_id=live.stream_id,
                stream_label=label,
                session_id=live.session_id,
                platform=part.platform,
                started_ms=live.started_ms,
                ended_ms=live.ended_ms,
                cost_sats=cost,
            )
        else:
            grouped[key] = HistoryRow(
                id=min(row.id, part.id),
                stream_id=row.stream_id,
                stream_label=row.stream_label,
                session_id=row.session_id,
                platform=row.platform,
                started_ms=row.started_ms,
                ended_ms=row.ended_ms,
                cost_sats=row.cost_sats + cost,
            )
    return sorted(grouped.values(), key=lambda r: (r.started_ms, r.id), reverse=True)


async def streamed_ms(
    session: AsyncSession, *, account_id: int, start_ms: int | None, end_ms: int, now_ms: int
) -> int:
    """Milliseconds of live sessions inside ``[start_ms, end_ms]`` (open sessions up to now)."""
    query = select(LiveSession.started_ms, LiveSession.ended_ms).where(
        LiveSession.account_id == account_id, LiveSession.started_ms <= end_ms
    )
    if start_ms is not None:
        query = query.where((LiveSession.ended_ms.is_(None)) | (LiveSession.ended_ms >= start_ms))
    total = 0
    for started, ended in (await session.execute(query)).all():
        lo = max(started, start_ms) if start_ms is not None else started
        hi = min(ended if ended is not None else now_ms, end_ms)
        total += max(0, hi - lo)
    return total


async def spent(
    session: AsyncSession, *, account_id: int, start_ms: int | None, end_ms: int
) -> int:
    """Sats charged to an account (streaming and bandwidth) in ``[start_ms, end_ms]``."""
    query = select(func.coalesce(func.sum(LedgerTransaction.amount_sats), 0)).where(
        LedgerTransaction.account_id == account_id,
        LedgerTransaction.kind.in_(ledger.CHARGES_OF_STREAMING),
        LedgerTransaction.created_ms <= end_ms,
    )
    if start_ms is not None:
        query = query.where(LedgerTransaction.created_ms >= start_ms)
    return int(await session.scalar(query) or 0)
