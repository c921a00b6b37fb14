"""The HLS bandwidth counter against real databases: upsert-add per (destination, hour), no loss."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from simulcast.control.bandwidth_counter import BandwidthCounter
from simulcast.control.db.models import Account, BandwidthBucket, Destination, Stream
from simulcast.control.db.session import create_engine, session_factory, upgrade_schema
from simulcast.settings import Settings

HOUR = 1_800_000_000 // 3600 * 3600


@pytest.fixture
async def db(
    database_url: str, tmp_path: Path
) -> AsyncIterator[tuple[async_sessionmaker[AsyncSession], int, int]]:
    """A migrated database with one account and one destination: (sessions, account, dest)."""
    url = database_url
    engine = create_engine(Settings(data_dir=tmp_path, database_url=url))
    try:
        await upgrade_schema(engine)
        sessions = session_factory(engine)
        async with sessions() as session, session.begin():
            account = Account(name="a", created_ms=0)
            session.add(account)
            await session.flush()
            stream = Stream(account_id=account.id, stream_key="k", label="s", created_ms=0)
            session.add(stream)
            await session.flush()
            dest = Destination(
                stream_id=stream.id,
                account_id=account.id,
                type="self-hosted",
                platform="Self-Hosted",
                config={},
                created_ms=0,
            )
            session.add(dest)
            await session.flush()
            ids = (account.id, dest.id)
        yield sessions, *ids
    finally:
        await engine.dispose()


async def buckets(sessions: async_sessionmaker[AsyncSession]) -> dict[int, int]:
    async with sessions() as session:
        rows = await session.execute(select(BandwidthBucket.hour_start, BandwidthBucket.bytes))
        return {int(hour): int(n) for hour, n in rows.all()}


async def test_counts_are_added_per_hour_and_reported_until_flushed(
    db: tuple[async_sessionmaker[AsyncSession], int, int],
) -> None:
    sessions, account, dest = db
    now = [HOUR + 10.0]
    counter = BandwidthCounter(sessions, 5.0, clock=lambda: now[0])
    counter.add(account_id=account, destination_id=dest, nbytes=1000)
    counter.add(account_id=account, destination_id=dest, nbytes=234)
    counter.add(account_id=account, destination_id=dest, nbytes=0)
    assert counter.unflushed_bytes(account_id=account, hour_start=HOUR) == 1234
    await counter.flush()
    assert counter.unflushed_bytes(account_id=account, hour_start=HOUR) == 0
    assert await buckets(sessions) == {HOUR: 1234}

    counter.add(account_id=account, destination_id=dest, nbytes=6)
    now[0] = HOUR + 3600.0  # the next clock hour gets its own bucket
    counter.add(account_id=account, destination_id=dest, nbytes=7)
    assert counter.unflushed_hourly(account_id=account) == {HOUR: 6, HOUR + 3600: 7}
    assert counter.unflushed_hourly(account_id=account + 1) == {}
    await counter.stop()  # shutdown flushes what is left
    assert await buckets(sessions) == {HOUR: 1240, HOUR + 3600: 7}


async def test_failed_flush_keeps_counts(
    db: tuple[async_sessionmaker[AsyncSession], int, int],
) -> None:
    sessions, account, dest = db
    counter = BandwidthCounter(sessions, 5.0, clock=lambda: HOUR + 1.0)
    counter.add(account_id=account, destination_id=dest + 99, nbytes=500)  # FK violation
    await counter.flush()
    assert counter.unflushed_bytes(account_id=account, hour_start=HOUR) == 500


async def test_periodic_flush(db: tuple[async_sessionmaker[AsyncSession], int, int]) -> None:
    sessions, account, dest = db
    counter = BandwidthCounter(sessions, 0.05)
    await counter.start()
    counter.add(account_id=account, destination_id=dest, nbytes=42)
    for _ in range(100):
        if sum((await buckets(sessions)).values()) == 42:
            break
        await asyncio.sleep(0.02)
    await counter.stop()
    assert sum((await buckets(sessions)).values()) == 42
