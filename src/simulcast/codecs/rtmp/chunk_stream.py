"""The chunk stream both sides of an RTMP connection share (the second stage, after the
handshake): bytes in and out, chunk (de)multiplexing, protocol control messages,
acknowledgements and pings. The command flows are :mod:`~simulcast.codecs.rtmp.server` and
:mod:`~simulcast.codecs.rtmp.client`.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Iterator
from typing import Any, Final, TypedDict, Unpack

from simulcast.codecs.rtmp import messages as msg
from simulcast.codecs.rtmp.chunk import ChunkDecoder, RawMessage, encode_message
from simulcast.codecs.rtmp.errors import LocalProtocolError, RemoteProtocolError
from simulcast.codecs.rtmp.events import (
    Acknowledged,
    Event,
    MediaMessage,
    PeerBandwidth,
    PeerChunkSizeChanged,
    PeerWindowAckSize,
    UnhandledMessage,
    UserControl,
)
from simulcast.codecs.rtmp.handshake import RandomBytes

# Chunk stream ids as nginx-rtmp uses them.
CSID_CONTROL: Final = 2
CSID_COMMAND: Final = 3
CSID_STREAM: Final = 5  # stream-level commands, onStatus and data messages
CSID_AUDIO: Final = 6
CSID_VIDEO: Final = 7
MEDIA_CSID: Final = {msg.AUDIO: CSID_AUDIO, msg.VIDEO: CSID_VIDEO, msg.DATA_AMF0: CSID_STREAM}
_MEDIA_TYPES: Final = frozenset((msg.AUDIO, msg.VIDEO, msg.DATA_AMF0, msg.DATA_AMF3))


class ConnectionLimits(TypedDict, total=False):
    """Optional bounds (and the randomness source) shared by both sides of a connection."""

    max_message_size: int
    """Largest message accepted from the peer (default 16 MiB)."""
    max_chunk_streams: int
    """Distinct chunk stream ids the peer may use (default 64)."""
    max_incomplete_size: int
    """Bytes of partially received messages held at once (default 32 MiB)."""
    random_bytes: RandomBytes
    """Source of the handshake's random bytes (default ``os.urandom``)."""
    max_message_size_before_publish: int
    """Server side: largest message until a publish is accepted (default 16 KiB). ffmpeg's
    ``connect`` is 139 bytes and its other commands before media about 40 each."""
    max_chunk_size_before_publish: int
    """Server side: largest Set Chunk Size until a publish is accepted (default 64 KiB; ffmpeg
    sends 4096)."""


def text(value: Any) -> str:
    """``value`` if it is a string, else empty (AMF values from the peer may be anything)."""
    return value if isinstance(value, str) else ""


def info(value: Any) -> tuple[str, str, str]:
    """``(code, level, description)`` of an info object, tolerating anything."""
    if not isinstance(value, dict):
        return "", "", ""
    return text(value.get("code")), text(value.get("level")), text(value.get("description"))


