"""One session's timeline across publishers and the slate (pure: no I/O, no clock).

A session outlives its publishers when protection is on: the first publisher's timestamps are
the session's, and every later source is rebased onto that timeline so outputs see one stream
whose timestamps never go back. Sources are :class:`Feed` objects (one per publisher
connection, what the ingest publishes into) and the slate (:meth:`Switcher.publish_slate`).

A new publisher (a return within the grace period, or a stream shift) starts as *pending*: its
sequence headers and metadata are kept, its media dropped, until its first video keyframe
(audio-only: its first frame). Then it goes on air at once: its timestamps are rebased to
continue the session's, its sequence headers are sent when they differ from what outputs last
got, and the previous source (slate or old publisher) stops.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from simulcast.codecs.unit import Kind, MediaUnit
from simulcast.media.reader import is_metadata
from simulcast.media.slate import ParamsProbe, SlateParams
from simulcast.media.stream import LiveStream

# The gap left between the last unit of one source and the first of the next (about a frame).
SWITCH_STEP_MS = 33
# Looked up per unit: an enum member read through its class costs ~0.25 us on Python 3.11.
_DATA = Kind.DATA


class Feed:
    """One publisher connection's input into a session."""

    def __init__(self, switcher: Switcher, kick: Callable[[], None]) -> None:
        self._switcher = switcher
        self.kick = kick
        """Disconnects this publisher (used when another one shifts in)."""
        self.offset = 0
        self.headers: dict[Kind, MediaUnit] = {}
        self.metadata: MediaUnit | None = None
        self.probe = ParamsProbe()

    @property
    def stream(self) -> LiveStream:
        """The session's live stream."""
        return self._switcher.stream

    def publish(self, unit: MediaUnit) -> None:
        """A unit from this publisher (its own timestamps)."""
        self._switcher.push(self, unit)

    def flush(self) -> None:
        """The end of a batch of units from this publisher (see :meth:`LiveStream.flush`)."""
        self._switcher.stream.flush()

    def received(self, nbytes: int) -> None:
        """Count wire bytes received from this publisher."""
        self._switcher.stream.bytes_in += nbytes


@dataclass(frozen=True, slots=True)
class Takeover:
    """A feed went on air; ``previous`` is the publisher it replaced (``None``: the slate)."""

    feed: Feed
    previous: Feed | None


class Switcher:
    """Decides which source is on air and keeps the session timeline monotonic."""

    def __init__(
        self,
        stream: LiveStream,
        *,
        on_params: Callable[[SlateParams], None],
        on_takeover: Callable[[Takeover], None],
    ) -> None:
        self.stream = stream
        self._on_params = on_params
        self._on_takeover = on_takeover
        self.active: Feed | None = None
        """The publisher on air (``None`` while the slate plays or nothing does)."""
        self.pending: Feed | None = None
        self._last: dict[Kind, int] = {}
        self._started = False

    def attach(self, kick: Callable[[], None]) -> Feed:
        """A new publisher: on air at once if it is the session's first, else pending."""
        feed = Feed(self, kick)
        if not self._started:
            self._started = True
            self.active = feed
            return feed
        if self.pending is not None:
            self.pending.kick()  # a newer device wins the race to take over
        self.pending = feed
        return feed

    def detach(self, feed: Feed) -> bool:
        """``feed``'s publisher is gone; ``True`` if it was on air (the session lost it)."""
        if feed is self.pending:
            self.pending = None
        if feed is not self.active:
            return False
        self.active = None
        return True

    def next_timestamp(self) -> int:
        """Where the next source starts on the session timeline."""
        return max(self._last.values(), default=-SWITCH_STEP_MS) + SWITCH_STEP_MS

    def push(self, feed: Feed, unit: MediaUnit) -> None:
        """Route one unit of ``feed``: on air, held while pending, or ignored."""
        if feed is self.active:
            params = feed.probe.feed(unit)
            if params is not None:
                self._on_params(params)
            self._emit(unit, feed.offset)
        elif feed is self.pending:
            if is_metadata(unit):
                feed.metadata = unit
            elif unit.sequence_header:
                feed.headers[unit.kind] = unit
            elif self._starts_gop(unit):
                self._take_over(feed, unit)

    def publish_slate(self, unit: MediaUnit) -> None:
        """A slate unit, already timed on the session timeline (dropped while a feed is on air).

        Sequence headers are sent only when they differ from the stream's current ones.
        """
        if self.active is not None:
            return
        if unit.sequence_header:
            self._header(unit, 0)
        else:
            self._emit(unit, 0)

    def _starts_gop(self, unit: MediaUnit) -> bool:
        if unit.kind == Kind.VIDEO:
            return unit.keyframe
        return unit.kind == Kind.AUDIO and not self.stream.has_video

    def _take_over(self, feed: Feed, first: MediaUnit) -> None:
        previous = self.active
        self.active, self.pending = feed, None
        feed.offset = self.next_timestamp() - first.timestamp
        if feed.metadata is not None and (
            self.stream.metadata is None or self.stream.metadata.payload != feed.metadata.payload
        ):
            self._emit(feed.metadata, feed.offset, check=False)
        for kind in (Kind.VIDEO, Kind.AUDIO):
            header = feed.headers.get(kind)
            if header is not None:
                feed.probe.feed(header)
                self._header(header, feed.offset)
        # Told before its first unit flows, so whoever hears of the takeover (an instance input
        # saying it resumed) does so before what the media triggers downstream (a failover).
        self._on_takeover(Takeover(feed, previous))
        self.push(feed, first)

    def _header(self, unit: MediaUnit, offset: int) -> None:
        current = self.stream.sequence_headers.get(unit.kind)
        if current is None or current.payload != unit.payload:
            self._emit(unit, offset, check=False)

    def _emit(self, unit: MediaUnit, offset: int, *, check: bool = True) -> None:
        """Publish ``unit`` shifted by ``offset``; media that would go back in time is dropped."""
        timestamp = unit.timestamp + offset
        if unit.kind == _DATA or unit.sequence_header or not check:
            timestamp = max(timestamp, self._last.get(unit.kind, timestamp))
        elif timestamp < self._last.get(unit.kind, timestamp):
            return
        else:
            self._last[unit.kind] = timestamp
        if timestamp != unit.timestamp:
            unit = MediaUnit(
                unit.kind, timestamp, unit.payload, unit.keyframe, unit.sequence_header
            )
        self.stream.publish(unit)
