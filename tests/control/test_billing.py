"""Billing through the control plane's seam, on SQLite and PostgreSQL: publish refusal for want
of funds, final accounting when a session ends (once), destinations joining mid-session, crash
recovery, and two live sessions draining one wallet concurrently through the meter."""

from __future__ import annotations

import asyncio
import json

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from simulcast.control.db.models import (
    Account,
    Destination,
    LedgerTransaction,
    LiveSession,
    SessionDestination,
    Stream,
    WebhookDelivery,
)
from simulcast.control.plane import ControlPlaneService
from simulcast.control.services import billing, ledger, meter, sessions, webhooks
from simulcast.engine import PublishGrant, PublishRefused, PublishRequest, SessionEnded
from simulcast.settings import Settings
from tests.support.db import Owner, add_destinations, make_owner

MINUTE_MS = 1000


@pytest.fixture
def settings(db_settings: Settings) -> Settings:
    """Default prices (2 sats per paid platform, 1 free) and a one-second billing minute."""
    return db_settings.model_copy(update={"billing_minute_seconds": MINUTE_MS / 1000})


def _plane(db: async_sessionmaker[AsyncSession], settings: Settings) -> ControlPlaneService:
    return ControlPlaneService(db, "node-money", settings=settings)


async def _owner(db: async_sessionmaker[AsyncSession], *, destinations: int, funds: int) -> Owner:
    async with db.begin() as session:
        owner = await make_owner(session, destinations=destinations)
        if funds:
            await ledger.credit(
                session,
                account_id=owner.account_id,
                amount=funds,
                idempotency_key=f"f:{owner.account_id}",
            )
    return owner


async def _publish(plane: ControlPlaneService, owner: Owner) -> PublishGrant:
    async with plane.db() as session:
        stream = await session.get(Stream, owner.stream_id)
        assert stream is not None
        key = stream.stream_key
    return await plane.authorize_publish(
        PublishRequest(app="live", stream_key=key, query={}, remote_addr="127.0.0.1")
    )


async def _backdate(session: AsyncSession, live: LiveSession, ms: int) -> None:
    """Make a just-opened session (and its destinations' parts) ``ms`` older."""
    live.started_ms -= ms
    await session.execute(
        update(SessionDestination)
        .where(SessionDestination.session_pk == live.id)
        .values(started_ms=SessionDestination.started_ms - ms)
    )


async def _opened(
    db: async_sessionmaker[AsyncSession], settings: Settings, *, destinations: int, age_ms: int
) -> tuple[ControlPlaneService, Owner, PublishGrant, int]:
    """An account with 100 sats whose stream went live ``age_ms`` ago (and when that was)."""
    plane = _plane(db, settings)
    owner = await _owner(db, destinations=destinations, funds=100)
    grant = await _publish(plane, owner)
    async with db.begin() as session:
        live = await _live(session, grant)
        await _backdate(session, live, age_ms)
        return plane, owner, grant, live.started_ms


async def _stopped_at(
    plane: ControlPlaneService, owner: Owner, grant: PublishGrant, ended_ms: int
) -> None:
    await plane.on_engine_event(
        SessionEnded(grant.session_id, owner.stream_id, "stopped", ended_ms, 0)
    )


async def _live(session: AsyncSession, grant: PublishGrant) -> LiveSession:
    """The session row a grant opened."""
    live = await sessions.by_session_id(session, session_id=grant.session_id)
    assert live is not None
    return live


async def _balance(db: async_sessionmaker[AsyncSession], account_id: int) -> int:
    async with db() as session:
        cached = await ledger.balance(session, account_id=account_id)
        assert cached == await ledger.recomputed_balance(session, account_id=account_id)
        assert await ledger.ledger_sum(session) == 0
        return cached


