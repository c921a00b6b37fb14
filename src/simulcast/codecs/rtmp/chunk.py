"""RTMP chunk stream: split messages into chunks and reassemble them.

:func:`encode_message` is the fan-out hot path: one header, continuation chunks built by
slicing a ``memoryview`` and a single ``bytes`` join. :class:`ChunkDecoder` is incremental: feed it
bytes, pull :class:`RawMessage` values. It applies Set Chunk Size and Abort itself, because they
change how the very next chunk is framed, and unwraps the 32-bit wire timestamps onto a 64-bit
millisecond timeline.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final

from simulcast.codecs.rtmp import messages as msg
from simulcast.codecs.rtmp.errors import LocalProtocolError, RemoteProtocolError

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "MAX_CHUNK_SIZE",
    "MAX_CSID",
    "ChunkDecoder",
    "RawMessage",
    "encode_message",
]

DEFAULT_CHUNK_SIZE: Final = 128
MAX_CHUNK_SIZE: Final = 0xFFFFFF  # a message cannot be longer, so larger chunks mean nothing
MAX_CSID: Final = 65599
_EXTENDED: Final = 0xFFFFFF
_U32 = struct.Struct(">I")
_HEADER_SIZES: Final = (11, 7, 3, 0)


@dataclass(frozen=True, slots=True)
class RawMessage:
    """One reassembled message; ``timestamp`` is unwrapped (milliseconds, 64-bit)."""

    csid: int
    type_id: int
    msid: int
    timestamp: int
    payload: bytes


def _basic_header(fmt: int, csid: int) -> bytes:
    if 2 <= csid <= 63:
        return bytes(((fmt << 6) | csid,))
    if 64 <= csid <= 319:
        return bytes((fmt << 6, csid - 64))
    if 320 <= csid <= MAX_CSID:
        return bytes(((fmt << 6) | 1, (csid - 64) & 0xFF, (csid - 64) >> 8))
    raise LocalProtocolError(f"chunk stream id {csid} outside 2..{MAX_CSID}")


def encode_message(
    csid: int, msg_type: int, msid: int, timestamp: int, payload: bytes, chunk_size: int
) -> bytes:
    """Serialize one message: a fmt 0 chunk, then fmt 3 continuations of ``chunk_size`` bytes.

    ``timestamp`` is taken modulo 2**32 (the receiver unwraps it). From 0xFFFFFF up it travels
    as an extended timestamp, repeated on every continuation chunk as ffmpeg and OBS do.
    """
    n = len(payload)
    if n > 0xFFFFFF:
        raise LocalProtocolError(f"message of {n} bytes exceeds 16777215")
    if not 1 <= chunk_size <= MAX_CHUNK_SIZE:
        raise LocalProtocolError(f"chunk size {chunk_size} outside 1..{MAX_CHUNK_SIZE}")
    if not 0 <= msg_type <= 0xFF or not 0 <= msid <= 0xFFFFFFFF:
        raise LocalProtocolError("message type or stream id out of range")
    ts = timestamp & 0xFFFFFFFF
    ext = _U32.pack(ts) if ts >= _EXTENDED else b""
    header = b"".join(
        (
            _basic_header(0, csid),
            min(ts, _EXTENDED).to_bytes(3, "big"),
            n.to_bytes(3, "big"),
            bytes((msg_type,)),
            msid.to_bytes(4, "little"),
            ext,
        )
    )
    if n <= chunk_size:
        return header + payload
    cont = _basic_header(3, csid) + ext
    view = memoryview(payload)
    parts: list[bytes | memoryview] = [header, view[:chunk_size]]
    for off in range(chunk_size, n, chunk_size):
        parts += (cont, view[off : off + chunk_size])
    return b"".join(parts)


class _Stream:
    """Per chunk stream state: the last header's fields and the message being assembled."""

    __slots__ = (
        "csid",
        "delta",
        "ext",
        "ext_value",
        "length",
        "msid",
        "partial",
        "seen",
        "ts32",
        "ts64",
        "type_id",
    )

    def __init__(self, csid: int) -> None:
        self.csid = csid
        self.seen = False  # a message header has set the clock
        self.delta = 0
        self.ext = False  # the last header carried an extended timestamp
        self.ext_value = 0
        self.length = 0
        self.type_id = 0
        self.msid = 0
        self.ts32 = 0
        self.ts64 = 0
        self.partial: bytearray | None = None


