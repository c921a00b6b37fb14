"""Many writers of one process on the embedded SQLite store: they queue instead of failing.

Fifty encoders reconnecting at once after a network blip are fifty publish authorizations, each
a write transaction; on a loaded machine the last of them can wait longer than SQLite's busy
timeout (which only bounds a wait for another process, such as the CLI). Here a transaction of
the same process holds the write lock for three times that timeout while the fifty queue.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import func, select

from simulcast.control.db import session as db_session
from simulcast.control.db.models import LiveSession, Stream
from simulcast.control.db.session import create_engine, session_factory, upgrade_schema
from simulcast.control.plane import ControlPlaneService
from simulcast.control.services import ledger
from simulcast.engine import PublishRequest
from simulcast.settings import Settings
from tests.support.db import make_owner

PUBLISHERS = 50
BUSY_TIMEOUT = 0.5


async def test_fifty_simultaneous_publishes_all_get_in(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(db_session, "SQLITE_BUSY_TIMEOUT_SECONDS", BUSY_TIMEOUT)
    settings = Settings(data_dir=tmp_path)
    engine = create_engine(settings)
    try:
        await upgrade_schema(engine)
        db = session_factory(engine)
        keys: list[str] = []
        async with db.begin() as session:
            for i in range(PUBLISHERS):
                owner = await make_owner(session, destinations=2)
                await ledger.credit(
                    session, account_id=owner.account_id, amount=1000, idempotency_key=f"f{i}"
                )
                stream = await session.get(Stream, owner.stream_id)
                assert stream is not None
                keys.append(stream.stream_key)
        plane = ControlPlaneService(db, "node-blip", settings=settings)

        async with db.begin() as holder:
            await holder.execute(select(func.count(LiveSession.id)))  # takes the write lock
            publishes = [
                asyncio.create_task(
                    plane.authorize_publish(
                        PublishRequest(
                            app="live", stream_key=key, query={}, remote_addr="127.0.0.1"
                        )
                    )
                )
                for key in keys
            ]
            await asyncio.sleep(3 * BUSY_TIMEOUT)
            assert not any(p.done() for p in publishes)  # all of them waited for the holder
        grants = await asyncio.gather(*publishes)

        assert len({g.session_id for g in grants}) == PUBLISHERS
        async with db() as session:
            open_sessions = await session.scalar(
                select(func.count(LiveSession.id)).where(LiveSession.ended_ms.is_(None))
            )
        assert open_sessions == PUBLISHERS
    finally:
        await engine.dispose()
