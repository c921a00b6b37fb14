"""Fixtures shared by the whole suite: a real server per database backend."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import settings

from tests.support import (
    BACKENDS,
    ServerProcess,
    fresh_postgres_database,
    make_server,
)
from tests.support.media import make_engine, nginx_rtmp, procs  # noqa: F401 -- fixtures
from tests.support.rtmp_sink import rtmp_sink  # noqa: F401 -- fixture

# No property test has a time limit per example: the suite runs on parallel workers beside real
# media, where one example can take twice as long as the next, and speed is measured in bench/,
# never asserted in a test. Hypothesis' default 200 ms deadline made a pricing property fail.
settings.register_profile("suite", deadline=None)
settings.load_profile("suite")


@pytest.fixture(scope="session", params=BACKENDS)
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """A running ``simulcast serve`` (SQLite, and PostgreSQL when reachable)."""
    data_dir = tmp_path_factory.mktemp(f"server-{request.param}")
    if request.param == "postgres":
        with fresh_postgres_database() as url:
            proc = make_server(data_dir, url)
            proc.start()
            yield proc
            proc.stop()
    else:
        proc = make_server(data_dir)
        proc.start()
        yield proc
        proc.stop()


@pytest.fixture
def sk(server: ServerProcess) -> str:
    """A fresh account's permanent key on the running server."""
    return server.create_account()


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh PostgreSQL database's URL, or "" for SQLite in the data dir."""
    if request.param == "postgres":
        with fresh_postgres_database() as url:
            yield url
    else:
        yield ""
