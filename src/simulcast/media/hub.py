"""The registry of live streams on this node, by stream id (and by the key they publish on).

One owner (the engine) opens and closes streams here; everything else only looks them up. A
stream id or stream key that is already live cannot be opened again: a second publisher on a
live key joins the existing stream through the engine (protection resume, stream shift).
"""

from __future__ import annotations

from simulcast.media.stream import LiveStream


class StreamBusy(Exception):
    """The stream (or the key) already has a live publisher."""


class Hub:
    """Live streams by stream id; also remembers which stream key each is published on."""

    def __init__(self, *, gop_max_bytes: int, gop_max_seconds: float) -> None:
        self._gop_max_bytes = gop_max_bytes
        self._gop_max_seconds = gop_max_seconds
        self._streams: dict[int, LiveStream] = {}
        self._keys: dict[int, str] = {}

    def buffered(self) -> tuple[int, int, int]:
        """What the live streams hold in memory: GOP cache bytes, and the bytes and units
        queued in their readers (one per output), summed over every stream."""
        gop = queued = units = 0
        for stream in self._streams.values():
            gop += stream.gop_bytes
            for reader in stream.readers:
                queued += reader.queued_bytes
                units += len(reader)
        return gop, queued, units

    def get(self, stream_id: int) -> LiveStream | None:
        """The live stream with ``stream_id``, or ``None``."""
        return self._streams.get(stream_id)

    def stream_for_key(self, stream_key: str) -> LiveStream | None:
        """The live stream published on ``stream_key``, or ``None``."""
        for stream_id, key in self._keys.items():
            if key == stream_key:
                return self._streams[stream_id]
        return None

    def key_of(self, stream_id: int) -> str | None:
        """The stream key the live stream ``stream_id`` is published on, or ``None``."""
        return self._keys.get(stream_id)

    def is_key_live(self, stream_key: str) -> bool:
        """Whether some live stream is being published on ``stream_key``."""
        return stream_key in self._keys.values()

    def open(self, stream_id: int, session_id: str, stream_key: str) -> LiveStream:
        """Create and register the live stream of a new session; raise :class:`StreamBusy`."""
        if stream_id in self._streams or self.is_key_live(stream_key):
            raise StreamBusy(f"stream {stream_id} is already live")
        stream = LiveStream(
            stream_id,
            session_id,
            gop_max_bytes=self._gop_max_bytes,
            gop_max_seconds=self._gop_max_seconds,
        )
        self._streams[stream_id] = stream
        self._keys[stream_id] = stream_key
        return stream

    def rekey(self, stream_id: int, stream_key: str) -> bool:
        """A live stream is now published on ``stream_key`` (the old key joins it no more)."""
        if stream_id not in self._streams:
            return False
        self._keys[stream_id] = stream_key
        return True

    def close(self, stream_id: int) -> LiveStream | None:
        """Unregister and close the live stream of ``stream_id``; return it (``None`` if none)."""
        stream = self._streams.pop(stream_id, None)
        self._keys.pop(stream_id, None)
        if stream is not None:
            stream.close()
        return stream
