"""One output's bounded view of a live stream.

The stream pushes units synchronously (``push`` never blocks, never awaits); the output consumes
them asynchronously (``await get()`` / ``await get_batch()``). The queue is bounded both in bytes
and in seconds of media. When a bound would be exceeded the reader does not drop single frames
(which would leave the decoder with references to frames it never saw): it drops every queued
media unit, keeps codec configuration (sequence headers, metadata) in order, and skips incoming
units until the next video keyframe, so what the output sends next decodes cleanly. An audio-only
stream has no keyframes; there the oldest units are dropped until the new one fits.

A consumer that keeps up may also attach a *sink* (:meth:`Reader.set_sink`): while nothing is
queued, ``push`` offers each unit to the sink synchronously and the consumer's task is not woken
at all; the stream tells sinks when a batch of units ends (:meth:`Reader.flush_sink`), so they
write once per batch. Waking one task per unit per output was most of the relay's CPU
(bench/relay.py); the queue is what a consumer falls back to the moment its sink refuses (its
socket is backed up).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from typing import Protocol

from simulcast.codecs.unit import Kind, MediaUnit

# AMF0 string "onMetaData" (marker 0x02, u16 length, bytes): how a metadata body begins.
_ON_METADATA = b"\x02\x00\x0aonMetaData"
# Looked up per unit: an enum member read through its class costs ~0.25 us on Python 3.11.
_DATA = Kind.DATA


def is_metadata(unit: MediaUnit) -> bool:
    """Whether ``unit`` is the stream's ``onMetaData`` data message."""
    return unit.kind == _DATA and unit.payload.startswith(_ON_METADATA)


def is_config(unit: MediaUnit) -> bool:
    """Whether ``unit`` configures decoders (sequence header or metadata): never dropped."""
    return unit.sequence_header or is_metadata(unit)


class Sink(Protocol):
    """A consumer's synchronous intake (see :meth:`Reader.set_sink`)."""

    def offer(self, unit: MediaUnit) -> bool:
        """Take ``unit`` and return True, or return False to have it queued instead."""
        ...

    def flush(self) -> None:
        """A batch of units ended: send what was taken."""
        ...


class ReaderClosed(Exception):
    """The reader was closed (stream ended or output removed) and everything queued was read."""


class ReaderSource(Protocol):
    """What a reader needs from its stream (narrow, so tests can fake it)."""

    @property
    def has_video(self) -> bool:
        """Whether the stream carries video (decides how the reader drops)."""
        ...

    def prime(self, reader: Reader) -> None:
        """Push the stream's metadata, sequence headers and GOP cache into ``reader``."""
        ...


class Reader:
    """A bounded FIFO of media units for one consumer, dropping to the next keyframe when full."""

    def __init__(self, source: ReaderSource, *, max_bytes: int, max_seconds: float) -> None:
        self._source = source
        self._max_bytes = max_bytes
        self._max_span_ms = int(max_seconds * 1000)
        self._queue: deque[MediaUnit] = deque()
        self._bytes = 0
        self._skipping = False
        self._closed = False
        self._ready = asyncio.Event()
        self._sink: Sink | None = None
        self.dropped_frames = 0
        """Media units dropped because this reader was full (cumulative)."""

    @property
    def queued_bytes(self) -> int:
        """Payload bytes currently queued."""
        return self._bytes

    def __len__(self) -> int:
        return len(self._queue)

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    def set_sink(self, sink: Sink | None) -> None:
        """Offer units to ``sink`` while the queue is empty (``None`` detaches it).

        Order is kept: once a unit is queued, later units queue behind it until the consumer
        has taken them all with :meth:`get`/:meth:`get_batch`.
        """
        self._sink = sink

    def flush_sink(self) -> None:
        """End of a batch of pushed units: let the sink send what it took."""
        if self._sink is not None:
            self._sink.flush()

    def push(self, unit: MediaUnit) -> None:
        """Queue ``unit``, dropping per the rules above when full. Never blocks."""
        if self._closed:
            return
        sink = self._sink
        if sink is not None and not self._queue and not self._skipping and sink.offer(unit):
            return
        if is_config(unit):
            self._append(unit)
            return
        if self._skipping:
            if not (unit.keyframe and unit.kind == Kind.VIDEO):
                self.dropped_frames += 1
                return
            self._skipping = False
        if self._fits(unit):
            self._append(unit)
        elif self._source.has_video:
            self._drop_media()
            if unit.keyframe and unit.kind == Kind.VIDEO:
                self._append(unit)
            else:
                self.dropped_frames += 1
                self._skipping = True
        else:
            self._drop_oldest_until_fits(unit)
            self._append(unit)

    def resync(self) -> None:
        """Discard what is queued and start again from the stream's config and GOP cache.

        An output calls this once its connection is ready, so time spent connecting does not
        count against the queue's bounds. Nothing had been sent yet, so drops counted while
        connecting are forgotten: the viewer of this connection never misses those frames.
        """
        self._queue.clear()
        self._bytes = 0
        self._skipping = False
        self.dropped_frames = 0
        self._ready.clear()
        self._source.prime(self)

    def close(self) -> None:
        """Stop accepting units; consumers get what is queued, then :class:`ReaderClosed`."""
        self._closed = True
        self._sink = None
        self._ready.set()

    async def get(self) -> MediaUnit:
        """Return the next unit, waiting for one; raise :class:`ReaderClosed` at the end."""
        while not self._queue:
            if self._closed:
                raise ReaderClosed
            self._ready.clear()
            await self._ready.wait()
        return self._take()

    async def get_batch(self, max_units: int = 64) -> list[MediaUnit]:
        """Return 1 to ``max_units`` queued units, waiting for the first one."""
        batch = [await self.get()]
        while self._queue and len(batch) < max_units:
            batch.append(self._take())
        return batch

    async def batches(self) -> AsyncIterator[list[MediaUnit]]:
        """Every batch of :meth:`get_batch` until the reader is closed and drained (the loop of
        an output that consumes to the end)."""
        while True:
            try:
                batch = await self.get_batch()
            except ReaderClosed:
                return
            yield batch

    def _take(self) -> MediaUnit:
        unit = self._queue.popleft()
        self._bytes -= unit.size
        return unit

    def _append(self, unit: MediaUnit) -> None:
        self._queue.append(unit)
        self._bytes += unit.size
        self._ready.set()

    def _fits(self, unit: MediaUnit) -> bool:
        if self._bytes + unit.size > self._max_bytes:
            return False
        first = self._first_media_timestamp()
        return first is None or unit.timestamp - first <= self._max_span_ms

    def _first_media_timestamp(self) -> int | None:
        # Config units sit at the front in practice, so this scan is a step or two.
        for queued in self._queue:
            if not is_config(queued):
                return queued.timestamp
        return None

    def _drop_media(self) -> None:
        kept = [u for u in self._queue if is_config(u)]
        self.dropped_frames += len(self._queue) - len(kept)
        self._queue = deque(kept)
        self._bytes = sum(u.size for u in kept)

    def _drop_oldest_until_fits(self, unit: MediaUnit) -> None:
        # Audio only: any frame decodes on its own, so dropping the oldest is enough. Config
        # units met on the way are kept (moved to the front, their relative order intact).
        kept: list[MediaUnit] = []
        while self._queue and not self._fits(unit):
            oldest = self._queue.popleft()
            if is_config(oldest):
                kept.append(oldest)  # still counted in _bytes: it stays queued
            else:
                self._bytes -= oldest.size
                self.dropped_frames += 1
        self._queue.extendleft(reversed(kept))
