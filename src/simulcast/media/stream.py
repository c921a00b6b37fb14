"""One live session's media: decoder configuration, the GOP cache, and the readers fed from it.

The writer (ingest) calls :meth:`LiveStream.publish` for every unit and :meth:`LiveStream.flush`
after each batch; it never awaits and never blocks: each reader bounds and drops on its own.
Writers never know their readers.
"""

from __future__ import annotations

from simulcast.codecs.unit import Kind, MediaUnit
from simulcast.media.reader import Reader, is_metadata

# Audio-only streams have no GOP; a new reader gets this much recent audio so players start fast.
_AUDIO_CACHE_MS = 500
# Looked up per unit: an enum member read through its class costs ~0.25 us on Python 3.11.
_VIDEO = Kind.VIDEO


class LiveStream:
    """The media of one publish session.

    Holds the last ``onMetaData`` unit, the latest sequence header per track kind (passed
    through untouched, legacy or Enhanced RTMP), and the GOP cache: every unit since the last
    video keyframe. The cache is bounded by ``gop_max_bytes``/``gop_max_seconds``; a GOP larger
    than that is not cached at all (a cache must start at a keyframe to be useful), so new
    readers then start at the next keyframe instead.
    """

    def __init__(
        self,
        stream_id: int,
        session_id: str,
        *,
        gop_max_bytes: int,
        gop_max_seconds: float,
    ) -> None:
        self.stream_id = stream_id
        self.session_id = session_id
        self.metadata: MediaUnit | None = None
        self.sequence_headers: dict[Kind, MediaUnit] = {}
        self.bytes_in = 0
        """Wire bytes received from the publisher (counted by the ingest adapter)."""
        self._gop: list[MediaUnit] = []
        self._gop_bytes = 0
        self._gop_overflow = False
        self._gop_max_bytes = gop_max_bytes
        self._gop_max_span_ms = int(gop_max_seconds * 1000)
        self._has_video = False
        self._readers: list[Reader] = []
        self._closed = False

    @property
    def has_video(self) -> bool:
        """Whether a video unit was ever published (else the stream is treated as audio-only)."""
        return self._has_video

    @property
    def gop_bytes(self) -> int:
        """Payload bytes held by the GOP cache (bounded by ``gop_max_bytes``)."""
        return self._gop_bytes if self._gop else 0

    @property
    def readers(self) -> tuple[Reader, ...]:
        """The readers currently attached."""
        return tuple(self._readers)

    @property
    def gop(self) -> tuple[MediaUnit, ...]:
        """The cached units a new reader starts with (after metadata and sequence headers)."""
        return tuple(self._gop)

    def publish(self, unit: MediaUnit) -> None:
        """Record ``unit`` in the stream state and hand it to every reader."""
        if self._closed:
            return
        if not self._has_video and unit.kind == _VIDEO:
            # Video joined an audio-only stream: the audio cache no longer starts at a keyframe.
            self._has_video = True
            self._gop = []
            self._gop_bytes = 0
        if is_metadata(unit):
            self.metadata = unit
        elif unit.sequence_header:
            self.sequence_headers[unit.kind] = unit
        else:
            self._cache(unit)
        for reader in self._readers:
            reader.push(unit)

    def flush(self) -> None:
        """End of a batch of published units (one read of the publisher's socket, one slate
        frame): readers' sinks send what they took, one write per output per batch."""
        for reader in self._readers:
            reader.flush_sink()

    def add_reader(self, *, max_bytes: int, max_seconds: float) -> Reader:
        """Attach a new reader, primed so that its first media unit is a keyframe."""
        reader = Reader(self, max_bytes=max_bytes, max_seconds=max_seconds)
        if self._closed:
            reader.close()
            return reader
        self.prime(reader)
        self._readers.append(reader)
        return reader

    def remove_reader(self, reader: Reader) -> None:
        """Detach and close ``reader`` (no-op when it is not attached)."""
        reader.close()
        if reader in self._readers:
            self._readers.remove(reader)

    def prime(self, reader: Reader) -> None:
        """Push metadata, sequence headers (video first) and the GOP cache into ``reader``."""
        if self.metadata is not None:
            reader.push(self.metadata)
        for kind in (Kind.VIDEO, Kind.AUDIO):
            header = self.sequence_headers.get(kind)
            if header is not None:
                reader.push(header)
        for unit in self._gop:
            reader.push(unit)

    def close(self) -> None:
        """End the stream: readers deliver what they hold, then report closed."""
        self._closed = True
        for reader in self._readers:
            reader.close()
        self._readers.clear()
        self._gop.clear()

    def _cache(self, unit: MediaUnit) -> None:
        if unit.keyframe and unit.kind == _VIDEO:
            self._gop = [unit]
            self._gop_bytes = unit.size
            self._gop_overflow = False
            return
        if not self._has_video:
            self._cache_audio_only(unit)
            return
        if not self._gop or self._gop_overflow:
            return  # before the first keyframe, or this GOP outgrew the cache
        self._gop.append(unit)
        self._gop_bytes += unit.size
        span = unit.timestamp - self._gop[0].timestamp
        if self._gop_bytes > self._gop_max_bytes or span > self._gop_max_span_ms:
            self._gop = []
            self._gop_bytes = 0
            self._gop_overflow = True

    def _cache_audio_only(self, unit: MediaUnit) -> None:
        self._gop.append(unit)
        self._gop_bytes += unit.size
        while self._gop and (
            unit.timestamp - self._gop[0].timestamp > _AUDIO_CACHE_MS
            or self._gop_bytes > self._gop_max_bytes
        ):
            self._gop_bytes -= self._gop.pop(0).size
