"""The node registry's leases and fencing: a lost node is buried exactly once however many API
nodes sweep at the same moment; a node that was only cut off learns it was lost at its next
heartbeat; a node stops what the rows say it no longer owns; and the database lets one node
only hold a stream's open session."""

from __future__ import annotations

import asyncio
import secrets

import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from simulcast.control.db.models import Destination, LiveSession, Node, Stream
from simulcast.control.fleet import Heartbeat, LostNodeSweeper, Owned
from simulcast.control.services import sessions
from simulcast.control.timeutil import now_ms
from simulcast.settings import Settings
from tests.support.db import make_owner


async def _nothing(owned: Owned) -> None:
    pass


async def _registered(
    db: async_sessionmaker[AsyncSession], db_settings: Settings, lease_seconds: float
) -> tuple[Settings, str, Heartbeat]:
    """A fresh node registered by its first heartbeat, on leases of ``lease_seconds``."""
    settings = db_settings.model_copy(update={"node_lease_seconds": lease_seconds})
    node = f"n-{secrets.token_hex(3)}"
    beat = Heartbeat(settings, db, node_id=node, release=_nothing)
    assert await beat.beat()
    return settings, node, beat


async def _open_session_on(db: async_sessionmaker[AsyncSession], node: str) -> LiveSession:
    async with db.begin() as session:
        owner = await make_owner(session, destinations=1)
        stream = await session.get(Stream, owner.stream_id)
        assert stream is not None
        dests = list(
            await session.scalars(select(Destination).where(Destination.stream_id == stream.id))
        )
        return await sessions.open_session(
            session, stream=stream, destinations=dests, node_id=node, started_ms=now_ms() - 5000
        )


async def test_concurrent_sweepers_bury_a_lost_node_exactly_once(
    db: async_sessionmaker[AsyncSession], db_settings: Settings
) -> None:
    settings, node, _ = await _registered(db, db_settings, lease_seconds=2.0)
    live = await _open_session_on(db, node)
    sweepers = [LostNodeSweeper(settings, db) for _ in range(3)]
    early = await asyncio.gather(*(s.sweep() for s in sweepers))
    assert [lost for result in early for lost in result if lost.node_id == node] == []
    await asyncio.sleep(2.2)  # the lease runs out without a heartbeat
    results = await asyncio.gather(*(s.sweep() for s in sweepers))
    buried = [lost for result in results for lost in result if lost.node_id == node]
    assert len(buried) == 1
    assert buried[0].sessions == [live.session_id]
    async with db() as session:
        row = await session.get(LiveSession, live.id)
        assert row is not None and row.end_reason == "node_lost"
        assert row.ended_ms == row.started_ms + row.metered_minutes * 60_000
        assert (await session.get(Node, node)).lost_ms is not None  # type: ignore[union-attr]
    again = [lost for s in sweepers for lost in await s.sweep() if lost.node_id == node]
    assert again == []


async def test_a_node_that_was_declared_lost_learns_it_at_its_next_heartbeat(
    db: async_sessionmaker[AsyncSession], db_settings: Settings
) -> None:
    settings, node, beat = await _registered(db, db_settings, lease_seconds=0.2)
    await asyncio.sleep(0.3)
    await LostNodeSweeper(settings, db).sweep()
    assert not await beat.beat()  # partitioned, then back: it was lost meanwhile
    async with db() as session:
        row = await session.get(Node, node)
        assert row is not None and row.lost_ms is None  # registered afresh
    assert await beat.beat()


async def test_one_open_session_per_stream_whichever_node_inserts_it(
    db: async_sessionmaker[AsyncSession],
) -> None:
    live = await _open_session_on(db, "node-a")
    with pytest.raises(IntegrityError):
        async with db.begin() as session:
            stream = await session.get(Stream, live.stream_id)
            assert stream is not None
            await sessions.open_session(session, stream=stream, destinations=[], node_id="node-b")
    # Closed, the stream may open a new session (anywhere).
    async with db.begin() as session:
        row = await session.get(LiveSession, live.id)
        assert row is not None
        await sessions.close_session(session, live=row, reason="stopped", ended_ms=now_ms())
        stream = await session.get(Stream, live.stream_id)
        assert stream is not None
        await sessions.open_session(session, stream=stream, destinations=[], node_id="node-b")


async def test_a_node_stops_what_its_rows_say_another_node_owns_now(
    db: async_sessionmaker[AsyncSession], db_settings: Settings
) -> None:
    node = f"n-{secrets.token_hex(3)}"
    kept = await _open_session_on(db, node)
    moved = await _open_session_on(db, node)
    owned = Owned({kept.session_id: kept.stream_id, moved.session_id: moved.stream_id})
    released: list[Owned] = []

    async def release(what: Owned) -> None:
        released.append(what)

    beat = Heartbeat(db_settings, db, node_id=node, owned=lambda: owned, release=release)
    assert not await beat.fence()
    async with db.begin() as session:  # a stream shift to another node took this one over
        row = await session.get(LiveSession, moved.id)
        assert row is not None
        assert await sessions.take_over(session, live=row, node_id="elsewhere")
    assert await beat.fence() == Owned({moved.session_id: moved.stream_id}, [])
    assert released == [Owned({moved.session_id: moved.stream_id}, [])]


async def test_a_node_whose_lease_ran_out_stops_everything_before_asking_the_database(
    db: async_sessionmaker[AsyncSession], db_settings: Settings
) -> None:
    settings = db_settings.model_copy(update={"node_lease_seconds": 0.2})
    node = f"n-{secrets.token_hex(3)}"
    live = await _open_session_on(db, node)
    owned = Owned({live.session_id: live.stream_id}, ["inst-1"])
    released: list[Owned] = []

    async def release(what: Owned) -> None:
        released.append(what)

    beat = Heartbeat(settings, db, node_id=node, owned=lambda: owned, release=release)
    assert await beat.beat()
    await asyncio.sleep(0.3)  # frozen (SIGSTOP) or cut off for longer than the lease
    await beat.fence()
    assert released[0] == owned
