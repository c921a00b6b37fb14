"""Which database errors mean "not there for now" (try the transaction again) rather than
"refused" (do not): real errors of a real PostgreSQL."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from simulcast.control.db.session import create_engine, database_unreachable
from simulcast.settings import Settings
from tests.support import PG_ADMIN_URL, PG_AVAILABLE, free_port

pytestmark = pytest.mark.skipif(not PG_AVAILABLE, reason="PostgreSQL not reachable on 127.0.0.1")


async def error_of(url: str, sql: str) -> BaseException:
    engine = create_engine(Settings(database_url=url))
    try:
        async with engine.connect() as conn:
            await conn.execute(text(sql))
    except Exception as exc:
        return exc
    finally:
        await engine.dispose()
    raise AssertionError(f"{sql!r} did not fail")


async def test_a_server_that_is_not_there_or_drops_the_connection_is_unreachable() -> None:
    nobody = f"postgresql://postgres@127.0.0.1:{free_port()}/test"
    assert database_unreachable(await error_of(nobody, "SELECT 1"))
    # What a restart does to a connected client (57P01, the server ending the session).
    terminated = await error_of(PG_ADMIN_URL, "SELECT pg_terminate_backend(pg_backend_pid())")
    assert database_unreachable(terminated)


async def test_a_statement_the_database_refuses_is_not() -> None:
    assert not database_unreachable(await error_of(PG_ADMIN_URL, "SELEC 1"))
    assert not database_unreachable(await error_of(PG_ADMIN_URL, "SELECT 1 / 0"))