async def test_a_publish_that_cannot_pay_its_first_minute_is_refused_until_funded(
    db: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    plane = _plane(db, settings)
    owner = await _owner(db, destinations=2, funds=1)
    with pytest.raises(PublishRefused) as refused:
        await _publish(plane, owner)
    assert refused.value.code == "NetStream.Publish.Denied"
    assert "first minute costs 2 sats, the wallet holds 1" in refused.value.description
    async with db.begin() as session:
        await ledger.credit(
            session, account_id=owner.account_id, amount=1, idempotency_key=f"x1:{owner.account_id}"
        )
    assert (await _publish(plane, owner)).stream_id == owner.stream_id


async def test_a_free_first_minute_needs_no_funds_but_a_blocked_account_is_refused(
    db: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    plane = _plane(db, settings)
    owner = await _owner(db, destinations=1, funds=0)
    async with db.begin() as session:
        account = await session.get(Account, owner.account_id)
        assert account is not None
        account.publish_blocked_reason = ledger.INSUFFICIENT_FUNDS
    with pytest.raises(PublishRefused) as refused:
        await _publish(plane, owner)
    assert "blocked (insufficient_funds)" in refused.value.description
    async with db.begin() as session:  # any credit lifts the block
        await ledger.credit(
            session, account_id=owner.account_id, amount=1, idempotency_key=f"x2:{owner.account_id}"
        )
    await _publish(plane, owner)


async def test_the_end_of_a_session_charges_its_completed_minutes_once(
    db: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    """The seed's example end to end: 5 min 30 s with one paid platform costs 10 sats."""
    plane = _plane(db, settings)
    owner = await _owner(db, destinations=2, funds=100)
    grant = await _publish(plane, owner)
    async with db() as session:
        live = await _live(session, grant)
    end = SessionEnded(
        grant.session_id, owner.stream_id, "publisher_left", live.started_ms + 5500, 0
    )
    await plane.on_engine_event(end)
    await plane.on_engine_event(end)  # a replayed event changes nothing
    assert await _balance(db, owner.account_id) == 90
    async with db() as session:
        closed = await session.get(LiveSession, live.id)
        assert closed is not None
        assert (closed.end_reason, closed.ended_ms, closed.metered_minutes) == (
            "publisher_left",
            live.started_ms + 5500,
            5,
        )
        count = await session.scalar(
            select(func.count()).where(LedgerTransaction.session_pk == live.id)
        )
        assert count == 5


async def test_a_destination_joining_mid_session_pays_from_the_minute_it_was_present_at(
    db: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    # The session started 2.5 minutes ago with one (free) destination; the second one joins
    # now and counts from minute 2 on.
    plane, owner, grant, started = await _opened(db, settings, destinations=1, age_ms=2500)
    async with db.begin() as session:
        dest = Destination(
            stream_id=owner.stream_id,
            account_id=owner.account_id,
            type="rtmp",
            platform="Custom",
            url="rtmp://example.invalid/app/late",
            created_ms=9,
        )
        session.add(dest)
        await session.flush()
        await billing.destination_changed(session, settings=settings, destination=dest)
    await _stopped_at(plane, owner, grant, started + 4200)
    assert await _balance(db, owner.account_id) == 100 - 2 * 2  # minutes 2 and 3


async def test_a_destination_toggled_after_a_minute_ended_still_pays_that_minute(
    db: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    # Minute 0 ended 200 ms ago with the paid destination present; before the meter got to it,
    # the destination was disabled and enabled again.
    plane, owner, grant, started = await _opened(db, settings, destinations=2, age_ms=1200)
    async with db.begin() as session:
        dest = await session.get(Destination, owner.destination_ids[1])
        assert dest is not None
        for enabled in (False, True):
            dest.enabled = enabled
            await billing.destination_changed(session, settings=settings, destination=dest)
    await _stopped_at(plane, owner, grant, started + 1500)
    assert await _balance(db, owner.account_id) == 100 - 2  # minute 0, charged once


async def test_crash_recovery_closes_at_the_last_metered_minute_and_queues_stream_ended(
    db: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    plane = _plane(db, settings)
    owner = await _owner(db, destinations=2, funds=100)
    async with db.begin() as session:
        await webhooks.create_webhook(
            session,
            account_id=owner.account_id,
            url="https://hooks.example.invalid/x",
            events=["stream.ended"],
            secret=None,
            stream_id=None,
        )
    grant = await _publish(plane, owner)
    async with db.begin() as session:
        live = await _live(session, grant)
        await _backdate(session, live, 3500)
        await meter.meter_session(
            session, settings=settings, session_pk=live.id, now_ms=live.started_ms + 3500
        )
        live.node_id = f"crashed-{live.id}"
    for _ in range(2):  # a second restart finds nothing left to do
        async with db.begin() as session:
            await billing.recover_crashed_sessions(
                session, settings=settings, node_id=f"crashed-{live.id}"
            )
    assert await _balance(db, owner.account_id) == 100 - 3 * 2
    async with db() as session:
        closed = await session.get(LiveSession, live.id)
        assert closed is not None
        assert closed.end_reason == "server_restart"
        assert closed.ended_ms == closed.started_ms + 3 * MINUTE_MS
        bodies = list(
            await session.scalars(
                select(WebhookDelivery.body).where(WebhookDelivery.event == "stream.ended")
            )
        )
    mine = [json.loads(b)["data"] for b in bodies if grant.session_id in b]
    assert len(mine) == 1
    assert (mine[0]["reason"], mine[0]["totalCostSats"]) == ("server_restart", 6)


async def test_two_live_sessions_drain_one_wallet_concurrently_through_the_meter(
    db: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    async with db.begin() as session:
        owner = await make_owner(session, destinations=2)
        second = Stream(
            account_id=owner.account_id,
            stream_key=f"second-{owner.stream_id}",
            label="b",
            created_ms=0,
        )
        session.add(second)
        await session.flush()
        await add_destinations(session, owner.account_id, second.id, 2)
        await ledger.credit(
            session, account_id=owner.account_id, amount=15, idempotency_key=f"d:{owner.account_id}"
        )
        pks = []
        for stream_id in (owner.stream_id, second.id):
            stream = await session.get(Stream, stream_id)
            assert stream is not None
            dests = list(
                await session.scalars(select(Destination).where(Destination.stream_id == stream_id))
            )
            live = await sessions.open_session(
                session, stream=stream, destinations=dests, node_id="n", started_ms=0
            )
            pks.append(live.id)

    async def run(pk: int) -> list[str | None]:
        reasons = []
        for minute in range(1, 12):  # tick by tick, as two meters would
            async with db.begin() as session:
                result = await meter.meter_session(
                    session, settings=settings, session_pk=pk, now_ms=minute * MINUTE_MS
                )
            reasons.append(result.stop_reason)
            await asyncio.sleep(0)
        return reasons

    a, b = await asyncio.gather(run(pks[0]), run(pks[1]))
    assert a[-1] == b[-1] == ledger.INSUFFICIENT_FUNDS
    assert await _balance(db, owner.account_id) == 1  # 7 minutes of 2 sats paid, 1 sat left
    async with db() as session:
        minutes = await session.scalar(
            select(func.count()).where(
                LedgerTransaction.session_pk.in_(pks), LedgerTransaction.kind == "stream_minute"
            )
        )
        assert minutes == 7
