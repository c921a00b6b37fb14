"""The HLS packager output: a reader's units become CMAF segments on disk and a live playlist.

An :class:`HlsChannel` is the playback state of one self-hosted destination. It outlives a
session: a publisher that reconnects while the DVR window still holds segments continues the
same playlist after an ``EXT-X-DISCONTINUITY``, so viewers keep their position. Segments are
written atomically (temporary file, then rename) before they enter the playlist, the newest few
are also kept in memory for the live edge, and segments that leave the window are deleted after
a short grace (a player that just loaded the playlist may still ask for them).

Disk trouble never stops the live edge: below the free-space floor, or on a failed write, the
oldest DVR segments are dropped first; a segment that still cannot be written is served from
memory only.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import secrets
import shutil
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from simulcast.codecs.flv import FlvError
from simulcast.codecs.hls import (
    InitSegment,
    PlaylistSegment,
    Segment,
    Segmenter,
    SegmentEvent,
    render_media_playlist,
)
from simulcast.media.reader import Reader, ReaderClosed
from simulcast.outputs.base import OutputLink

log = logging.getLogger("simulcast.outputs.hls")

_MIN_DVR_SEGMENTS = 3  # a DVR playlist never shrinks below this (players need a few to start)


@dataclass(frozen=True, slots=True)
class ChannelConfig:
    """How one channel packages and keeps segments."""

    target_duration: float
    window_seconds: int
    live_segments: int
    memory_segments: int
    min_free_bytes: int


@dataclass(slots=True)
class StoredFile:
    """An init or media segment: on disk (``path``) and/or in memory (``data``)."""

    name: str
    size: int
    path: Path | None
    data: bytes | None


@dataclass(slots=True)
class _Entry:
    sequence: int
    file: StoredFile
    duration_s: float
    discontinuity: bool
    init_name: str
    start: float  # wall clock, unix seconds

    @property
    def end(self) -> float:
        return self.start + self.duration_s


class HlsChannel:
    """One destination's playlist and segment files, across its sessions."""

    def __init__(self, destination_id: int, root: Path, config: ChannelConfig) -> None:
        self.destination_id = destination_id
        self.config = config
        self.epoch = secrets.token_hex(4)
        """Part of every file name, so a name is never reused (segments are cached forever)."""
        self.directory = root / f"{destination_id}-{self.epoch}"
        self.live = False
        self._entries: deque[_Entry] = deque()
        self._files: dict[str, StoredFile] = {}
        self._graveyard: deque[tuple[float, StoredFile]] = deque()  # (delete at, file)
        self._next_sequence = 0
        self._removed_discontinuities = 0
        self._init_name = ""
        self._inits = 0
        self._new_period = False
        self._playlist_cache: dict[str, str] = {}

    # -- what viewers and the status endpoint see ----------------------------------------------

    @property
    def ready(self) -> bool:
        """Live with at least two segments in the playlist (``hlsReady``)."""
        return self.live and len(self._entries) >= 2

    @property
    def window_seconds(self) -> float:
        """Seconds of media the playlist currently offers."""
        return sum(entry.duration_s for entry in self._entries)

    @property
    def available_from_ms(self) -> int | None:
        """Wall-clock time of the oldest sample still playable, in unix milliseconds."""
        return int(self._entries[0].start * 1000) if self._entries else None

    @property
    def segment_count(self) -> int:
        """Media segments in the playlist."""
        return len(self._entries)

    def playlist(self, uri_suffix: str = "") -> str:
        """The media playlist with ``uri_suffix`` (e.g. ``?apiKey=...``) on every URI."""
        cached = self._playlist_cache.get(uri_suffix)
        if cached is None:
            if len(self._playlist_cache) > 64:  # one entry per distinct credential
                self._playlist_cache.clear()
            cached = self._playlist_cache[uri_suffix] = self._render(uri_suffix)
        return cached

    async def read(self, name: str) -> bytes | None:
        """An init or media segment's bytes (listed, or recently removed but not yet deleted)."""
        stored = self._files.get(name)
        if stored is None:
            return None
        if stored.data is not None:
            return stored.data
        if stored.path is None:
            return None
        try:
            return await asyncio.to_thread(stored.path.read_bytes)
        except OSError:
            return None  # deleted in the meantime

    # -- what the packager does -----------------------------------------------------------------

    def begin_period(self) -> None:
        """A (re)connected publisher: its first segment follows a discontinuity."""
        self.live = True
        self._new_period = bool(self._entries)
        self._invalidate()

    def end_period(self) -> None:
        """The publisher is gone: the playlist stops being served until the next period."""
        self.live = False
        self._invalidate()

    async def add(self, event: SegmentEvent, start: float) -> int:
        """Store an init or media segment (``start``: wall clock of its first sample).

        Returns the bytes written to disk.
        """
        if isinstance(event, InitSegment):
            self._inits += 1
            name = f"{self.epoch}-init{self._inits}.mp4"
            self._files[name] = await self._store(name, event.data)
            self._init_name = name
            return len(event.data)
        return await self._add_segment(event, start)

    async def close(self) -> None:
        """Delete every file of the channel."""
        self._entries.clear()
        self._files.clear()
        self._graveyard.clear()
        self._invalidate()
        await asyncio.to_thread(shutil.rmtree, self.directory, True)

    # -- internals ----------------------------------------------------------------------------

    async def _add_segment(self, segment: Segment, start: float) -> int:
        name = f"{self.epoch}-{self._next_sequence}.m4s"
        await self._make_room(len(segment.data))
        stored = await self._store(name, segment.data)
        entry = _Entry(
            self._next_sequence,
            stored,
            segment.duration_s,
            segment.discontinuity or self._new_period,
            self._init_name,
            start,
        )
        self._next_sequence += 1
        self._new_period = False
        self._entries.append(entry)
        self._files[name] = stored
        # A segment only in memory means the disk is failing: shrink to the live edge.
        self._trim_window(live_only=stored.path is None)
        self._release_memory()
        self._invalidate()
        await self._collect_garbage()
        return stored.size if stored.path is not None else 0

    async def _store(self, name: str, data: bytes) -> StoredFile:
        """Write ``data`` atomically; on disk failure keep it in memory only (never lose it)."""
        path = self.directory / name
        try:
            await asyncio.to_thread(_write_atomically, path, data)
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                dropped = await self._drop_oldest(len(self._entries) - _MIN_DVR_SEGMENTS)
                log.warning("hls %s: disk full, dropped %d DVR segments", self.epoch, dropped)
                with contextlib.suppress(OSError):
                    await asyncio.to_thread(_write_atomically, path, data)
                    return StoredFile(name, len(data), path, data)
            log.error("hls %s: cannot write %s (%s); serving it from memory", self.epoch, name, exc)
            return StoredFile(name, len(data), None, data)
        return StoredFile(name, len(data), path, data)

    async def _make_room(self, needed: int) -> None:
        """Below the free-space floor, drop the oldest DVR segments until there is room."""
        floor = self.config.min_free_bytes
        if floor <= 0:
            return
        free = await asyncio.to_thread(_free_bytes, self.directory)
        if free is None or free - needed >= floor:
            return
        dropped = 0
        while free - needed < floor and len(self._entries) > _MIN_DVR_SEGMENTS:
            entry = self._entries.popleft()
            self._forget(entry)
            await asyncio.to_thread(_unlink, entry.file.path)
            free += entry.file.size
            dropped += 1
        if dropped:
            self._invalidate()
            log.warning(
                "hls %s: free disk below %d bytes, dropped %d oldest DVR segments",
                self.epoch,
                floor,
                dropped,
            )

    async def _drop_oldest(self, count: int) -> int:
        dropped = 0
        while dropped < count and self._entries:
            entry = self._entries.popleft()
            self._forget(entry)
            await asyncio.to_thread(_unlink, entry.file.path)
            dropped += 1
        self._invalidate()
        return dropped

    def _trim_window(self, live_only: bool) -> None:
        """Remove segments that left the DVR window (or beyond the live-only count)."""
        window = self.config.window_seconds
        if window <= 0 or live_only:
            while len(self._entries) > self.config.live_segments:
                self._retire(self._entries.popleft())
            return
        newest_end = self._entries[-1].end
        # Keep what started within the window: the playlist spans at most ``window`` seconds.
        while len(self._entries) > _MIN_DVR_SEGMENTS and self._entries[0].start < (
            newest_end - window
        ):
            self._retire(self._entries.popleft())

    def _retire(self, entry: _Entry) -> None:
        # Deleted a little later: a player that loaded the playlist just before may still ask.
        grace = 2 * self.config.target_duration + 1
        self._graveyard.append((time.monotonic() + grace, entry.file))
        if entry.discontinuity:
            self._removed_discontinuities += 1

    def _forget(self, entry: _Entry) -> None:
        self._files.pop(entry.file.name, None)
        if entry.discontinuity:
            self._removed_discontinuities += 1

    def _release_memory(self) -> None:
        keep = self.config.memory_segments
        for index, entry in enumerate(reversed(self._entries)):
            if index >= keep and entry.file.path is not None:
                entry.file.data = None

    async def _collect_garbage(self) -> None:
        now = time.monotonic()
        due: list[StoredFile] = []
        while self._graveyard and self._graveyard[0][0] <= now:
            due.append(self._graveyard.popleft()[1])
        for stored in due:
            self._files.pop(stored.name, None)
        if due:
            await asyncio.to_thread(_unlink_all, [s.path for s in due])

    def _invalidate(self) -> None:
        self._playlist_cache.clear()

    def _render(self, uri_suffix: str) -> str:
        entries = list(self._entries)
        return render_media_playlist(
            [
                PlaylistSegment(
                    uri=e.file.name,
                    duration_s=e.duration_s,
                    discontinuity=e.discontinuity,
                    init_uri=e.init_name,
                    program_date_time=datetime.fromtimestamp(e.start, UTC),
                )
                for e in entries
            ],
            target_duration=self.config.target_duration,
            media_sequence=entries[0].sequence if entries else self._next_sequence,
            discontinuity_sequence=self._removed_discontinuities,
            init_uri=self._init_name,
            uri_suffix=uri_suffix,
        )


