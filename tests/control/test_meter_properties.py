"""Property: whatever the tick times, the meter charges exactly what the price rules say.

For random destination spans (joining and leaving mid-minute), funds and limits, metering a
session at random moments and then closing it charges the longest prefix of completed minutes
that the wallet and the limits allow, priced by :func:`pricing.minute_charges`; replaying every
tick and the close charges nothing more; the ledger stays balanced and the cached balance equals
the recomputed one."""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from simulcast.control.db.models import LedgerTransaction, LiveSession, SessionDestination, Stream
from simulcast.control.services import ledger, limits, meter, pricing, sessions
from simulcast.settings import Settings
from tests.support.db import make_owner

MINUTE_MS = 1000
T0 = 1_800_000_000_000
END_MS = 6 * MINUTE_MS + 400


@dataclass(frozen=True)
class Case:
    """One session: destination spans (ms after start), ticks, the end, funds and limits."""

    spans: list[tuple[int, int | None]]
    ticks: list[int]
    funds: int
    max_sats: int | None
    max_minutes: int | None


@st.composite
def cases(draw: st.DrawFn) -> Case:
    spans = []
    for _ in range(draw(st.integers(1, 4))):
        joined = draw(st.integers(0, END_MS))
        left = draw(st.none() | st.integers(joined, END_MS))
        spans.append((joined, left))
    return Case(
        spans=spans,
        ticks=sorted(draw(st.lists(st.integers(0, END_MS), max_size=8))),
        funds=draw(st.integers(0, 30)),
        max_sats=draw(st.none() | st.integers(0, 20)),
        max_minutes=draw(st.none() | st.integers(0, 7)),
    )


def expected_charge(cfg: Settings, case: Case) -> int:
    """The model: completed minutes in order, each paid in full or the session stops there."""
    spans = [
        pricing.DestinationSpan(i, T0 + j, None if left is None else T0 + left)
        for i, (j, left) in enumerate(case.spans, start=1)
    ]
    total = 0
    for minute in range(pricing.completed_minutes(END_MS, MINUTE_MS)):
        if case.max_minutes is not None and minute >= case.max_minutes:
            break
        due = sum(pricing.minute_charges(cfg, spans, started_ms=T0, minute=minute).values())
        over_limit = case.max_sats is not None and total + due > case.max_sats
        if due and (over_limit or total + due > case.funds):
            break
        total += due
    return total


@settings(max_examples=30, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=cases())
async def test_the_meter_charges_the_priced_affordable_prefix_once(
    db: async_sessionmaker[AsyncSession], db_settings: Settings, case: Case
) -> None:
    cfg = db_settings.model_copy(update={"billing_minute_seconds": MINUTE_MS / 1000})
    async with db.begin() as session:
        owner = await make_owner(session, destinations=len(case.spans))
        stream = await session.get(Stream, owner.stream_id)
        assert stream is not None
        stream.max_sats, stream.max_duration_minutes = case.max_sats, case.max_minutes
        if case.funds:
            await ledger.credit(
                session,
                account_id=owner.account_id,
                amount=case.funds,
                idempotency_key=f"prop:{owner.account_id}",
            )
        live = await sessions.open_session(
            session, stream=stream, destinations=[], node_id="prop", started_ms=T0
        )
        session.add_all(
            SessionDestination(
                session_pk=live.id,
                destination_id=dest_id,
                platform="Custom",
                started_ms=T0 + joined,
                ended_ms=None if left is None else T0 + left,
            )
            for dest_id, (joined, left) in zip(owner.destination_ids, case.spans, strict=True)
        )

    async def run() -> None:
        for tick in case.ticks:
            async with db.begin() as session:
                await meter.meter_session(
                    session, settings=cfg, session_pk=live.id, now_ms=T0 + tick
                )
        async with db.begin() as session:
            row = await session.get(LiveSession, live.id, populate_existing=True)
            assert row is not None
            await meter.close_session_accounting(
                session, settings=cfg, live=row, ended_ms=T0 + END_MS
            )

    async def charged() -> tuple[int, int, int]:
        async with db() as session:
            total = await limits.session_charged(session, session_pk=live.id)
            count = await session.scalar(
                select(func.count()).where(LedgerTransaction.session_pk == live.id)
            )
            cached = await ledger.balance(session, account_id=owner.account_id)
            assert cached == await ledger.recomputed_balance(session, account_id=owner.account_id)
            assert await ledger.ledger_sum(session) == 0
            return total, int(count or 0), cached

    await run()
    first = await charged()
    # Ids in the model are 1..n in creation order, as the real ids are.
    assert first[0] == expected_charge(cfg, case)
    assert first[2] == case.funds - first[0] >= 0
    await run()  # a replay of every tick and of the close
    assert await charged() == first
