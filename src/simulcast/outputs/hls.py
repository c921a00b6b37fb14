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

Low latency (``part_target`` set): the open segment's parts are separate resources held in memory
only (``{epoch}-{msn}.{part}.m4s``), listed while they are near the live edge and kept a little
longer; the segment that completes them is written to disk exactly as without parts. Blocking
playlist requests and preload-hint part requests wait on one future per awaited playlist
position, resolved when that position is reached: no polling, and a waiter costs a timer.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import errno
import logging
import os
import secrets
import shutil
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from simulcast.codecs.flv import FlvError
from simulcast.codecs.hls import (
    InitSegment,
    LowLatency,
    Part,
    PlaylistPart,
    PlaylistSegment,
    Readiness,
    ReloadRequest,
    Segment,
    Segmenter,
    SegmentEvent,
    awaited_position,
    reload_readiness,
    render_media_playlist,
)
from simulcast.engine import OutputStatus
from simulcast.media.output import Output, OutputLink
from simulcast.media.reader import Reader

log = logging.getLogger("simulcast.outputs.hls")

_MIN_DVR_SEGMENTS = 3  # a DVR playlist never shrinks below this (players need a few to start)
# Parts stay fetchable for this many newest segments: the three target durations in which they
# are listed, plus a margin for a player that loaded the playlist just before.
_PART_SEGMENTS = 5


