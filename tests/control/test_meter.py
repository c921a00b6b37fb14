"""The meter with short minutes: per-minute charges, stops with the right reason, crash recovery."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import pytest
from sqlalchemy import event, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from simulcast.control.db.models import (
    Account,
    BandwidthBucket,
    Destination,
    LedgerTransaction,
    LiveSession,
    SessionDestination,
    Stream,
)
from simulcast.control.minute_meter import MinuteMeter
from simulcast.control.services import ledger, limits, meter, sessions
from simulcast.engine import OutputStatus, SessionInfo
from simulcast.settings import Settings
from tests.support import poll_until
from tests.support.db import Owner, add_destinations, make_owner

NODE = "node-a"
MIN_S = 1.0
T0 = 1_700_000_000_000


class FakeEngine:
    """The media plane reduced to a dict of live sessions and a record of stop commands."""

    def __init__(self) -> None:
        self.live: dict[int, SessionInfo] = {}
        self.stops: list[tuple[int, str]] = []

    def sessions(self) -> Mapping[int, SessionInfo]:
        return dict(self.live)

    async def stop(self, stream_id: int, reason: str) -> bool:
        self.stops.append((stream_id, reason))
        return self.live.pop(stream_id, None) is not None


class Clock:
    """A settable clock (seconds)."""

    def __init__(self) -> None:
        self.now = T0 / 1000

    def __call__(self) -> float:
        return self.now

    def at_minutes(self, minutes: float) -> None:
        self.now = T0 / 1000 + minutes * MIN_S


@pytest.fixture
def settings(db_settings: Settings) -> Settings:
    """The store's settings with billing minutes of ``MIN_S`` seconds."""
    return db_settings.model_copy(update={"billing_minute_seconds": MIN_S})


async def _start(
    db: async_sessionmaker[AsyncSession],
    engine: FakeEngine,
    *,
    funds: int,
    destinations: int = 2,
    max_sats: int | None = None,
    max_minutes: int | None = None,
) -> tuple[Owner, LiveSession]:
    async with db.begin() as session:
        owner = await make_owner(session, destinations=destinations)
        stream = await session.get(Stream, owner.stream_id)
        assert stream is not None
        stream.max_sats, stream.max_duration_minutes = max_sats, max_minutes
        if funds:
            await ledger.credit(
                session, account_id=owner.account_id, amount=funds, idempotency_key=f"f{stream.id}"
            )
        dests = list(
            await session.scalars(select(Destination).where(Destination.stream_id == stream.id))
        )
        live = await sessions.open_session(
            session, stream=stream, destinations=dests, node_id=NODE, started_ms=T0
        )
    engine.live[owner.stream_id] = SessionInfo(
        session_id=live.session_id,
        stream_id=owner.stream_id,
        account_id=owner.account_id,
        started_at_ms=T0,
        bytes_in=0,
        outputs={},
    )
    return owner, live


async def _join(
    db: async_sessionmaker[AsyncSession], owner: Owner, live: LiveSession, started_ms: int
) -> Destination:
    """A paid (Twitch) destination added to the stream and to its live session."""
    async with db.begin() as session:
        (dest,) = await add_destinations(session, owner.account_id, owner.stream_id, 1, "Twitch")
        session.add(
            SessionDestination(
                session_pk=live.id, destination_id=dest.id, platform="Twitch", started_ms=started_ms
            )
        )
    return dest


@contextmanager
def sql_statements(db: async_sessionmaker[AsyncSession]) -> Iterator[list[str]]:
    """The SQL statements run on ``db`` while the block runs."""
    statements: list[str] = []
    bind = db.kw["bind"].sync_engine
    listener = lambda *args: statements.append(args[2])  # noqa: E731
    event.listen(bind, "before_cursor_execute", listener)
    try:
        yield statements
    finally:
        event.remove(bind, "before_cursor_execute", listener)


async def _charges(db: async_sessionmaker[AsyncSession], live: LiveSession) -> list[str]:
    async with db() as session:
        keys = await session.scalars(
            select(LedgerTransaction.idempotency_key)
            .where(LedgerTransaction.session_pk == live.id)
            .order_by(LedgerTransaction.id)
        )
        return list(keys)


async def _state(db: async_sessionmaker[AsyncSession], owner: Owner) -> tuple[int, str | None]:
    async with db() as session:
        account = await session.get(Account, owner.account_id)
        stream = await session.get(Stream, owner.stream_id)
        assert account is not None and stream is not None
        assert await ledger.recomputed_balance(
            session, account_id=owner.account_id
        ) == await ledger.balance(session, account_id=owner.account_id)
        return await ledger.balance(session, account_id=owner.account_id), (
            stream.locked_reason or account.publish_blocked_reason
        )


