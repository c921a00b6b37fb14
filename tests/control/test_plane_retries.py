"""What a media node reports waits for an unreachable database however long it stays away, and
is never retried for an error the database raised on purpose: real errors from real engines,
with the waits on a clock the test advances (a ten-minute outage takes no ten minutes)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from simulcast.control.db.session import create_engine
from simulcast.control.plane import RETRY_WAIT_MAX_S, ControlPlaneService
from simulcast.settings import Settings
from tests.support import free_port

OUTAGE_S = 600.0


class FakeTime:
    """A monotonic clock that moves only when the plane waits."""

    def __init__(self) -> None:
        self.now = 0.0
        self.waits: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += seconds


def plane(
    db: async_sessionmaker[AsyncSession], tmp_path: Path, time: FakeTime
) -> ControlPlaneService:
    return ControlPlaneService(
        db, "node-1", settings=Settings(data_dir=tmp_path), clock=time.clock, sleep=time.sleep
    )


async def test_a_record_waits_out_a_ten_minute_outage_and_lands_once(
    db: async_sessionmaker[AsyncSession], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    time = FakeTime()
    gone = create_engine(Settings(database_url=f"postgresql://postgres@127.0.0.1:{free_port()}/x"))
    tries: list[str] = []

    async def record(once: str) -> None:
        tries.append(once)
        if time.now < OUTAGE_S:  # nobody listens there: a real refused connection
            async with gone.connect() as conn:
                await conn.execute(text("SELECT 1"))
            raise AssertionError("connected to a database that is not there")
        async with db() as session:  # back: the record lands
            await session.execute(text("SELECT 1"))

    caplog.set_level(logging.WARNING, "simulcast.control")
    try:
        await plane(db, tmp_path, time)._retried("the end of session 1", record)
    finally:
        await gone.dispose()

    assert time.now >= OUTAGE_S
    assert len(set(tries)) == 1 and len(tries) == len(time.waits) + 1  # one key for every try
    assert max(time.waits) == RETRY_WAIT_MAX_S
    said = [r.getMessage() for r in caplog.records if "not recorded yet" in r.getMessage()]
    # Said at once, then about once a minute: not at every try.
    assert said[0].startswith("the end of session 1 not recorded yet after 0 s")
    assert 10 <= len(said) <= 12 < len(tries)


async def test_an_error_the_database_raised_on_purpose_is_not_retried(
    db: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    time = FakeTime()
    tries = 0

    async def record(once: str) -> None:
        nonlocal tries
        tries += 1
        async with db() as session:
            await session.execute(text("SELECT * FROM no_such_table"))

    with pytest.raises(Exception, match="no_such_table"):
        await plane(db, tmp_path, time)._retried("an event", record)
    assert tries == 1 and time.waits == []