class HlsOutput:
    """One packaging attempt: reader -> segmenter -> channel, until the stream ends."""

    def __init__(
        self,
        open_channel: Callable[[], HlsChannel],
        close_channel: Callable[[HlsChannel], None],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._open_channel = open_channel
        self._close_channel = close_channel
        self._clock = clock

    async def run(self, reader: Reader, link: OutputLink) -> None:
        """Package what ``reader`` yields; flush the partial segment when the stream ends."""
        link.connected()
        channel = self._open_channel()
        segmenter = Segmenter(channel.config.target_duration)
        anchor: tuple[float, int] | None = None  # (wall clock, dts ms) of the first media unit
        try:
            while True:
                try:
                    units = await reader.get_batch()
                except ReaderClosed:
                    break
                for unit in units:
                    try:
                        events = segmenter.push(unit)
                    except (FlvError, ValueError) as exc:
                        log.warning("hls %s: skipped malformed unit: %s", channel.epoch, exc)
                        continue
                    if anchor is None and not unit.sequence_header:
                        anchor = (self._clock(), unit.timestamp)
                    await self._store(channel, events, anchor, link)
            await self._store(channel, segmenter.flush(), anchor, link)
        finally:
            self._close_channel(channel)

    @staticmethod
    async def _store(
        channel: HlsChannel,
        events: list[SegmentEvent],
        anchor: tuple[float, int] | None,
        link: OutputLink,
    ) -> None:
        for event in events:
            start = 0.0
            if isinstance(event, Segment) and anchor is not None:
                start = anchor[0] + (event.start_dts_ms - anchor[1]) / 1000
            written = await channel.add(event, start)
            if written:
                link.sent(written)


def _write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    try:
        with tmp.open("wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except OSError:
        _unlink(tmp)
        raise


def _free_bytes(directory: Path) -> int | None:
    try:
        directory.mkdir(parents=True, exist_ok=True)
        return shutil.disk_usage(directory).free
    except OSError:
        return None


def _unlink(path: Path | None) -> None:
    if path is not None:
        with contextlib.suppress(OSError):
            path.unlink()


def _unlink_all(paths: list[Path | None]) -> None:
    for path in paths:
        _unlink(path)
