"""A processing stage: one bundled-ffmpeg child process fed and drained through FLV pipes.

Why a child process and not PyAV in the server: measured on this machine, a 720p30 decode ->
scale -> libx264 encode costs the same CPU either way (the codecs do the work), but a child
keeps codec crashes, hostile bitstreams and any GIL contention out of the event loop, and its
filter graph (crop, scale, fps, volume) is one string. The server already runs the same binary
for slates.

The worker reads its upstream :class:`LiveStream` through a bounded :class:`Reader` and writes
each unit as an FLV tag to ffmpeg's stdin; while ffmpeg is behind, the reader (not the
publisher) fills up and drops to the next keyframe, counting what it dropped. ffmpeg's stdout
is parsed with the sans-I/O :class:`~simulcast.codecs.flv.FlvDemuxer` and published through a
feed of the element's :class:`Switcher`, so a restarted process (crash, new settings) continues
the element's timeline at its first keyframe. A source worker (a video player) has no stdin.

A worker with a :class:`SideOutput` (``reframe: auto``) is driven at run time: its FLV input
then comes through another pipe (named ``/dev/fd/N``, which leaves ffmpeg's stdin interaction
on), stdin carries filter commands queued at a media time (ffmpeg's interactive ``C`` key,
read every ``-stats_period``), and a second output pipe carries raw frames for Python.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from simulcast.codecs import flv
from simulcast.codecs.unit import Kind, MediaUnit
from simulcast.media.reader import Reader, ReaderClosed, is_config
from simulcast.media.stream import LiveStream
from simulcast.media.switcher import Feed, Switcher

log = logging.getLogger("simulcast.processing")

BEHIND_SECONDS = 2.0
"""Media a worker may be behind its input before its reader drops to the next keyframe."""

_RETRY_MIN_S = 1.0
_RETRY_MAX_S = 30.0
_READ_CHUNK = 1 << 16
_STDERR_LINES = 5
_PROMPT = "Enter command:"  # ffmpeg echoes each command: not an error

INPUT = "pipe:0"
"""How a filter worker's command line names its FLV input."""
SIDE = "pipe:3"
"""How a command line names its :class:`SideOutput` (replaced by the pipe's real fd)."""


@dataclass(frozen=True, slots=True)
class SideOutput:
    """A second output of raw frames of ``frame_bytes`` each, handed to ``on_frame``.

    ``on_frame`` runs on the event loop and must return quickly (hand heavy work to a thread,
    dropping frames while it is busy); while it is not read, ffmpeg would block.
    """

    frame_bytes: int
    on_frame: Callable[[bytes], None]