class ChunkStream:
    """What both sides share once the handshake is done: buffering, the chunk stream, control
    messages, acknowledgements and pings. Subclasses run a handshake (:meth:`_handshake_step`)
    and the command flow (:meth:`_on_command`, :meth:`_on_media`)."""

    def __init__(self, *, chunk_size: int = 4096, **limits: Unpack[ConnectionLimits]) -> None:
        max_message_size = limits.get("max_message_size", 16 * 1024 * 1024)
        max_chunk_streams = limits.get("max_chunk_streams", 64)
        max_incomplete_size = limits.get("max_incomplete_size", 32 * 1024 * 1024)
        random_bytes = limits.get("random_bytes", os.urandom)
        if not 1 <= chunk_size <= 0xFFFFFF:
            raise LocalProtocolError(f"chunk size {chunk_size} outside 1..16777215")
        self._wanted_chunk_size = chunk_size
        self._decoder = ChunkDecoder(
            max_message_size=max_message_size,
            max_chunk_streams=max_chunk_streams,
            max_incomplete_size=max_incomplete_size,
        )
        self._random = random_bytes
        self._handshake = bytearray()  # handshake bytes not consumed yet
        self._handshaking = True
        self._out = bytearray()
        self._events: deque[Event] = deque()
        self._error: RemoteProtocolError | None = None
        self._received = 0
        self._acked = 0
        self._peer_window = 0  # 0: the peer never asked for acknowledgements
        self._sent_window = 0
        self.chunk_size = 128
        """Our outgoing chunk size (what the peer uses to read us)."""

    # -- the h11-style surface ---------------------------------------------------------------

    def receive_data(self, data: bytes) -> Iterator[Event]:
        """Buffer bytes received from the peer; return a lazy iterator over the events.

        Iterating is the same as calling :meth:`next_event` until it returns ``None``; the
        buffering happens even if the iterator is never used.
        """
        if self._error is not None:
            raise self._error
        self._received += len(data)
        if self._handshaking:
            self._handshake += data
        else:
            self._decoder.feed(data)
        return self._events_iter()

    def _events_iter(self) -> Iterator[Event]:
        while (event := self.next_event()) is not None:
            yield event

    def next_event(self) -> Event | None:
        """Parse and return the next event, or ``None`` when more data is needed."""
        if self._error is not None:
            raise self._error
        try:
            return self._next_event()
        except RemoteProtocolError as exc:
            self._error = exc
            raise

    def data_to_send(self) -> bytes:
        """Drain the bytes queued for the peer."""
        out = bytes(self._out)
        self._out.clear()
        return out

    def set_chunk_size(self, size: int) -> None:
        """Send Set Chunk Size and use ``size`` for everything sent after it."""
        if not 1 <= size <= 0xFFFFFF:
            raise LocalProtocolError(f"chunk size {size} outside 1..16777215")
        self._send_control(msg.SET_CHUNK_SIZE, msg.u32(size))
        self.chunk_size = size

    @property
    def buffered_bytes(self) -> int:
        """Bytes held for the peer's sake: unparsed input plus partially received messages."""
        return len(self._handshake) + self._decoder.buffered + self._decoder.incomplete

    # -- internals ---------------------------------------------------------------------------

    def _next_event(self) -> Event | None:
        if self._events:
            return self._events.popleft()
        if self._handshaking:
            event = self._handshake_step()
            if event is None or not self._handshaking:
                if not self._handshaking:
                    self._decoder.feed(self._handshake)
                    self._handshake.clear()
                return event
        while True:
            raw = self._decoder.next_message()
            if self._peer_window and self._received - self._acked >= self._peer_window:
                self._acked = self._received
                self._send_control(msg.ACKNOWLEDGEMENT, msg.u32(self._received))
            if raw is None:
                return None
            event = self._dispatch(raw)
            if event is not None:
                return event

    def _handshake_step(self) -> Event | None:
        raise NotImplementedError

    def _on_command(self, cmd: msg.Command, raw: RawMessage) -> Event | None:
        raise NotImplementedError

    def _on_media(self, raw: RawMessage) -> Event | None:
        raise NotImplementedError

    def _dispatch(self, raw: RawMessage) -> Event | None:
        t = raw.type_id
        if t in _MEDIA_TYPES:
            return self._on_media(raw)
        if t in (msg.COMMAND_AMF0, msg.COMMAND_AMF3):
            return self._on_command(msg.parse_command(t, raw.payload), raw)
        if t == msg.SET_CHUNK_SIZE:
            return PeerChunkSizeChanged(self._decoder.chunk_size)
        if t == msg.ABORT:
            return None  # the decoder already dropped the partial message
        if t == msg.ACKNOWLEDGEMENT:
            return Acknowledged(msg.parse_u32(raw.payload))
        if t == msg.WINDOW_ACK_SIZE:
            self._peer_window = msg.parse_u32(raw.payload)
            return PeerWindowAckSize(self._peer_window)
        if t == msg.SET_PEER_BANDWIDTH:
            size, limit = msg.parse_set_peer_bandwidth(raw.payload)
            if size != self._sent_window:  # the spec asks for a Window Ack Size answer
                self._send_window_ack_size(size)
            return PeerBandwidth(size, limit)
        if t == msg.USER_CONTROL:
            uc = msg.parse_user_control(raw.payload)
            if uc.event_type == msg.PING_REQUEST:
                self._send_control(msg.USER_CONTROL, msg.user_control(msg.PING_RESPONSE, uc.value))
            return UserControl(uc.event_type, uc.value, uc.extra)
        return UnhandledMessage(t, raw.msid, raw.timestamp, raw.payload)

    def _send(self, csid: int, type_id: int, msid: int, payload: bytes, timestamp: int = 0) -> None:
        self._out += encode_message(csid, type_id, msid, timestamp, payload, self.chunk_size)

    def _send_control(self, type_id: int, payload: bytes) -> None:
        self._send(CSID_CONTROL, type_id, 0, payload)

    def _send_window_ack_size(self, size: int) -> None:
        self._sent_window = size
        self._send_control(msg.WINDOW_ACK_SIZE, msg.u32(size))

    def _send_command(
        self, name: str, tid: float, obj: Any, *args: Any, msid: int = 0, csid: int = CSID_COMMAND
    ) -> None:
        self._send(csid, msg.COMMAND_AMF0, msid, msg.Command(name, tid, obj, args).encode())

    def _media_event(self, raw: RawMessage) -> MediaMessage:
        if raw.type_id == msg.DATA_AMF3:
            converted = msg.amf3_data_to_amf0(raw.payload)
            if converted is not None:
                return MediaMessage(msg.DATA_AMF0, raw.msid, raw.timestamp, converted)
        return MediaMessage(raw.type_id, raw.msid, raw.timestamp, raw.payload)