@dataclass(frozen=True, slots=True)
class ChannelConfig:
    """How one channel packages and keeps segments."""

    target_duration: float
    window_seconds: int
    live_segments: int
    memory_segments: int
    min_free_bytes: int
    part_target: float | None = None
    """Low-latency HLS part target in seconds; None: regular HLS only."""


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
    parts: list[PlaylistPart] = field(default_factory=list)

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
        self._playlist_cache: dict[tuple[str, bool], str] = {}
        self._closed = False
        self._open_parts: list[PlaylistPart] = []  # of the segment being written
        self._open_start = 0.0
        self._open_discontinuity = False
        self._waiters: dict[tuple[int, int], asyncio.Future[None]] = {}

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

    @property
    def low_latency(self) -> bool:
        """Whether the playlist offers parts, blocking reload and delta updates."""
        return self.config.part_target is not None

    @property
    def target_duration(self) -> float:
        """The configured segment duration, seconds (blocking requests wait three of them)."""
        return self.config.target_duration

    def playlist(self, uri_suffix: str = "", skip: bool = False) -> str:
        """The media playlist with ``uri_suffix`` (e.g. ``?apiKey=...``) on every URI; ``skip``:
        a delta update (``_HLS_skip``), when low latency is on."""
        key = (uri_suffix, skip)
        cached = self._playlist_cache.get(key)
        if cached is None:
            if len(self._playlist_cache) > 64:  # one entry per distinct credential
                self._playlist_cache.clear()
            cached = self._playlist_cache[key] = self._render(uri_suffix, skip)
        return cached

    def readiness(self, request: ReloadRequest) -> Readiness:
        """Whether the playlist answers a blocking ``request`` now, after a wait, or never."""
        return reload_readiness(
            request,
            self._next_sequence,
            len(self._open_parts),
            self.config.part_target,
            self._previous_parts(),
        )

    async def wait_for(self, request: ReloadRequest, within: float) -> bool:
        """Wait until the playlist satisfies ``request`` (see :meth:`readiness`).

        False when ``within`` seconds passed first or the period ended.
        """
        need = awaited_position(request, self._next_sequence, self._previous_parts())
        if need is None or need <= self._position():
            return True
        future = self._waiters.get(need)
        if future is None:
            future = self._waiters[need] = asyncio.get_running_loop().create_future()
        try:
            async with asyncio.timeout(within):
                # Shielded: one waiter timing out must not cancel the future the others share.
                await asyncio.shield(future)
        except TimeoutError:
            return False
        return self.live and need <= self._position()

    async def read(self, name: str) -> bytes | None:
        """An init or media segment's or a part's bytes (listed, or recently removed but not yet
        deleted). The part the preload hint names is waited for (up to three target
        durations)."""
        stored = self._files.get(name)
        if stored is None and name == self._preload_hint() and self.live:
            msn, part = self._next_sequence, len(self._open_parts)
            if await self.wait_for(ReloadRequest(msn, part), 3 * self.target_duration):
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
        self._drop_open_parts()
        self._invalidate()
        self._wake(everyone=True)

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
        if isinstance(event, Part):
            self._add_part(event, start)
            return 0
        return await self._add_segment(event, start)

    async def close(self) -> None:
        """Delete every file of the channel."""
        self._closed = True
        self._wake(everyone=True)
        self._entries.clear()
        self._files.clear()
        self._graveyard.clear()
        self._invalidate()
        await asyncio.to_thread(shutil.rmtree, self.directory, True)

    # -- internals ----------------------------------------------------------------------------

    def _position(self) -> tuple[int, int]:
        """(open segment's sequence, its parts so far): grows with every part and segment."""
        return self._next_sequence, len(self._open_parts)

    def _previous_parts(self) -> int:
        """Parts of the last complete segment (a part index past them means the next one's)."""
        return len(self._entries[-1].parts) if self._entries else 0

    def _preload_hint(self) -> str | None:
        if self.config.part_target is None:
            return None
        return f"{self.epoch}-{self._next_sequence}.{len(self._open_parts)}.m4s"

    def _add_part(self, part: Part, start: float) -> None:
        if self.config.part_target is None:
            return
        if not self._open_parts:
            self._open_start = start
            self._open_discontinuity = part.discontinuity or self._new_period
        name = f"{self.epoch}-{self._next_sequence}.{len(self._open_parts)}.m4s"
        self._files[name] = StoredFile(name, len(part.data), None, part.data)
        self._open_parts.append(PlaylistPart(name, part.duration_s, part.independent))
        self._invalidate()
        # The moment a part becomes available, on the server's clock (bench/llhls.py reads it).
        log.debug(
            "hls %s: part %d.%d available",
            self.epoch,
            self._next_sequence,
            len(self._open_parts) - 1,
        )
        self._wake()

    def _drop_open_parts(self) -> None:
        for part in self._open_parts:
            self._files.pop(part.uri, None)
        self._open_parts = []

    def _wake(self, everyone: bool = False) -> None:
        """Resolve the waiters the playlist now satisfies (all of them: ``everyone``)."""
        position = self._position()
        for need in [n for n in self._waiters if everyone or n <= position]:
            future = self._waiters.pop(need)
            if not future.done():
                future.set_result(None)

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
            self._open_parts,
        )
        self._open_parts = []
        self._next_sequence += 1
        self._new_period = False
        self._entries.append(entry)
        self._files[name] = stored
        # A segment only in memory means the disk is failing: shrink to the live edge.
        self._trim_window(live_only=stored.path is None)
        self._release_memory()
        self._invalidate()
        self._wake()
        await self._collect_garbage()
        return stored.size if stored.path is not None else 0

    async def _store(self, name: str, data: bytes) -> StoredFile:
        """Write ``data`` atomically; on disk failure keep it in memory only (never lose it)."""
        path = self.directory / name
        try:
            await asyncio.to_thread(_write_atomically, path, data)
        except OSError as exc:
            if self._closed:
                # The session ended and its directory was removed under this write: expected.
                return StoredFile(name, len(data), None, data)
            if exc.errno == errno.ENOSPC:
                dropped = await self._drop_oldest(len(self._entries) - _MIN_DVR_SEGMENTS)
                log.warning("hls %s: disk full, dropped %d DVR segments", self.epoch, dropped)
                with contextlib.suppress(OSError):
                    await asyncio.to_thread(_write_atomically, path, data)
                    return StoredFile(name, len(data), path, data)
            log.error("hls %s: cannot write %s (%s); serving it from memory", self.epoch, name, exc)
            return StoredFile(name, len(data), None, data)
        if self._closed:  # written after close() removed the directory, recreating it: undo
            await asyncio.to_thread(shutil.rmtree, self.directory, True)
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
        self._forget_parts(entry)
        # Deleted a little later: a player that loaded the playlist just before may still ask.
        grace = 2 * self.config.target_duration + 1
        self._graveyard.append((time.monotonic() + grace, entry.file))
        if entry.discontinuity:
            self._removed_discontinuities += 1

    def _forget(self, entry: _Entry) -> None:
        self._forget_parts(entry)
        self._files.pop(entry.file.name, None)
        if entry.discontinuity:
            self._removed_discontinuities += 1

    def _release_memory(self) -> None:
        keep = self.config.memory_segments
        for index, entry in enumerate(reversed(self._entries)):
            if index >= keep and entry.file.path is not None:
                entry.file.data = None
            if index >= _PART_SEGMENTS and entry.parts:
                self._forget_parts(entry)

    def _forget_parts(self, entry: _Entry) -> None:
        for part in entry.parts:
            self._files.pop(part.uri, None)
        entry.parts = []

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

    def _render(self, uri_suffix: str, skip: bool) -> str:
        entries = list(self._entries)
        segments = [
            PlaylistSegment(
                uri=e.file.name,
                duration_s=e.duration_s,
                discontinuity=e.discontinuity,
                init_uri=e.init_name,
                program_date_time=datetime.fromtimestamp(e.start, UTC),
                parts=tuple(e.parts),
            )
            for e in entries
        ]
        low_latency = None
        if self.config.part_target is not None:
            low_latency = LowLatency(self.config.part_target, self._preload_hint())
            if self._open_parts:
                segments.append(
                    PlaylistSegment(
                        uri=None,
                        duration_s=sum(p.duration_s for p in self._open_parts),
                        discontinuity=self._open_discontinuity,
                        init_uri=self._init_name,
                        program_date_time=datetime.fromtimestamp(self._open_start, UTC),
                        parts=tuple(self._open_parts),
                    )
                )
        return render_media_playlist(
            segments,
            target_duration=self.config.target_duration,
            media_sequence=entries[0].sequence if entries else self._next_sequence,
            discontinuity_sequence=self._removed_discontinuities,
            init_uri=self._init_name,
            uri_suffix=uri_suffix,
            low_latency=low_latency,
            skip=skip,
        )


class HlsOutput(Output):
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
        self._channel: HlsChannel | None = None

    async def run(self, reader: Reader, link: OutputLink) -> None:
        """Package what ``reader`` yields; flush the partial segment when the stream ends."""
        link.connected()
        channel = self._channel = self._open_channel()
        segmenter = Segmenter(channel.config.target_duration, channel.config.part_target)
        anchor: tuple[float, int] | None = None  # (wall clock, dts ms) of the first media unit
        try:
            async for units in reader.batches():
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

    def report(self, status: OutputStatus) -> OutputStatus:
        """``status`` with the playlist's readiness and DVR window while the channel is live."""
        channel = self._channel
        if channel is None or not channel.live:
            return status
        return dataclasses.replace(
            status,
            ready=channel.ready,
            window_seconds=channel.window_seconds,
            available_from_ms=channel.available_from_ms,
        )

    @staticmethod
    async def _store(
        channel: HlsChannel,
        events: list[SegmentEvent],
        anchor: tuple[float, int] | None,
        link: OutputLink,
    ) -> None:
        for event in events:
            start = 0.0
            if isinstance(event, Segment | Part) and anchor is not None:
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