class FfmpegWorker:
    """Runs ``args()`` as an ffmpeg process until :meth:`stop`, restarting it with backoff.

    ``upstream`` (a stream and its reader factory) feeds stdin as FLV; ``None`` means the
    command line names its own input (``args`` must then not read stdin).
    """

    def __init__(
        self,
        name: str,
        args: Callable[[], Sequence[str]],
        switcher: Switcher,
        *,
        upstream: LiveStream | None = None,
        queue_bytes: int = 8 << 20,
        on_live: Callable[[bool], None] = lambda live: None,
        live_edge: bool = False,
        side: SideOutput | None = None,
    ) -> None:
        self._name = name
        self._side = side
        self.media_seconds: float | None = None
        """The time (the filters' ``t``) of the current process's last output frame."""
        self._args = args
        self._switcher = switcher
        self._upstream = upstream
        self._queue_bytes = queue_bytes
        self._on_live = on_live
        self._live_edge = live_edge
        """Start at the input's next keyframe, not its GOP cache: its output then runs at
        wall-clock time (an overlay read in real time lines up with it)."""
        self._task: asyncio.Task[None] | None = None
        self._proc: asyncio.subprocess.Process | None = None
        self.last_error: str | None = None
        self.restarts = 0
        self.frames_in = 0
        self.frames_out = 0
        self._dropped_before = 0
        self._reader: Reader | None = None
        self._out_media_ms = 0
        self._samples: deque[tuple[float, int, int, int]] = deque(maxlen=6)

    @property
    def dropped_frames(self) -> int:
        """Input units dropped because the process was behind (cumulative)."""
        current = self._reader.dropped_frames if self._reader is not None else 0
        return self._dropped_before + current

    @property
    def running(self) -> bool:
        """Whether the worker is wanted (between :meth:`start` and :meth:`stop`)."""
        return self._task is not None

    def start(self) -> None:
        """Start (or keep) the process loop."""
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name=f"ffmpeg-{self._name}")

    def restart(self) -> None:
        """End the current process: the loop starts a new one with fresh ``args()`` at once."""
        proc = self._proc
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()

    def command(self, target: str, command: str, argument: str, at: float) -> bool:
        """Queue ``command`` for the filter ``target`` of the running process (a worker with a
        side output only), applied from the frame of time ``at`` (seconds, the filters' ``t``:
        :attr:`media_seconds` is how far the process got). ``False`` when no process runs.
        ffmpeg reads one command per ``-stats_period``: send no more often than that."""
        proc = self._proc
        if self._side is None or proc is None or proc.stdin is None or proc.returncode is not None:
            return False
        if proc.stdin.is_closing():
            return False
        proc.stdin.write(f"C{target} {at:.3f} {command} {argument}\n".encode())
        return True

    async def stop(self) -> None:
        """Stop the process and the loop."""
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    def sample(self, now: float) -> None:
        """Once a second: remember the counters for the rates in :meth:`figures`."""
        self._samples.append((now, self.frames_in, self.frames_out, self._out_media_ms))

    def figures(self) -> dict[str, object]:
        """fps in and out, encode speed (media seconds per wall second), drops, last error."""
        fps_in = fps_out = speed = 0.0
        if len(self._samples) >= 2:
            (t0, i0, o0, m0), (t1, i1, o1, m1) = self._samples[0], self._samples[-1]
            if t1 - t0 >= 1.0:
                fps_in = (i1 - i0) / (t1 - t0)
                fps_out = (o1 - o0) / (t1 - t0)
                speed = (m1 - m0) / 1000 / (t1 - t0)
        return {
            "fpsIn": round(fps_in, 1),
            "fpsOut": round(fps_out, 1),
            "speed": round(speed, 2),
            "droppedFrames": self.dropped_frames,
            "restarts": self.restarts,
            "lastError": self.last_error,
        }

    async def _loop(self) -> None:
        delay = _RETRY_MIN_S
        while True:
            started = time.monotonic()
            try:
                await self._run_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a broken process must not end the element
                self.last_error = str(exc) or type(exc).__name__
                log.warning("%s: %s", self._name, self.last_error)
            self._on_live(False)
            self.restarts += 1
            if time.monotonic() - started > _RETRY_MAX_S:
                delay = _RETRY_MIN_S  # it ran for a while: this is a new failure
            await asyncio.sleep(delay)
            delay = min(delay * 2, _RETRY_MAX_S)

    async def _run_once(self) -> None:
        reader = None
        first: list[MediaUnit] = []
        if self._upstream is not None:
            reader = self._upstream.add_reader(
                max_bytes=self._queue_bytes, max_seconds=BEHIND_SECONDS
            )
            reader.resync()
            self._reader = reader
        try:
            if reader is not None:
                primed = len(reader) if self._live_edge else 0
                while primed > 0:
                    batch = await reader.get_batch(min(primed, 64))
                    primed -= len(batch)
                    first += [unit for unit in batch if is_config(unit)]
                if not first:
                    first = await reader.get_batch()  # nothing to encode before input flows
            args = list(self._args())
            pipes: list[int] = []  # the child's ends of the side pipes, closed once it runs
            ours: list[int] = []
            if self._side is not None:
                input_r, input_w = os.pipe()
                side_r, side_w = os.pipe()
                pipes, ours = [input_r, side_w], [input_w, side_r]
                swap = {INPUT: f"/dev/fd/{input_r}", SIDE: f"pipe:{side_w}"}
                args = [swap.get(arg, arg) for arg in args]
            try:
                proc = self._proc = await asyncio.create_subprocess_exec(
                    *args,
                    stdin=asyncio.subprocess.PIPE
                    if reader is not None
                    else asyncio.subprocess.DEVNULL,
                    stdout=asyncio.subprocess.PIPE,
                    stderr=asyncio.subprocess.PIPE,
                    pass_fds=pipes,
                )
            except BaseException:
                for fd in ours:
                    os.close(fd)
                raise
            finally:
                for fd in pipes:
                    os.close(fd)
            self.media_seconds = None
            stderr: deque[str] = deque(maxlen=_STDERR_LINES)
            tasks = [
                asyncio.create_task(self._drain(proc)),
                asyncio.create_task(self._collect(proc, stderr)),
            ]
            if self._side is not None:
                tasks.append(asyncio.create_task(self._side_frames(ours[1], self._side)))
            if reader is not None:
                sink = ours[0] if ours else None
                tasks.append(asyncio.create_task(self._feed(proc, reader, first, sink)))
            try:
                await tasks[0]
                code = await proc.wait()
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                if proc.returncode is None:
                    with contextlib.suppress(ProcessLookupError):
                        proc.kill()
                    await proc.wait()
                self._proc = None
            detail = " / ".join(stderr) if stderr else "no output"
            raise RuntimeError(f"ffmpeg exited {code}: {detail}")
        except ReaderClosed:
            raise asyncio.CancelledError from None
        finally:
            if reader is not None and self._upstream is not None:
                self._dropped_before += reader.dropped_frames
                self._reader = None
                self._upstream.remove_reader(reader)

    async def _feed(
        self,
        proc: asyncio.subprocess.Process,
        reader: Reader,
        first: list[MediaUnit],
        fd: int | None,
    ) -> None:
        """Write the input as FLV to stdin, or to ``fd`` (then owned, and closed, here)."""
        if fd is None:
            assert proc.stdin is not None
            await self._write_flv(proc.stdin, reader, first)
            return
        loop = asyncio.get_running_loop()
        transport, protocol = await loop.connect_write_pipe(
            asyncio.streams.FlowControlMixin, os.fdopen(fd, "wb")
        )
        try:
            await self._write_flv(
                asyncio.StreamWriter(transport, protocol, None, loop), reader, first
            )
        finally:
            transport.close()

    async def _side_frames(self, fd: int, side: SideOutput) -> None:
        """Hand each raw frame of the side output (``fd``, owned here) to ``side.on_frame``."""
        loop = asyncio.get_running_loop()
        stream = asyncio.StreamReader(limit=side.frame_bytes * 2)
        transport, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(stream), os.fdopen(fd, "rb")
        )
        try:
            while True:
                side.on_frame(await stream.readexactly(side.frame_bytes))
        except asyncio.IncompleteReadError:
            pass  # the process ended
        finally:
            transport.close()

    async def _write_flv(
        self, stdin: asyncio.StreamWriter, reader: Reader, first: list[MediaUnit]
    ) -> None:
        upstream = self._upstream
        assert upstream is not None
        has_audio = Kind.AUDIO in upstream.sequence_headers or not upstream.has_video
        stdin.write(flv.write_header(has_audio=has_audio, has_video=upstream.has_video))
        batch = first
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            while True:
                chunks = []
                for unit in batch:
                    if unit.kind == Kind.VIDEO and not unit.sequence_header:
                        self.frames_in += 1
                    chunks.append(flv.write_tag(unit.kind, unit.timestamp, unit.payload))
                stdin.write(b"".join(chunks))
                await stdin.drain()  # meanwhile the reader, not the publisher, fills up
                batch = await reader.get_batch()

    async def _drain(self, proc: asyncio.subprocess.Process) -> None:
        stdout = proc.stdout
        assert stdout is not None
        demuxer = flv.FlvDemuxer()
        feed: Feed | None = None
        last_ms: int | None = None
        try:
            while data := await stdout.read(_READ_CHUNK):
                for type_id, timestamp, body in demuxer.feed(data):
                    if type_id not in (Kind.AUDIO, Kind.VIDEO, Kind.DATA) or not body:
                        continue
                    kind = Kind(type_id)
                    keyframe, header = flv.classify(kind, body) if kind != Kind.DATA else (0, 0)
                    if feed is None:
                        feed = self._switcher.attach(self.restart)
                    feed.publish(MediaUnit(kind, timestamp, body, bool(keyframe), bool(header)))
                    if kind == Kind.VIDEO and not header:
                        self._on_live(feed is self._switcher.active)
                        self.frames_out += 1
                        self.media_seconds = timestamp / 1000
                        if last_ms is not None and timestamp > last_ms:
                            self._out_media_ms += timestamp - last_ms  # for the speed figure
                        last_ms = timestamp
                if feed is not None:
                    feed.flush()
        finally:
            if feed is not None:
                self._switcher.detach(feed)

    async def _collect(self, proc: asyncio.subprocess.Process, lines: deque[str]) -> None:
        stderr = proc.stderr
        assert stderr is not None
        async for raw in stderr:
            line = raw.decode(errors="replace").strip()
            if line and not line.startswith(_PROMPT):
                lines.append(line)
