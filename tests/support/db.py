"""Database fixtures: a migrated store per backend (SQLite, and PostgreSQL when reachable) and
an account with a stream and destinations in it."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from simulcast.control.db.models import Account, Destination, Stream
from simulcast.control.db.session import create_engine, session_factory, upgrade_schema
from simulcast.settings import Settings
from tests.support import BACKENDS, fresh_postgres_database


async def _migrate(settings: Settings) -> None:
    engine = create_engine(settings)
    try:
        await upgrade_schema(engine)
    finally:
        await engine.dispose()


@pytest.fixture(scope="session", params=BACKENDS)
def db_settings(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Settings]:
    """Settings pointing at a freshly migrated database of one backend, for the whole session."""
    if request.param == "postgres":
        with fresh_postgres_database() as url:
            settings = Settings(database_url=url)
            asyncio.run(_migrate(settings))
            yield settings
    else:
        settings = Settings(data_dir=tmp_path_factory.mktemp("control-db"))
        asyncio.run(_migrate(settings))
        yield settings


@pytest.fixture
async def db(db_settings: Settings) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """A session factory on the migrated database (engine bound to this test's event loop)."""
    engine = create_engine(db_settings)
    try:
        yield session_factory(engine)
    finally:
        await engine.dispose()


@pytest.fixture
async def own_db(tmp_path: Path) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """A session factory on a new SQLite database of this test alone, for tests that read whole
    tables or reuse account names."""
    engine = create_engine(Settings(data_dir=tmp_path))
    try:
        await upgrade_schema(engine)
        yield session_factory(engine)
    finally:
        await engine.dispose()


@dataclass(frozen=True)
class Owner:
    """A fresh account with one stream and its destinations (ids in creation order)."""

    account_id: int
    stream_id: int
    destination_ids: Sequence[int]


async def make_owner(session: AsyncSession, *, destinations: int = 2) -> Owner:
    """Insert an account, a stream and ``destinations`` enabled RTMP destinations."""
    n = next(_names)
    account = Account(name=f"acct-{id(session)}-{n}", created_ms=0)
    session.add(account)
    await session.flush()
    stream = Stream(
        account_id=account.id, stream_key=f"key-{id(session)}-{n}", label=f"s{n}", created_ms=0
    )
    session.add(stream)
    await session.flush()
    dests = await add_destinations(session, account.id, stream.id, destinations)
    return Owner(account.id, stream.id, [d.id for d in dests])


async def add_destinations(
    session: AsyncSession, account_id: int, stream_id: int, count: int, platform: str = "Custom"
) -> list[Destination]:
    """Insert ``count`` enabled RTMP destinations of a stream (flushed: their ids are set)."""
    dests = [
        Destination(
            stream_id=stream_id,
            account_id=account_id,
            type="rtmp",
            platform=platform,
            url=f"rtmp://example.invalid/app/{stream_id}-{i}",
            created_ms=i,
        )
        for i in range(count)
    ]
    session.add_all(dests)
    await session.flush()
    return dests


_names = itertools.count()
