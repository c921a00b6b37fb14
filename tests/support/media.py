"""Real-process helpers for the media plane: ffmpeg publishers and receivers, nginx-rtmp
detection, a recording prober (PyAV) and an in-memory control plane for ``LocalEngine``."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

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
from simulcast.node import media_engine
from simulcast.settings import Settings
from tests.support import eventually, free_port, listening, nginx_rtmp_sink

FFMPEG = imageio_ffmpeg.get_ffmpeg_exe()


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


X264 = ["-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-g", "30"]


async def wait_listening(port: int, within: float = 5.0) -> None:
    """Wait until ``port`` is listening."""
    async with asyncio.timeout(within):
        while not listening(port):  # noqa: ASYNC110 -- another process owns the socket
            await asyncio.sleep(0.02)


class Authorizer:
    """An in-memory control plane: known keys and their outputs; records engine events."""

    def __init__(self) -> None:
        self.keys: dict[str, tuple[int, list[OutputSpec], float]] = {}
        self.passphrases: dict[str, str] = {}
        self.events: list[EngineEvent] = []
        self._sessions = 0

    def allow(
        self,
        key: str,
        stream_id: int,
        outputs: Sequence[OutputSpec] = (),
        protection_seconds: float = 0.0,
        srt_passphrase: str | None = None,
    ) -> None:
        """Let ``key`` publish as ``stream_id`` with ``outputs`` (and disconnect protection;
        over SRT only encrypted with ``srt_passphrase`` when one is given)."""
        self.keys[key] = (stream_id, list(outputs), protection_seconds)
        if srt_passphrase is not None:
            self.passphrases[key] = srt_passphrase

    async def authorize_publish(self, request: PublishRequest) -> PublishGrant:
        """Grant known keys, refuse the rest."""
        if request.stream_key not in self.keys:
            raise PublishRefused("Unknown stream key")
        stream_id, outputs, protection = self.keys[request.stream_key]
        self._sessions += 1
        return PublishGrant(f"sess-{self._sessions}", stream_id, 1, outputs, protection)

    async def srt_passphrase(self, stream_key: str) -> str | None:
        """The passphrase given to :meth:`allow`."""
        return self.passphrases.get(stream_key)

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
    max_video_step_ms: float  # the longest step between consecutive video frames' dts


def probe(path: Path) -> Media:
    """Demux and decode a recording with PyAV."""
    with av.open(str(path)) as container:
        video = container.streams.video[0] if container.streams.video else None
        frames = audio = 0
        first_key: bool | None = None
        last_dts: dict[int, int] = {}
        monotonic = True
        max_step = 0.0
        for packet in container.demux():
            if packet.dts is None or packet.size == 0:
                continue
            index = packet.stream.index
            previous = last_dts.get(index)
            if previous is not None and packet.dts < previous:
                monotonic = False
            last_dts[index] = packet.dts
            if packet.stream.type == "audio":
                audio += 1
            elif packet.stream.type == "video":
                if previous is not None and packet.time_base is not None:
                    max_step = max(
                        max_step, float((packet.dts - previous) * packet.time_base) * 1000
                    )
                if first_key is None:
                    first_key = packet.is_keyframe
                frames += len(packet.decode())
        if video is not None:
            video.codec_context.flush_buffers()
        return Media(
            frames,
            audio,
            bool(first_key),
            monotonic,
            video.codec_context.name if video else "",
            max_step,
        )


T = TypeVar("T")


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return -1


async def recorded(
    path: Path, read: Callable[[Path], T], enough: Callable[[T], bool], within: float = 15.0
) -> T:
    """``read(path)`` once a recording (nginx's, or ffmpeg's) has stopped growing and holds
    ``enough``: after a push stops, the writer still has the tail of the stream in its socket
    buffers, so the file is read only when two looks 0.25 s apart find it the same size."""
    deadline = asyncio.get_running_loop().time() + within
    last_size, value = -1, None
    while asyncio.get_running_loop().time() < deadline:
        size = _size(path)
        if size > 0 and size == last_size:
            with contextlib.suppress(av.error.FFmpegError):  # a tag cut mid-write
                value = await asyncio.to_thread(read, path)
                if enough(value):
                    return value
        last_size = size
        await asyncio.sleep(0.25)
    raise AssertionError(f"{path.name} never held enough: {value}")


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
        self,
        port: int,
        key: str,
        seconds: float = 4,
        video: Sequence[str] = X264,
        app: str = "live",
        size: str = "320x240",
        **kw: Any,
    ) -> asyncio.subprocess.Process:
        """ffmpeg publishing test video + a sine tone in real time to the ingest (to ``app``:
        ``live``, or an instance input's element id)."""
        return await self.start(
            FFMPEG, "-hide_banner", "-nostats", "-re",
            "-f", "lavfi", "-i", f"testsrc2=size={size}:rate=30",
            "-f", "lavfi", "-i", "sine=frequency=440",
            "-pix_fmt", "yuv420p", *video, "-c:a", "aac", "-t", str(seconds),
            "-f", "flv", f"rtmp://127.0.0.1:{port}/{app}/{key}",
            **kw,
        )  # fmt: skip

    async def clip(self, path: Path, seconds: int) -> Path:
        """An MP4 upload: ``seconds`` of 320x240 test video (1 s GOPs) and a sine tone."""
        made = await self.start(
            FFMPEG, "-hide_banner", "-loglevel", "error",
            "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=30",
            "-f", "lavfi", "-i", "sine=frequency=440",
            "-t", str(seconds), "-pix_fmt", "yuv420p",
            "-c:v", "libx264", "-preset", "ultrafast", "-g", "30",
            "-c:a", "aac", "-movflags", "+faststart", str(path),
        )  # fmt: skip
        assert await asyncio.wait_for(made.wait(), 30) == 0
        return path

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


EngineFactory = Callable[..., Any]


@pytest.fixture
async def procs() -> AsyncIterator[Processes]:
    """Subprocesses killed at teardown."""
    p = Processes()
    try:
        yield p
    finally:
        await p.close()


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
            "srt_host": "127.0.0.1",
            "srt_port": 0,
        }
        options.update(overrides)
        control = Authorizer()
        engine = media_engine(Settings(**options), control)
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
    with nginx_rtmp_sink(tmp_path / "nginx") as sink:
        yield sink
