"""Test support: free ports, PostgreSQL discovery, and a real ``simulcast serve`` process."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import imageio_ffmpeg
import pytest

from simulcast.settings import Settings

REPO = Path(__file__).resolve().parents[2]  # the checkout: README, docs, src
PG_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/test"
NGINX = shutil.which("nginx")
NGINX_RTMP = Path("/usr/lib/nginx/modules/ngx_rtmp_module.so")


async def poll_until(predicate: Any, within: float, what: str) -> Any:
    """Await ``predicate()`` until it returns something truthy; fail after ``within`` seconds."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        value = await predicate()
        if value:
            return value
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


async def eventually(predicate: Callable[[], object], within: float = 10.0) -> None:
    """Wait until ``predicate()`` is true."""
    async with asyncio.timeout(within):
        while not predicate():  # noqa: ASYNC110 -- state owned by other tasks and processes
            await asyncio.sleep(0.01)


def ffmpeg_exe() -> str:
    """ffmpeg from imageio-ffmpeg, else the system one; skips the test when there is neither."""
    try:
        return str(imageio_ffmpeg.get_ffmpeg_exe())
    except RuntimeError:
        found = shutil.which("ffmpeg")
        if found is None:
            pytest.skip("no ffmpeg")
        return found


def free_port() -> int:
    """A TCP port free on loopback right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def loopback_settings(data_dir: Path, **overrides: Any) -> Settings:
    """Settings for an app run in the test's process: HTTP and RTMP on free loopback ports, SRT
    on a port of its choosing; ``overrides`` on top."""
    return Settings(
        data_dir=data_dir,
        http_host="127.0.0.1",
        http_port=free_port(),
        rtmp_host="127.0.0.1",
        rtmp_port=free_port(),
        srt_port=0,
        **overrides,
    )


def postgres_reachable() -> bool:
    """Whether the CI PostgreSQL (127.0.0.1:5432, trust auth) answers."""
    try:
        with socket.create_connection(("127.0.0.1", 5432), timeout=0.5):
            pass
    except OSError:
        return False
    try:
        import asyncpg

        async def probe() -> None:
            conn = await asyncpg.connect(PG_ADMIN_URL, timeout=2)
            await conn.close()

        asyncio.run(probe())
    except Exception:
        return False
    return True


@contextmanager
def fresh_postgres_database() -> Iterator[str]:
    """Create a uniquely named database for one test run; yields its URL; drops it after."""
    import asyncpg

    name = f"simulcast_t_{secrets.token_hex(4)}"

    async def run(sql: str) -> None:
        conn = await asyncpg.connect(PG_ADMIN_URL)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(run(f'CREATE DATABASE "{name}"'))
    try:
        yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    finally:
        asyncio.run(run(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@dataclass
class ServerProcess:
    """A running ``simulcast serve`` with its own data dir, ports and database."""

    data_dir: Path
    env: dict[str, str]
    http_port: int
    rtmp_port: int
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log_path = self.data_dir / "server.log"

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def rtmp_url(self, stream_key: str) -> str:
        return f"rtmp://127.0.0.1:{self.rtmp_port}/live/{stream_key}"

    def cli(self, *args: str) -> str:
        """Run a ``simulcast`` admin command against this server's database; its stdout."""
        out = subprocess.run(
            [sys.executable, "-m", "simulcast", *args],
            env=self.env,
            capture_output=True,
            check=True,
            timeout=60,
        )
        return out.stdout.decode()

    def create_account(
        self, name: str | None = None, password: str | None = None, sats: int = 0
    ) -> str:
        """Create an account through the CLI (funded with ``sats``); its first ``sk_`` key."""
        name = name or f"acct-{secrets.token_hex(4)}"
        args = ["accounts", "create", name]
        if password:
            args += ["--password", password]
        key = next((ln.split()[-1] for ln in self.cli(*args).splitlines() if "sk_" in ln), None)
        assert key, "no key printed"
        if sats:
            self.cli("wallet", "credit", "--account", name, str(sats))
        return key

    def start(self, within: float = 90) -> None:
        """Start the server and wait for ``/healthz`` (a loaded machine imports slowly)."""
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "simulcast", "serve"],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("server exited:\n" + self.log_path.read_text())
            try:
                if httpx.get(self.base_url + "/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        # The caller's teardown never sees a server that failed to start: stop it here, or it
        # lives on (and loads the machine) after the test.
        self.stop()
        raise RuntimeError("server did not start:\n" + self.log_path.read_text())

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> int:
        """Signal the server and wait for it; its exit code."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return int(self.proc.returncode)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def make_server(data_dir: Path, database_url: str = "", **settings: str) -> ServerProcess:
    """Prepare (not start) a server on free ports."""
    http_port, rtmp_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIMULCAST_")}
    env.update(
        SIMULCAST_DATA_DIR=str(data_dir),
        SIMULCAST_HTTP_HOST="127.0.0.1",
        SIMULCAST_HTTP_PORT=str(http_port),
        SIMULCAST_RTMP_HOST="127.0.0.1",
        SIMULCAST_RTMP_PORT=str(rtmp_port),
        SIMULCAST_SRT_HOST="127.0.0.1",
        SIMULCAST_SRT_PORT="0",
        SIMULCAST_DATABASE_URL=database_url,
        SIMULCAST_LOG_LEVEL="INFO",
    )
    env.update({f"SIMULCAST_{k.upper()}": v for k, v in settings.items()})
    return ServerProcess(data_dir=data_dir, env=env, http_port=http_port, rtmp_port=rtmp_port)


@contextmanager
def running_server(
    data_dir: Path, database_url: str = "", **settings: str
) -> Iterator[ServerProcess]:
    """A server (``make_server``'s arguments) started, and stopped on the way out."""
    server = make_server(data_dir, database_url, **settings)
    server.data_dir.mkdir(parents=True, exist_ok=True)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@asynccontextmanager
async def async_running_server(data_dir: Path, **settings: str) -> AsyncIterator[ServerProcess]:
    """``running_server`` for async tests: starts and stops in a thread, off the event loop."""
    server = make_server(data_dir, **settings)
    server.data_dir.mkdir(parents=True, exist_ok=True)
    await asyncio.to_thread(server.start)
    try:
        yield server
    finally:
        await asyncio.to_thread(server.stop)


def server_fixture(**settings: str) -> Any:
    """A module's ``server`` fixture: a server with ``settings``, started for each test (in a
    thread, off the event loop) and stopped after; ``server = server_fixture(...)``."""

    @pytest.fixture
    async def server(tmp_path: Path) -> AsyncIterator[ServerProcess]:
        async with async_running_server(tmp_path / "server", **settings) as proc:
            yield proc

    return server


def publisher(
    server: ServerProcess,
    key: str,
    seconds: float,
    keyframe_seconds: int = 1,
    clock: bool = False,
) -> subprocess.Popen[bytes]:
    """ffmpeg publishing test video and a tone in real time on ``key``: a keyframe every
    ``keyframe_seconds``; ``clock`` burns the publisher's wall clock into the picture."""
    burn = ["-vf", "drawtext=text='%{localtime\\:%T}':fontsize=24:fontcolor=white:box=1"]
    return subprocess.Popen(
        [
            imageio_ffmpeg.get_ffmpeg_exe(), "-loglevel", "error", "-re",
            "-f", "lavfi", "-i", "testsrc2=size=160x120:rate=15",
            "-f", "lavfi", "-i", "sine", "-t", str(seconds), "-pix_fmt", "yuv420p",
            *(burn if clock else []),
            "-c:v", "libx264", "-preset", "ultrafast", "-g", str(15 * keyframe_seconds),
            "-c:a", "aac", "-f", "flv", server.rtmp_url(key),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip


def wait_for(check: Callable[[], Any], within: float, what: str) -> Any:
    """Poll ``check`` (blocking) until it returns something truthy; that value."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def imported_modules(log: str) -> set[str]:
    """Every module a process started with ``PYTHONPROFILEIMPORTTIME=1`` imported, from its
    log (the interpreter reports each import on stderr)."""
    return {
        line.rsplit("|", 1)[1].strip()
        for line in log.splitlines()
        if line.startswith("import time:") and line.count("|") == 2
    }


PG_AVAILABLE = postgres_reachable()


BACKENDS = [
    "sqlite",
    pytest.param(
        "postgres",
        marks=[
            pytest.mark.postgres,
            pytest.mark.skipif(not PG_AVAILABLE, reason="PostgreSQL not reachable on 127.0.0.1"),
        ],
    ),
]


def listening(port: int) -> bool:
    """Whether something listens on ``port`` (read from /proc, so no connection is made:
    ``ffmpeg -listen 1`` serves exactly one connection and a probe would use it up)."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table) as f:
            for line in f.readlines()[1:]:
                fields = line.split()
                if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                    return True
    return False


@contextmanager
def nginx_rtmp_sink(root: Path) -> Iterator[tuple[int, Path]]:
    """nginx with the RTMP module recording everything published to ``/live`` under ``root``
    (its port and the records' directory; ``root/error.log`` logs each ``publish:`` at info
    level). Skips the test when nginx or its RTMP module is missing."""
    if NGINX is None or not NGINX_RTMP.exists():
        pytest.skip("nginx with libnginx-mod-rtmp is not installed")
    port = free_port()
    records = root / "records"
    records.mkdir(parents=True)
    conf = root / "nginx.conf"
    conf.write_text(
        f"load_module {NGINX_RTMP};\n"
        "master_process off;\n"
        f"pid {root}/nginx.pid;\n"
        f"error_log {root}/error.log info;\n"
        "events { worker_connections 64; }\n"
        f"rtmp {{ server {{ listen 127.0.0.1:{port}; chunk_size 4096;\n"
        f"  application live {{ live on; record all; record_path {records}; }} }} }}\n"
    )
    proc = subprocess.Popen(
        [NGINX, "-c", str(conf), "-p", str(root), "-g", "daemon off;"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        for _ in range(250):
            if listening(port):
                break
            if proc.poll() is not None:
                pytest.skip("nginx failed to start")
            time.sleep(0.02)
        yield port, records
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
