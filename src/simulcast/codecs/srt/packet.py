"""SRT packet formats (the SRT RFC draft, section 3): data and control packets, handshake CIF.

Every header field is a big-endian 32-bit word. Sequence numbers are 31-bit and wrap; message
numbers 26-bit; timestamps are the sender's microseconds since its connection start, 32-bit.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

SEQ_MASK = 0x7FFFFFFF
_SEQ_HALF = 0x40000000
HEADER_SIZE = 16
_HEADER = struct.Struct(">IIII")
_HANDSHAKE = struct.Struct(">IHHIIIiIi16s")


class SrtError(ValueError):
    """A datagram that is not a well-formed SRT packet."""


class ControlType(enum.IntEnum):
    """Control packet types."""

    HANDSHAKE = 0
    KEEPALIVE = 1
    ACK = 2
    NAK = 3
    CONGESTION_WARNING = 4
    SHUTDOWN = 5
    ACKACK = 6
    DROPREQ = 7
    PEERERROR = 8
    USER = 0x7FFF


class HandshakeType(enum.IntEnum):
    """The handshake's request type; 1000 and above are rejections (1000 + reason)."""

    DONE = -3
    AGREEMENT = -2
    CONCLUSION = -1
    WAVEAHAND = 0
    INDUCTION = 1


class Extension(enum.IntEnum):
    """Handshake extension block types (``SRT_CMD_*``)."""

    HSREQ = 1
    HSRSP = 2
    KMREQ = 3
    KMRSP = 4
    SID = 5
    CONGESTION = 6
    FILTER = 7
    GROUP = 8


REJECT_BASE = 1000
"""A handshake type of 1000 + reason rejects the connection (``URQ_FAILURE_TYPES``)."""
SRT_MAGIC = 0x4A17
"""The extension field of an HSv5 listener's induction response."""
UDT_DGRAM = 2
HS_EXT_HSREQ = 0x1
HS_EXT_KMREQ = 0x2
HS_EXT_CONFIG = 0x4


def seq_add(seq: int, n: int) -> int:
    """``seq + n`` on the 31-bit sequence space."""
    return (seq + n) & SEQ_MASK


def seq_diff(a: int, b: int) -> int:
    """``a - b`` on the 31-bit sequence space, as a signed offset."""
    d = (a - b) & SEQ_MASK
    return d - (SEQ_MASK + 1) if d >= _SEQ_HALF else d


@dataclass(frozen=True, slots=True)
class DataPacket:
    """A data packet: ``position`` (2 bits), ``key`` the encryption key flags (0: clear)."""

    seq: int
    position: int
    in_order: bool
    key: int
    retransmitted: bool
    msgno: int
    timestamp: int
    dest: int
    payload: bytes


@dataclass(frozen=True, slots=True)
class ControlPacket:
    """A control packet; ``info`` is the type-specific word, ``body`` the CIF."""

    type: int
    subtype: int
    info: int
    timestamp: int
    dest: int
    body: bytes


def parse(datagram: bytes) -> DataPacket | ControlPacket:
    """Parse one datagram; raises :class:`SrtError` if it is too short to be SRT."""
    if len(datagram) < HEADER_SIZE:
        raise SrtError("datagram shorter than an SRT header")
    w0, w1, ts, dest = _HEADER.unpack_from(datagram)
    if w0 & 0x80000000:
        return ControlPacket((w0 >> 16) & 0x7FFF, w0 & 0xFFFF, w1, ts, dest, datagram[16:])
    return DataPacket(
        w0,
        w1 >> 30,
        bool(w1 & 0x20000000),
        (w1 >> 27) & 0x3,
        bool(w1 & 0x04000000),
        w1 & 0x03FFFFFF,
        ts,
        dest,
        datagram[16:],
    )


def control(
    ctype: int, info: int, timestamp: int, dest: int, body: bytes = b"", subtype: int = 0
) -> bytes:
    """Serialize a control packet."""
    w0 = 0x80000000 | (ctype << 16) | subtype
    return _HEADER.pack(w0, info & 0xFFFFFFFF, timestamp & 0xFFFFFFFF, dest) + body


@dataclass(frozen=True, slots=True)
class Handshake:
    """The handshake CIF (48 bytes) and its extension blocks (HSv5)."""

    version: int
    encryption: int
    extension: int
    isn: int
    mtu: int
    flow_window: int
    type: int
    socket_id: int
    cookie: int
    peer_ip: bytes
    extensions: tuple[tuple[int, bytes], ...] = ()

    def encode(self) -> bytes:
        """The CIF with its extension blocks."""
        out = [
            _HANDSHAKE.pack(
                self.version,
                self.encryption,
                self.extension,
                self.isn,
                self.mtu,
                self.flow_window,
                self.type,
                self.socket_id,
                self.cookie,
                self.peer_ip,
            )
        ]
        for ext_type, content in self.extensions:
            if len(content) % 4:
                raise SrtError("extension content must be whole 32-bit words")
            out.append(struct.pack(">HH", ext_type, len(content) // 4) + content)
        return b"".join(out)

    def extension_block(self, ext_type: int) -> bytes | None:
        """The content of the first extension of ``ext_type``, or ``None``."""
        for t, content in self.extensions:
            if t == ext_type:
                return content
        return None


def parse_handshake(body: bytes) -> Handshake:
    """Parse a handshake CIF and (for version 5) its extension blocks."""
    if len(body) < _HANDSHAKE.size:
        raise SrtError("handshake shorter than 48 bytes")
    version, encryption, extension, isn, mtu, window, hs_type, socket_id, cookie, ip = (
        _HANDSHAKE.unpack_from(body)
    )
    extensions: list[tuple[int, bytes]] = []
    pos = _HANDSHAKE.size
    if version == 5:
        while pos + 4 <= len(body):
            ext_type, words = struct.unpack_from(">HH", body, pos)
            end = pos + 4 + words * 4
            if end > len(body):
                raise SrtError("handshake extension runs past the packet")
            extensions.append((ext_type, body[pos + 4 : end]))
            pos = end
    return Handshake(
        version,
        encryption,
        extension,
        isn,
        mtu,
        window,
        hs_type,
        socket_id,
        cookie,
        ip,
        tuple(extensions),
    )


def swap_words(data: bytes) -> bytes:
    """Reverse the bytes of every 32-bit word (libsrt sends string extensions that way)."""
    padded = data + b"\x00" * (-len(data) % 4)
    return b"".join(padded[i : i + 4][::-1] for i in range(0, len(padded), 4))


def encode_loss_list(losses: list[tuple[int, int]]) -> bytes:
    """A NAK CIF: single sequence numbers, or ranges as (first | 0x80000000, last)."""
    words: list[int] = []
    for first, last in losses:
        if first == last:
            words.append(first)
        else:
            words += [first | 0x80000000, last]
    return struct.pack(f">{len(words)}I", *words)


def decode_loss_list(body: bytes) -> list[tuple[int, int]]:
    """The ranges of a NAK or DROPREQ-style loss list."""
    words = struct.unpack(f">{len(body) // 4}I", body[: len(body) // 4 * 4])
    out: list[tuple[int, int]] = []
    i = 0
    while i < len(words):
        w = words[i]
        if w & 0x80000000 and i + 1 < len(words):
            out.append((w & SEQ_MASK, words[i + 1] & SEQ_MASK))
            i += 2
        else:
            out.append((w & SEQ_MASK, w & SEQ_MASK))
            i += 1
    return out
