"""A fleet on loopback: nodes of one fleet (shared database, Redis namespace and secret key), and
throwaway ``redis-server`` and PostgreSQL servers of a test's own, which it may stop and start
again (never the machine's shared ones)."""

from __future__ import annotations

import asyncio
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import asyncpg
import redis

from simulcast.control.secretbox import new_key
from tests.support import ServerProcess, free_port, make_server, wait_for

REDIS_URL = "redis://127.0.0.1:6379/0"
"""The CI's shared Redis: a fleet of a test lives in a namespace (bus prefix) of its own."""


def query(url: str, sql: str, *args: object) -> list[asyncpg.Record]:
    """Run one statement on the PostgreSQL database at ``url``; its rows."""

    async def run() -> list[asyncpg.Record]:
        conn = await asyncpg.connect(url)
        try:
            return list(await conn.fetch(sql, *args))
        finally:
            await conn.close()

    return asyncio.run(run())


def session_rows(database_url: str, stream_id: int) -> list[asyncpg.Record]:
    """The stream's sessions, oldest first."""
    return query(
        database_url,
        "SELECT id, session_id, node_id, started_ms, ended_ms, end_reason, metered_minutes "
        "FROM sessions WHERE stream_id = $1 ORDER BY id",
        stream_id,
    )


def closed_session(database_url: str, stream_id: int, within: float) -> asyncpg.Record:
    """The stream's one session, once it has ended."""
    [closed] = wait_for(
        lambda: [r for r in session_rows(database_url, stream_id) if r["ended_ms"]],
        within,
        "the session closed",
    )
    return closed


def minutes_charged_once(database_url: str, closed: asyncpg.Record) -> list[str]:
    """The minute charges of an ended session (idempotency keys), checked to be every metered
    minute exactly once."""
    keys = [
        r["idempotency_key"]
        for r in query(
            database_url,
            "SELECT idempotency_key FROM ledger_transactions WHERE session_pk = $1 "
            "AND kind = 'stream_minute'",
            closed["id"],
        )
    ]
    minutes = sorted(int(k.rsplit(":", 1)[1]) for k in keys)
    assert minutes == list(range(closed["metered_minutes"])), minutes
    return keys


def redis_reachable() -> bool:
    """Whether the CI Redis answers a PING on 127.0.0.1:6379."""
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


@contextmanager
def fleet_nodes(
    root: Path, database_url: str, redis_url: str = REDIS_URL, **shared: str
) -> Iterator[Callable[..., ServerProcess]]:
    """``start(role, name, env=None, **settings)`` starts a node of one fleet under ``root``
    (its data dir ``root/name``); ``shared`` settings (default: a 3 s lease) apply to every
    node. Every node started is stopped on exit."""
    servers: list[ServerProcess] = []
    common = {
        "redis_url": redis_url,
        "bus_prefix": f"t{secrets.token_hex(4)}",
        "secret_key": new_key(),
        "node_lease_seconds": "3",
        **shared,
    }

    def start(
        role: str, name: str, env: dict[str, str] | None = None, **extra: str
    ) -> ServerProcess:
        server = make_server(
            root / name, database_url=database_url, role=role, node_id=name, **{**common, **extra}
        )
        server.env.update(env or {})
        server.data_dir.mkdir()
        server.start()
        servers.append(server)
        return server

    try:
        yield start
    finally:
        for server in servers:
            server.stop()


class RedisServer:
    """A throwaway ``redis-server`` of this test, restartable on the same port."""

    def __init__(self, root: Path) -> None:
        self.port = free_port()
        self.root = root
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.root)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
        client = redis.Redis(port=self.port)
        wait_for(lambda: _pings(client), 10, "redis-server answering")
        client.close()

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.ConnectionError:
        return False


def postgres_bindir() -> Path | None:
    """The directory of PostgreSQL's ``initdb`` and ``pg_ctl``: Debian's newest
    ``/usr/lib/postgresql/N/bin``, else the ``PATH``'s; ``None`` when not installed."""
    versions = [
        d for d in Path("/usr/lib/postgresql").glob("*/bin") if d.parent.name.isdigit()
    ]  # fmt: skip
    for bindir in sorted(versions, key=lambda d: int(d.parent.name), reverse=True):
        if (bindir / "initdb").exists() and (bindir / "pg_ctl").exists():
            return bindir
    initdb = shutil.which("initdb")
    if initdb and shutil.which("pg_ctl"):
        return Path(initdb).parent
    return None


class PostgresServer:
    """A throwaway PostgreSQL cluster of this test, on a free loopback port with its socket in
    its own directory (never the machine's server on 5432): :meth:`stop` and :meth:`start` it
    again on the same port and data, as an operator restarting PostgreSQL would.

    PostgreSQL refuses to run as root: as root, the cluster belongs to ``run_as`` (its files in
    a directory of their own under the system temp dir, which that user can reach).
    """

    DATABASE = "simulcast"

    def __init__(self, bindir: Path, run_as: str = "postgres") -> None:
        self.bindir = bindir
        self.port = free_port()
        self._as = [] if os.geteuid() != 0 else ["runuser", "-u", run_as, "--"]
        owner = pwd.getpwnam(run_as) if self._as else None  # KeyError: no such user
        self.root = Path(tempfile.mkdtemp(prefix="simulcast-pg-"))
        if owner is not None:
            os.chown(self.root, owner.pw_uid, owner.pw_gid)
        self.data = self.root / "data"
        self.log = self.root / "postgres.log"

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{self.DATABASE}"

    def _run(self, tool: str, *args: str) -> None:
        subprocess.run(
            [*self._as, str(self.bindir / tool), *args],
            check=True,
            capture_output=True,
            timeout=120,
        )

    def create(self) -> None:
        """``initdb`` (trust authentication, superuser ``postgres``), start it, and create
        :attr:`DATABASE`."""
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "--no-sync")
        self.start()

        async def create_database() -> None:
            conn = await asyncpg.connect(f"postgresql://postgres@127.0.0.1:{self.port}/postgres")
            try:
                await conn.execute(f'CREATE DATABASE "{self.DATABASE}"')
            finally:
                await conn.close()

        asyncio.run(create_database())

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        # fsync off: only a machine crash would need it, and this server's disk is shared.
        options = (
            f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.root} "
            "-c fsync=off -c shared_buffers=16MB"
        )
        self._run("pg_ctl", "start", "-w", "-t", "60", "-D", str(self.data), "-l", str(self.log),
                  "-o", options)  # fmt: skip

    def stop(self, mode: str = "fast") -> None:
        """``pg_ctl stop -m mode``: ``fast`` disconnects every client (rolling back what they
        have in flight) and shuts down cleanly; waits until the server is gone."""
        self._run("pg_ctl", "stop", "-w", "-t", "60", "-m", mode, "-D", str(self.data))

    def destroy(self) -> None:
        """Stop the server if it runs and delete its files."""
        if (self.data / "postmaster.pid").exists():
            self._run("pg_ctl", "stop", "-w", "-m", "immediate", "-D", str(self.data))
        shutil.rmtree(self.root, ignore_errors=True)