class ChunkDecoder:
    """Incremental chunk stream reassembler.

    ``feed`` only buffers; ``next_message`` parses as far as the buffer allows and returns the
    next complete message or ``None``. Limits (all raise :class:`RemoteProtocolError`):
    ``max_message_size`` per message, ``max_chunk_streams`` distinct chunk stream ids, and
    ``max_incomplete_size`` bytes of partially received messages across all chunk streams, and
    ``max_chunk_size`` for the peer's Set Chunk Size. The limits are attributes: a server tightens
    them until it knows who is talking (see ``ServerConnection``).
    """

    def __init__(
        self,
        *,
        max_message_size: int = 16 * 1024 * 1024,
        max_chunk_streams: int = 64,
        max_incomplete_size: int = 32 * 1024 * 1024,
        max_chunk_size: int = 0x7FFFFFFF,
    ) -> None:
        self.chunk_size = DEFAULT_CHUNK_SIZE
        self.max_message_size = max_message_size
        self.max_chunk_size = max_chunk_size
        self.max_chunk_streams = max_chunk_streams
        self.max_incomplete_size = max_incomplete_size
        self._buf = bytearray()
        self._pos = 0
        self._streams: dict[int, _Stream] = {}
        self._incomplete = 0
        self._body: _Stream | None = None  # stream whose chunk body is being read
        self._body_left = 0
        self._last_ts64: int | None = None

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        """Buffer received bytes."""
        if self._pos > 65536 and self._pos * 2 > len(self._buf):
            del self._buf[: self._pos]
            self._pos = 0
        self._buf += data

    @property
    def buffered(self) -> int:
        """Bytes received but not parsed yet."""
        return len(self._buf) - self._pos

    @property
    def incomplete(self) -> int:
        """Bytes held in partially received messages."""
        return self._incomplete

    def next_message(self) -> RawMessage | None:
        """Return the next complete message, or ``None`` if more bytes are needed."""
        while True:
            if self._body is None:
                st = self._read_header()
                if st is None:
                    return None
                if st.length == 0:
                    return self._complete(st, b"")
            st = self._body
            assert st is not None  # set by _read_header
            avail = len(self._buf) - self._pos
            take = min(self._body_left, avail)
            if take == 0:
                return None
            start, end = self._pos, self._pos + take
            self._pos = end
            self._body_left -= take
            if st.partial is None and take == st.length:
                return self._complete(st, bytes(self._buf[start:end]))
            if st.partial is None:
                st.partial = bytearray()
            st.partial += self._buf[start:end]
            self._incomplete += take
            if self._incomplete > self.max_incomplete_size:
                raise RemoteProtocolError("too much partially received data")
            if self._body_left == 0:
                done = len(st.partial)
                if done == st.length:
                    self._body = None
                    payload = bytes(st.partial)
                    self._incomplete -= len(payload)
                    st.partial = None
                    return self._complete(st, payload)
                # The usual next chunk continues this message: a one-byte fmt 3 header on the
                # same chunk stream, no extended timestamp. It changes nothing but the position,
                # so it skips the general header parser (a video frame is several chunks).
                pos = self._pos
                if (
                    st.csid < 64
                    and not st.ext
                    and pos < len(self._buf)
                    and self._buf[pos] == 0xC0 | st.csid
                ):
                    self._pos = pos + 1
                    self._body_left = min(self.chunk_size, st.length - done)
                    continue
                self._body = None

    def _read_header(self) -> _Stream | None:
        buf, pos = self._buf, self._pos
        avail = len(buf) - pos
        if avail < 1:
            return None
        fmt, csid = buf[pos] >> 6, buf[pos] & 0x3F
        hlen = 1
        if csid == 0:
            if avail < 2:
                return None
            csid, hlen = 64 + buf[pos + 1], 2
        elif csid == 1:
            if avail < 3:
                return None
            csid, hlen = 64 + buf[pos + 1] + (buf[pos + 2] << 8), 3
        end = pos + hlen + _HEADER_SIZES[fmt]
        if len(buf) < end:
            return None
        st = self._streams.get(csid)
        if st is None:
            if fmt != 0:
                raise RemoteProtocolError(f"chunk stream {csid} starts with a fmt {fmt} header")
            if len(self._streams) >= self.max_chunk_streams:
                raise RemoteProtocolError(f"more than {self.max_chunk_streams} chunk streams")
            st = _Stream(csid)
        continuing = st.partial is not None
        if continuing and fmt != 3:
            raise RemoteProtocolError(f"fmt {fmt} header inside a message on chunk stream {csid}")
        p = pos + hlen
        # fmt 3 has no timestamp field; it carries an extended one if the last header did.
        ts_field = int.from_bytes(buf[p : p + 3], "big") if fmt != 3 else _EXTENDED * st.ext
        extended = ts_field == _EXTENDED
        if extended:
            if len(buf) < end + 4:
                return None
            ext_value = _U32.unpack_from(buf, end)[0]
            # Continuations repeat the extended timestamp (ffmpeg, OBS) or omit it (some
            # encoders): when it does not match the header's value, it is payload.
            if not continuing or ext_value == st.ext_value:
                end += 4
        # Nothing below can need more bytes: commit the header.
        self._pos = end
        if csid not in self._streams:
            self._streams[csid] = st
        if fmt <= 1:
            length = int.from_bytes(buf[p + 3 : p + 6], "big")
            if length > self.max_message_size:
                raise RemoteProtocolError(f"message of {length} bytes exceeds the limit")
            st.length, st.type_id = length, buf[p + 6]
        if fmt == 0:
            st.msid = int.from_bytes(buf[p + 7 : p + 11], "little")
        if fmt != 3:
            st.ext = extended
            if extended:
                st.ext_value = ext_value
                ts_field = ext_value
        elif extended and not continuing:
            ts_field = ext_value
        if not continuing:
            self._advance_clock(st, fmt, ts_field)
        done = len(st.partial) if st.partial is not None else 0
        self._body = st
        self._body_left = min(self.chunk_size, st.length - done)
        return st

    def _advance_clock(self, st: _Stream, fmt: int, ts_field: int) -> None:
        if fmt == 0:
            new32 = ts_field
            st.delta = ts_field  # a following fmt 3 header reuses it as its delta (spec 5.3.1.2.4)
        else:
            if fmt != 3:
                st.delta = ts_field
            new32 = (st.ts32 + st.delta) & 0xFFFFFFFF
        # A new chunk stream joins the connection's timeline rather than starting its own.
        if st.seen:
            base32, base64 = st.ts32, st.ts64
        elif self._last_ts64 is not None:
            base32, base64 = self._last_ts64 & 0xFFFFFFFF, self._last_ts64
        else:
            base32, base64 = new32, new32
        step = (new32 - base32) & 0xFFFFFFFF
        st.ts64 = base64 + (step - (1 << 32) if step >= 1 << 31 else step)
        st.ts32 = new32
        st.seen = True
        self._last_ts64 = st.ts64

    def _complete(self, st: _Stream, payload: bytes) -> RawMessage:
        self._body = None
        if st.type_id == msg.SET_CHUNK_SIZE:
            size = msg.parse_u32(payload)
            if size == 0 or size > 0x7FFFFFFF:
                raise RemoteProtocolError(f"invalid chunk size {size}")
            if size > self.max_chunk_size:
                raise RemoteProtocolError(f"chunk size {size} exceeds the limit")
            self.chunk_size = min(size, MAX_CHUNK_SIZE)
        elif st.type_id == msg.ABORT:
            aborted = self._streams.get(msg.parse_u32(payload))
            if aborted is not None and aborted.partial is not None:
                self._incomplete -= len(aborted.partial)
                aborted.partial = None
        return RawMessage(st.csid, st.type_id, st.msid, st.ts64, payload)
