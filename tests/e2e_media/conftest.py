"""Real-process fixtures for the media plane: ffmpeg publishers/receivers, nginx-rtmp, engine."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import imageio_ffmpeg
import pytest

from simulcast.engine import (
    EngineEvent,
    OutputSpec,
    PublishGrant,
    PublishRefused,
    PublishRequest,
    SessionEnded,
)
from simulcast.media.local_engine import LocalEngine
from simulcast.settings import Settings

FFMPEG = imageio_ffmpeg.get_ffmpeg_exe()


async def eventually(predicate: Callable[[], object], within: float = 10.0) -> None:
    """Wait until ``predicate()`` is true."""
    async with asyncio.timeout(within):
        while not predicate():  # noqa: ASYNC110 -- state owned by other tasks and processes
            await asyncio.sleep(0.02)


def ended(control: Any) -> list[SessionEnded]:
    """The SessionEnded events the control plane got so far."""
    return [e for e in control.events if isinstance(e, SessionEnded)]


async def end_reasons(control: Any, count: int = 1) -> list[str]:
    """The reasons of the sessions that ended, once the control plane has heard of ``count``.

    The engine forgets a session before its outputs have drained and the end is reported (the
    event travels through a queue), so a test that saw ``engine.session()`` go away waits here
    for the events themselves.
    """
    await eventually(lambda: len(ended(control)) >= count)
    return [e.reason for e in ended(control)]


NGINX = shutil.which("nginx")
NGINX_RTMP = Path("/usr/lib/nginx/modules/ngx_rtmp_module.so")

X264 = ["-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-g", "30"]


def free_port() -> int:
    """A TCP port free on loopback right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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


async def wait_listening(port: int, within: float = 5.0) -> None:
    """Wait until ``port`` is listening."""
    async with asyncio.timeout(within):
        while not listening(port):  # noqa: ASYNC110 -- another process owns the socket
            await asyncio.sleep(0.02)


class Authorizer:
    """An in-memory control plane: known keys and their outputs; records engine events."""

    def __init__(self) -> None:
        self.keys: dict[str, tuple[int, list[OutputSpec], float]] = {}
        self.events: list[EngineEvent] = []
        self._sessions = 0

    def allow(
        self,
        key: str,
        stream_id: int,
        outputs: Sequence[OutputSpec] = (),
        protection_seconds: float = 0.0,
    ) -> None:
        """Let ``key`` publish as ``stream_id`` with ``outputs`` (and disconnect protection)."""
        self.keys[key] = (stream_id, list(outputs), protection_seconds)

    async def authorize_publish(self, request: PublishRequest) -> PublishGrant:
        """Grant known keys, refuse the rest."""
        if request.stream_key not in self.keys:
            raise PublishRefused("Unknown stream key")
        stream_id, outputs, protection = self.keys[request.stream_key]
        self._sessions += 1
        return PublishGrant(f"sess-{self._sessions}", stream_id, 1, outputs, protection)

    async def on_engine_event(self, event: EngineEvent) -> None:
        """Record the event."""
        self.events.append(event)


@dataclass
class Media:
    """What a recording holds."""

    video_frames: int
    audio_packets: int
    first_video_keyframe: bool
    monotonic: bool
    video_codec: str


def probe(path: Path) -> Media:
    """Demux and decode a recording with PyAV."""
    with av.open(str(path)) as container:
        video = container.streams.video[0] if container.streams.video else None
        frames = audio = 0
        first_key: bool | None = None
        last_dts: dict[int, int] = {}
        monotonic = True
        for packet in container.demux():
            if packet.dts is None or packet.size == 0:
                continue
            index = packet.stream.index
            if packet.dts < last_dts.get(index, -(2**62)):
                monotonic = False
            last_dts[index] = packet.dts
            if packet.stream.type == "audio":
                audio += 1
            elif packet.stream.type == "video":
                if first_key is None:
                    first_key = packet.is_keyframe
                frames += len(packet.decode())
        if video is not None:
            video.codec_context.flush_buffers()
        return Media(
            frames, audio, bool(first_key), monotonic, video.codec_context.name if video else ""
        )


class Processes:
    """Starts subprocesses and kills whatever is still running at teardown."""

    def __init__(self) -> None:
        self._procs: list[asyncio.subprocess.Process] = []

    async def start(self, *args: str, log: Path | None = None) -> asyncio.subprocess.Process:
        """Start ``args`` with output to ``log`` (or discarded)."""
        out: Any = open(log, "wb") if log else subprocess.DEVNULL  # noqa: SIM115, ASYNC230
        proc = await asyncio.create_subprocess_exec(
            *args, stdin=subprocess.DEVNULL, stdout=out, stderr=out
        )
        if log:
            out.close()
        self._procs.append(proc)
        return proc

    async def publish(
        self, port: int, key: str, seconds: float = 4, video: Sequence[str] = X264, **kw: Any
    ) -> asyncio.subprocess.Process:
        """ffmpeg publishing test video + a sine tone in real time to the ingest."""
        return await self.start(
            FFMPEG, "-hide_banner", "-nostats", "-re",
            "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=30",
            "-f", "lavfi", "-i", "sine=frequency=440",
            "-pix_fmt", "yuv420p", *video, "-c:a", "aac", "-t", str(seconds),
            "-f", "flv", f"rtmp://127.0.0.1:{port}/live/{key}",
            **kw,
        )  # fmt: skip

    async def receiver(self, out: Path, port: int | None = None) -> tuple[int, Any]:
        """``ffmpeg -listen 1`` recording what is pushed to it; returns (port, process)."""
        port = port or free_port()
        proc = await self.start(
            FFMPEG, "-hide_banner", "-nostats", "-y", "-listen", "1",
            "-i", f"rtmp://127.0.0.1:{port}/app/k", "-c", "copy", "-f", "flv", str(out),
            log=out.with_suffix(".log"),
        )  # fmt: skip
        await wait_listening(port)
        return port, proc

    async def close(self) -> None:
        """Kill and reap everything still running."""
        for proc in self._procs:
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()


@pytest.fixture
async def procs() -> AsyncIterator[Processes]:
    """Subprocesses killed at teardown."""
    p = Processes()
    try:
        yield p
    finally:
        await p.close()


EngineFactory = Callable[..., Any]


@pytest.fixture
async def make_engine() -> AsyncIterator[Callable[..., Any]]:
    """Start a LocalEngine on a free port: ``engine, control = await make_engine(**settings)``."""
    engines: list[LocalEngine] = []

    async def make(**overrides: Any) -> tuple[LocalEngine, Authorizer]:
        options: dict[str, Any] = {
            "rtmp_host": "127.0.0.1",
            "rtmp_port": 0,
            "push_retry_min_seconds": 0.3,
            "push_retry_max_seconds": 1.0,
            "rtmp_handshake_timeout": 3.0,
        }
        options.update(overrides)
        control = Authorizer()
        engine = LocalEngine(Settings(**options), control)
        await engine.start()
        engines.append(engine)
        return engine, control

    try:
        yield make
    finally:
        for engine in engines:
            await engine.close()


@pytest.fixture
def nginx_rtmp(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """nginx with the RTMP module recording everything published to ``/live``."""
    if NGINX is None or not NGINX_RTMP.exists():
        pytest.skip("nginx with libnginx-mod-rtmp is not installed")
    port = free_port()
    root = tmp_path / "nginx"
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