async def test_each_completed_minute_is_charged_once_per_paid_destination(
    db: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    engine, clock = FakeEngine(), Clock()
    owner, live = await _start(db, engine, funds=100, destinations=3)
    m = MinuteMeter(settings, db, engine, node_id=NODE, clock=clock)
    clock.at_minutes(0.5)
    await m.tick()
    assert await _charges(db, live) == []
    clock.at_minutes(2.2)
    await m.tick()
    await m.tick()  # a replayed tick charges nothing more
    paid = owner.destination_ids[1:]
    assert await _charges(db, live) == [
        meter.minute_key(live.session_id, d, k) for k in range(2) for d in paid
    ]
    assert await _state(db, owner) == (92, None)
    assert engine.stops == []


async def test_between_boundaries_a_session_is_only_rechecked_every_few_seconds(
    db: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    engine, clock = FakeEngine(), Clock()
    owner, _ = await _start(db, engine, funds=100)
    m = MinuteMeter(settings, db, engine, node_id=NODE, clock=clock, recheck_seconds=0.5)
    with sql_statements(db) as statements:
        clock.at_minutes(0.1)
        await m.tick()  # a session the meter has not seen yet is metered at once
        assert statements
        async with db.begin() as session:
            stream = await session.get(Stream, owner.stream_id)
            assert stream is not None
            stream.max_sats = 1  # the minute in progress (2 sats) is no longer allowed
        statements.clear()
        clock.at_minutes(0.3)
        await m.tick()
        assert statements == [] and engine.stops == []  # nothing due: not a single query
        clock.at_minutes(0.65)
        await m.tick()  # the recheck's look-ahead sees the lowered limit
        assert engine.stops == [(owner.stream_id, "limit_max_sats")]


async def test_a_free_session_is_looked_at_between_boundaries_only_when_its_destinations_change(
    db: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    engine, clock = FakeEngine(), Clock()
    owner, live = await _start(db, engine, funds=0, destinations=1)  # the free platform only
    m = MinuteMeter(settings, db, engine, node_id=NODE, clock=clock, recheck_seconds=0.5)
    with sql_statements(db) as statements:
        clock.at_minutes(0.1)
        await m.tick()
        statements.clear()
        clock.at_minutes(0.9)  # past several rechecks: a free minute has nothing to look ahead for
        await m.tick()
        assert statements == [] and engine.stops == []
        paid = await _join(db, owner, live, started_ms=T0)
        info = engine.live[owner.stream_id]
        outputs = {d: OutputStatus(d, "rtmp", "live") for d in (*owner.destination_ids, paid.id)}
        engine.live[owner.stream_id] = dataclasses.replace(info, outputs=outputs)
        clock.at_minutes(0.95)
        await m.tick()  # the new destination is looked at now: the empty wallet cannot pay it
        assert engine.stops == [(owner.stream_id, "insufficient_funds")]


async def test_a_destination_added_mid_minute_pays_from_that_minute(
    db: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    engine, clock = FakeEngine(), Clock()
    owner, live = await _start(db, engine, funds=100, destinations=1)
    late = await _join(db, owner, live, started_ms=T0 + 1500)
    m = MinuteMeter(settings, db, engine, node_id=NODE, clock=clock)
    clock.at_minutes(3.1)
    results = await m.tick()
    assert [(r.metered_minutes, r.charged) for r in results] == [(3, 4)]
    assert await _charges(db, live) == [
        meter.minute_key(live.session_id, late.id, k) for k in (1, 2)
    ]


async def test_insufficient_funds_stops_and_blocks_until_credited(
    db: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    engine, clock = FakeEngine(), Clock()
    owner, live = await _start(db, engine, funds=5)
    m = MinuteMeter(settings, db, engine, node_id=NODE, clock=clock)
    clock.at_minutes(2.01)
    await m.tick()
    # 2 minutes paid (4 sats); the third cannot be: stopped at its start.
    assert engine.stops == [(owner.stream_id, "insufficient_funds")]
    assert len(await _charges(db, live)) == 2
    assert await _state(db, owner) == (1, "insufficient_funds")
    async with db.begin() as session:

        async def can_start(paid: int) -> bool:
            return await limits.can_start(
                session, settings=settings, account_id=owner.account_id, paid_destinations=paid
            )

        assert not await can_start(1)
        assert await can_start(0)
        await ledger.credit(session, account_id=owner.account_id, amount=1, idempotency_key="t1")
        assert await can_start(1)


async def test_max_sats_stops_at_the_minute_it_is_reached_and_locks(
    db: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    engine, clock = FakeEngine(), Clock()
    owner, live = await _start(db, engine, funds=100, max_sats=5)
    m = MinuteMeter(settings, db, engine, node_id=NODE, clock=clock)
    for minute in (0.5, 1.01, 2.01):
        clock.at_minutes(minute)
        await m.tick()
    assert engine.stops == [(owner.stream_id, "limit_max_sats")]
    assert await _state(db, owner) == (96, "limit_max_sats")
    assert len(await _charges(db, live)) == 2


async def test_max_duration_stops_and_locks(
    db: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    engine, clock = FakeEngine(), Clock()
    owner, _ = await _start(db, engine, funds=100, max_minutes=3)
    m = MinuteMeter(settings, db, engine, node_id=NODE, clock=clock)
    clock.at_minutes(5.5)  # a late tick: only the allowed minutes are charged
    await m.tick()
    assert engine.stops == [(owner.stream_id, "limit_max_duration")]
    assert await _state(db, owner) == (94, "limit_max_duration")


async def test_close_accounting_charges_final_minutes_once(
    db: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    owner, live = await _start(db, FakeEngine(), funds=100)
    ended = T0 + 5_500  # 5 min 30 s at 2 sats/min
    for _ in range(2):
        async with db.begin() as session:
            await meter.close_session_accounting(
                session, settings=settings, live=live, ended_ms=ended
            )
            await sessions.close_session(
                session, live=live, reason="publisher_gone", ended_ms=ended
            )
    assert await _state(db, owner) == (90, None)
    assert len(await _charges(db, live)) == 5


async def test_crash_recovery_closes_at_last_metered_minute_charging_once(
    db: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    engine, clock = FakeEngine(), Clock()
    owner, live = await _start(db, engine, funds=100)
    clock.at_minutes(2.7)
    await MinuteMeter(settings, db, engine, node_id=NODE, clock=clock).tick()
    # kill -9: the engine's state is gone; on restart the open session is recovered.
    for _ in range(2):
        async with db.begin() as session:
            closed = await meter.recover_after_crash(session, settings=settings, node_id=NODE)
            for closed_row in closed:
                await meter.close_session_accounting(
                    session, settings=settings, live=closed_row, ended_ms=closed_row.ended_ms or 0
                )
    async with db() as session:
        row = await session.get(LiveSession, live.id)
        assert row is not None
        assert (row.end_reason, row.ended_ms, row.metered_minutes) == (
            "server_restart",
            T0 + 2000,
            2,
        )
    assert await _state(db, owner) == (96, None)
    assert len(await _charges(db, live)) == 2


async def test_bandwidth_overage_is_charged_per_closed_hour_once(
    db: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    hour = 1_700_002_800  # a clock-hour start
    async with db.begin() as session:
        rich = await make_owner(session, destinations=2)
        poor = await make_owner(session, destinations=1)
        await ledger.credit(session, account_id=rich.account_id, amount=50, idempotency_key="bw")
        session.add_all(
            [
                BandwidthBucket(
                    account_id=rich.account_id,
                    destination_id=rich.destination_ids[0],
                    hour_start=hour,
                    bytes=8_000_000_000,
                ),
                BandwidthBucket(
                    account_id=rich.account_id,
                    destination_id=rich.destination_ids[1],
                    hour_start=hour,
                    bytes=4_300_000_000,
                ),
                BandwidthBucket(
                    account_id=poor.account_id,
                    destination_id=poor.destination_ids[0],
                    hour_start=hour,
                    bytes=11_000_000_000,
                ),
            ]
        )

    async def run(now_s: int) -> list[tuple[int, str]]:
        async with db.begin() as session:
            done = await meter.charge_closed_hours(session, settings=settings, now_ms=now_s * 1000)
        mine = {rich.account_id, poor.account_id}
        return [(c.amount, c.result.status) for c in done if c.account_id in mine]

    assert await run(hour + 3599) == []  # the hour is still open
    assert await run(hour + 3600) == [(12, "posted"), (5, "refused")]
    assert await run(hour + 3700) == [(12, "duplicate"), (5, "refused")]
    assert await _state(db, rich) == (38, None)
    assert await _state(db, poor) == (0, "insufficient_funds")


async def test_run_loop_charges_in_real_time(
    db: async_sessionmaker[AsyncSession], db_settings: Settings
) -> None:
    engine = FakeEngine()
    settings = db_settings.model_copy(update={"billing_minute_seconds": 0.2})
    _, live = await _start(db, engine, funds=100)
    async with db.begin() as session:  # the session starts now, on the real clock
        row = await session.get(LiveSession, live.id)
        assert row is not None
        row.started_ms = int(time.time() * 1000)
    m = MinuteMeter(settings, db, engine, node_id=NODE)
    started = time.monotonic()
    await m.start()

    async def three_minutes_charged() -> list[str]:
        charges = await _charges(db, live)
        return charges if len(charges) >= 3 else []

    # However loaded the machine, the loop keeps charging each closed 0.2 s minute, once.
    await poll_until(three_minutes_charged, 10, "three billed minutes")
    await asyncio.wait_for(m.stop(), 2)
    elapsed = time.monotonic() - started
    charges = await _charges(db, live)
    assert [c.rsplit(":", 1)[1] for c in charges] == [str(i) for i in range(len(charges))]
    assert len(charges) <= elapsed / 0.2 + 1  # never a minute that has not begun
