"""The async database engine and session factory, and schema upgrade on start."""

from __future__ import annotations

import asyncio
import os
import pickle
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import event, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from simulcast.control.db.sealed import attach_box, box_of
from simulcast.control.secretbox import SecretBox
from simulcast.settings import Settings

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
PACKAGE_ROOT = Path(__file__).resolve().parents[3]
"""Where ``simulcast`` is imported from: the migration child imports the same code."""
SQLITE_BUSY_TIMEOUT_SECONDS = 30.0
"""How long a write to SQLite waits for another process's (the CLI's); this process's own
writers queue for its one read-write connection instead, for as long as the queue takes."""
_REVISION = re.compile(r"""^(down_revision|revision)\b[^=]*=\s*["']?([^"'\s]+)""", re.MULTILINE)


def create_engine(settings: Settings, *, read_only: bool = False) -> AsyncEngine:
    """Create the async engine for the configured store (SQLite in WAL mode by default).

    On SQLite, read-write engines start every transaction with ``BEGIN IMMEDIATE``; a
    ``read_only`` engine keeps SQLite's deferred transactions so readers never queue behind
    writers (WAL lets them read a consistent snapshot while a write is in progress). A
    read-write engine has one connection, and its transactions wait for it in arrival order:
    SQLite lets one writer in at a time anyway, and a queue of writers in SQLite's busy handler
    (polling, unordered, bounded by its timeout) made the last of 50 simultaneous publishes on a
    loaded machine fail with ``database is locked``.
    The engine carries the server's secret box for sealed columns (``db.sealed``).
    """
    engine = _create_engine(settings, read_only=read_only)
    attach_box(engine, SecretBox.from_settings(settings))
    return engine


def _create_engine(settings: Settings, *, read_only: bool) -> AsyncEngine:
    url = settings.effective_database_url
    if url.startswith("sqlite"):
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        pool: dict[str, Any] = {} if read_only else {"pool_size": 1, "max_overflow": 0}
        engine = create_async_engine(
            url,
            connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS},
            pool_timeout=None,  # a queued transaction waits its turn, however long the queue
            **pool,
        )

        @event.listens_for(engine.sync_engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        @event.listens_for(engine.sync_engine, "begin")
        def _sqlite_begin(conn: Connection) -> None:
            # Writers take the lock at BEGIN, so two read-then-write transactions (two meters
            # draining one wallet) serialize instead of one failing on lock upgrade.
            conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")

        return engine
    connect_args: dict[str, Any] = {}
    if settings.role == "media":
        # A media node frozen or cut off inside a transaction would keep its row locks (its
        # node row, its sessions') and so stop a survivor from burying it: PostgreSQL ends such
        # a transaction itself once it has idled for the lease.
        idle_ms = int(settings.node_lease_seconds * 1000)
        connect_args["server_settings"] = {"idle_in_transaction_session_timeout": str(idle_ms)}
    return create_async_engine(
        url, pool_size=10, max_overflow=20, pool_pre_ping=True, connect_args=connect_args
    )


UNREACHABLE_SQLSTATES = ("08", "57P")
"""SQLSTATE classes of a database that is not there for now: connection exceptions, and
operator intervention (``57P01`` shutting down, ``57P03`` starting up or shutting down)."""


def database_unreachable(exc: BaseException) -> bool:
    """Whether ``exc`` says the database could not be reached (down, restarting, connection
    dropped), so the same transaction may be tried again, rather than that it refused it."""
    if isinstance(exc, OSError):  # refused or timed out while connecting
        return True
    if not isinstance(exc, DBAPIError):
        return False
    sqlstate = getattr(exc.orig, "sqlstate", None) or ""
    return exc.connection_invalidated or sqlstate.startswith(UNREACHABLE_SQLSTATES)


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions that keep loaded objects usable after commit (the caller owns the transaction)."""
    return async_sessionmaker(engine, expire_on_commit=False)


def alembic_config(url: str | None = None) -> Config:
    """An Alembic config pointing at the packaged migrations."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    if url:
        cfg.set_main_option("sqlalchemy.url", url)
    return cfg


def head_revision() -> str | None:
    """The packaged migrations' single head, read from the files' ``revision`` and
    ``down_revision`` lines (no Alembic import); ``None`` if that is not one clear head."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for path in (MIGRATIONS_DIR / "versions").glob("*.py"):
        found = {m[1]: m[2] for m in _REVISION.finditer(path.read_text())}
        if "revision" not in found:
            return None
        revisions.add(found["revision"])
        parents.add(found.get("down_revision", "None"))
    heads = revisions - parents
    return heads.pop() if len(heads) == 1 else None


async def schema_is_current(engine: AsyncEngine) -> bool:
    """Whether the database is already at the packaged head: one plain query, so a server
    that starts on an up-to-date schema never loads Alembic (~7 MB resident)."""
    head = head_revision()
    if head is None:
        return False
    try:
        async with engine.connect() as conn:
            rows = (await conn.execute(text("SELECT version_num FROM alembic_version"))).all()
    except SQLAlchemyError:  # a new database: no version table yet
        return False
    return [row[0] for row in rows] == [head]


async def upgrade_schema(engine: AsyncEngine) -> None:
    """Apply every pending migration on the given engine, in this process."""
    if await schema_is_current(engine):
        return

    def _upgrade(sync_conn: Connection) -> None:
        from alembic import command

        cfg = alembic_config()
        cfg.attributes["connection"] = sync_conn
        cfg.attributes["secret_box"] = box_of(sync_conn.dialect)  # migrations that seal rows
        command.upgrade(cfg, "head")

    async with engine.begin() as conn:
        await conn.run_sync(_upgrade)


async def upgrade_schema_isolated(engine: AsyncEngine, settings: Settings) -> None:
    """Apply pending migrations in a short-lived child process (the server's way): Alembic
    and the migrations' imports are never resident in a long-running server."""
    if await schema_is_current(engine):
        return
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(PACKAGE_ROOT), env.get("PYTHONPATH")) if p)
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "simulcast.control.db.session",
        stdin=asyncio.subprocess.PIPE,
        env=env,
    )
    await child.communicate(pickle.dumps(settings))
    if child.returncode != 0:
        raise RuntimeError(f"schema upgrade failed (exit {child.returncode}); see above")


async def _upgrade_in_child(settings: Settings) -> None:
    engine = create_engine(settings)
    try:
        await upgrade_schema(engine)
    finally:
        await engine.dispose()


if __name__ == "__main__":
    # The child of upgrade_schema_isolated: its parent's settings arrive pickled on stdin.
    asyncio.run(_upgrade_in_child(pickle.loads(sys.stdin.buffer.read())))
