"""The recorder output: a session's units become one fragmented MP4 file on local disk.

Passthrough: the HLS packager's segmenter cuts the units into ``moof``+``mdat`` fragments at
keyframes, behind a :class:`~simulcast.codecs.fmp4.recording.TrackGate` that keeps the file's
tracks fixed across disconnect-protection slates and returning publishers, so a session is one
file whatever happened to its publisher. The file is only ever appended to, one whole fragment
per write, so a process killed mid-session leaves a file that plays up to its last complete
fragment (the archive service trims a partial one before uploading).

Writes run on one worker thread per recording, in order, and are not awaited: the output keeps
reading while the disk works, and a write error (disk full) fails the output at the next batch,
which leaves every other output of the session untouched. Uploading is not done here: the
control plane's archive service reads the growing file.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import time
from pathlib import Path
from typing import BinaryIO

from simulcast.codecs.flv import FlvError
from simulcast.codecs.fmp4.recording import TrackGate
from simulcast.codecs.hls import Segmenter
from simulcast.engine import ARCHIVE_FILE_OPTION, OutputSpec
from simulcast.media.output import Output, OutputFailed, OutputLink
from simulcast.media.reader import Reader
from simulcast.settings import Settings

log = logging.getLogger("simulcast.outputs.recorder")

_SYNC_EVERY_S = 1.0  # data reaches the disk at least this often (page cache survives kill -9)
_MAX_PENDING_BYTES = 64 * 1024 * 1024  # a disk this far behind is failing


class _AppendFile:
    """One file appended to by one worker thread, in submission order."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._pool = concurrent.futures.ThreadPoolExecutor(1, f"recorder-{path.name}")
        self._handle: BinaryIO | None = None
        self._last_sync = 0.0
        self._pending = 0
        self._error: BaseException | None = None
        self._last: concurrent.futures.Future[None] | None = None

    async def open(self) -> None:
        """Create the file now, so a recorder that cannot write fails at once."""
        await asyncio.wrap_future(self._pool.submit(self._open))
        self.check()

    def append(self, data: bytes) -> None:
        """Queue ``data`` for writing; raises the first write error seen so far."""
        self.check()
        if self._pending > _MAX_PENDING_BYTES:
            raise OutputFailed("cannot write recording: the disk is not keeping up")
        self._pending += len(data)
        self._last = self._pool.submit(self._write, data)

    def check(self) -> None:
        """Raise :class:`OutputFailed` if a write failed."""
        if self._error is not None:
            raise OutputFailed(f"cannot write recording: {self._error}")

    async def close(self) -> None:
        """Wait for every queued write, sync and close the file."""
        done = self._pool.submit(self._close)
        self._pool.shutdown(wait=False)
        await asyncio.wrap_future(done)

    def _open(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._handle = self.path.open("wb")
        except OSError as exc:
            self._error = exc

    def _write(self, data: bytes) -> None:
        try:
            if self._error is not None or self._handle is None:
                return
            self._handle.write(data)
            self._handle.flush()
            now = time.monotonic()
            if now - self._last_sync >= _SYNC_EVERY_S:
                os.fdatasync(self._handle.fileno())
                self._last_sync = now
        except OSError as exc:
            self._error = exc
        finally:
            self._pending -= len(data)

    def _close(self) -> None:
        if self._handle is None:
            return
        try:
            self._handle.flush()
            os.fdatasync(self._handle.fileno())
        except OSError as exc:
            self._error = self._error or exc
        finally:
            self._handle.close()


class RecorderOutput(Output):
    """One recording: reader -> track gate -> segmenter -> file, until the stream ends."""

    def __init__(self, path: Path, fragment_seconds: float) -> None:
        self._path = path
        self._fragment_seconds = fragment_seconds

    async def run(self, reader: Reader, link: OutputLink) -> None:
        """Record what ``reader`` yields; the tail is written even when cancelled."""
        file = _AppendFile(self._path)
        try:
            await file.open()
        except OutputFailed:
            await file.close()
            raise
        link.connected()
        gate = TrackGate()
        segmenter = Segmenter(self._fragment_seconds)
        try:
            async for units in reader.batches():
                for unit in units:
                    admitted = gate.admit(unit)
                    if admitted is None:
                        continue
                    try:
                        events = segmenter.push(admitted)
                    except (FlvError, ValueError) as exc:
                        log.warning("recorder %s: skipped malformed unit: %s", self._path.name, exc)
                        continue
                    for event in events:
                        file.append(event.data)
                        link.sent(len(event.data))
                file.check()
        finally:
            # Stopped or cancelled: what was queued is still recorded, then the file is closed.
            try:
                for event in segmenter.flush():
                    file.append(event.data)
                    link.sent(len(event.data))
            except OutputFailed:
                pass  # raised by the check below, once the file is closed
            finally:
                await file.close()
        file.check()


class RecorderRegistry:
    """The engine's ``archive`` output factory: recordings under ``settings.archive_path``."""

    def __init__(self, settings: Settings) -> None:
        self._root = settings.archive_path
        self._fragment_seconds = settings.archive_fragment_seconds

    def factory(self, spec: OutputSpec) -> Output:
        """A recorder for ``spec`` (its ``fileName`` option names the file)."""
        name = spec.options.get(ARCHIVE_FILE_OPTION)
        if not isinstance(name, str) or not name or "/" in name or name.startswith("."):
            return _Refused("no valid recording file name")
        return RecorderOutput(self._root / name, self._fragment_seconds)


class _Refused(Output):
    def __init__(self, reason: str) -> None:
        self._reason = reason

    async def run(self, reader: Reader, link: OutputLink) -> None:
        raise OutputFailed(self._reason)
