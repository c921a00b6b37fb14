"""RTMP message bodies: type ids, protocol control and user control payloads, commands.

Encoders return message payloads (to be framed by :func:`~simulcast.codecs.rtmp.chunk.
encode_message`); decoders raise :class:`RemoteProtocolError` on malformed input.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import parse_qsl

from simulcast.codecs import amf, amf0
from simulcast.codecs.rtmp.errors import RemoteProtocolError

# Message type ids.
SET_CHUNK_SIZE: Final = 1
ABORT: Final = 2
ACKNOWLEDGEMENT: Final = 3
USER_CONTROL: Final = 4
WINDOW_ACK_SIZE: Final = 5
SET_PEER_BANDWIDTH: Final = 6
AUDIO: Final = 8
VIDEO: Final = 9
DATA_AMF3: Final = 15
SHARED_OBJECT_AMF3: Final = 16
COMMAND_AMF3: Final = 17
DATA_AMF0: Final = 18
SHARED_OBJECT_AMF0: Final = 19
COMMAND_AMF0: Final = 20
AGGREGATE: Final = 22

# User control event types.
STREAM_BEGIN: Final = 0
STREAM_EOF: Final = 1
STREAM_DRY: Final = 2
SET_BUFFER_LENGTH: Final = 3
STREAM_IS_RECORDED: Final = 4
PING_REQUEST: Final = 6
PING_RESPONSE: Final = 7

# Set Peer Bandwidth limit types.
LIMIT_HARD: Final = 0
LIMIT_SOFT: Final = 1
LIMIT_DYNAMIC: Final = 2

_U32 = struct.Struct(">I")
_SET_DATA_FRAME: Final = amf0.encode("@setDataFrame")


def parse_u32(payload: bytes) -> int:
    """Read the big-endian 32-bit value that starts a control message."""
    if len(payload) < 4:
        raise RemoteProtocolError(f"control message of {len(payload)} bytes, need 4")
    value: int = _U32.unpack_from(payload)[0]
    return value


def u32(value: int) -> bytes:
    """Payload of Set Chunk Size, Abort, Acknowledgement and Window Acknowledgement Size."""
    return _U32.pack(value & 0xFFFFFFFF)


def set_peer_bandwidth(size: int, limit_type: int = LIMIT_DYNAMIC) -> bytes:
    """Payload of Set Peer Bandwidth."""
    return _U32.pack(size) + bytes((limit_type,))


def parse_set_peer_bandwidth(payload: bytes) -> tuple[int, int]:
    """Return ``(size, limit_type)``; a missing limit type byte reads as dynamic."""
    size = parse_u32(payload)
    return size, payload[4] if len(payload) > 4 else LIMIT_DYNAMIC


def user_control(event_type: int, *values: int) -> bytes:
    """Payload of a User Control message: the event type then 32-bit values."""
    return struct.pack(f">H{len(values)}I", event_type, *values)


@dataclass(frozen=True, slots=True)
class UserControlMessage:
    """A decoded User Control message; ``value`` is the stream id or ping timestamp."""

    event_type: int
    value: int
    extra: int | None = None  # the buffer length of SetBufferLength


def parse_user_control(payload: bytes) -> UserControlMessage:
    """Decode a User Control message body."""
    if len(payload) < 6:
        raise RemoteProtocolError(f"user control message of {len(payload)} bytes")
    event_type, value = struct.unpack_from(">HI", payload)
    extra = _U32.unpack_from(payload, 6)[0] if len(payload) >= 10 else None
    return UserControlMessage(event_type, value, extra)


@dataclass(frozen=True, slots=True)
class Command:
    """An AMF command: name, transaction id, command object and the remaining arguments."""

    name: str
    transaction_id: float
    command_object: Any = None
    args: tuple[Any, ...] = field(default_factory=tuple)

    def arg(self, index: int, default: Any = None) -> Any:
        """The ``index``-th argument after the command object, or ``default``."""
        return self.args[index] if index < len(self.args) else default

    def encode(self) -> bytes:
        """AMF0 command message body (type 20)."""
        return amf0.encode_all(self.name, self.transaction_id, self.command_object, *self.args)


def amf_values(type_id: int, payload: bytes) -> list[Any]:
    """Decode the AMF values of a command or data message (AMF3 types start with a 0x00 byte)."""
    amf3 = type_id in (COMMAND_AMF3, DATA_AMF3) and payload[:1] == b"\x00"
    body = payload[1:] if amf3 else payload
    try:
        return amf0.decode_all(body)
    except amf.AMFDecodeError as exc:
        raise RemoteProtocolError(f"malformed AMF in message type {type_id}: {exc}") from None


def parse_command(type_id: int, payload: bytes) -> Command:
    """Decode a command message (type 20, or 17 wrapping AMF0 after a 0x00 byte)."""
    values = amf_values(type_id, payload)
    if not values or not isinstance(values[0], str):
        raise RemoteProtocolError("command message without a command name")
    if not _all_finite(values):
        # No command has a use for NaN or an infinity, and every int() of one would raise.
        raise RemoteProtocolError(f"{values[0][:64]!r} carries a NaN or infinite number")
    # Some peers omit the transaction id of notifications (ffmpeg's onFCPublish): read as 0.
    tid = values[1] if len(values) > 1 else 0.0
    if isinstance(tid, bool) or not isinstance(tid, int | float):
        tid = 0.0
    return Command(values[0], float(tid), values[2] if len(values) > 2 else None, tuple(values[3:]))


def _all_finite(values: list[Any]) -> bool:
    # Walked once per container: AMF references can share (and cycle through) objects.
    stack: list[Any] = list(values)
    seen: set[int] = set()
    while stack:
        value = stack.pop()
        if isinstance(value, float):
            if not math.isfinite(value):
                return False
            continue
        if isinstance(value, amf.TypedObject):
            value = value.properties
        if isinstance(value, dict | list | tuple) and id(value) not in seen:
            seen.add(id(value))
            stack.extend(value.values() if isinstance(value, dict) else value)
    return True


def amf3_data_to_amf0(payload: bytes) -> bytes | None:
    """Convert a type 15 data message body to the equivalent type 18 body.

    A body without any 0x11 (switch to AMF3) byte is plain AMF0 and is returned as is
    (bit-exact); otherwise the decoded values are re-encoded as AMF0. ``None`` when a value has
    no AMF0 form (e.g. ByteArray) or the body is malformed: the caller keeps it as type 15.
    """
    body = payload[1:] if payload[:1] == b"\x00" else payload
    try:
        values = amf0.decode_all(body)
        if amf0.AVMPLUS not in body:
            return body
        return amf0.encode_all(*values)
    except amf.AMFError:
        return None


def strip_set_data_frame(payload: bytes) -> bytes:
    """Turn ``@setDataFrame, onMetaData, {...}`` (what publishers send) into ``onMetaData, {...}``.

    Payloads without the prefix are returned unchanged. Slicing keeps the rest bit-exact.
    """
    if payload.startswith(_SET_DATA_FRAME):
        return payload[len(_SET_DATA_FRAME) :]
    return payload


def add_set_data_frame(payload: bytes) -> bytes:
    """The inverse of :func:`strip_set_data_frame`, for publishing metadata to a server."""
    if payload.startswith(_SET_DATA_FRAME):
        return payload
    return _SET_DATA_FRAME + payload


def split_stream_name(raw: str) -> tuple[str, dict[str, str]]:
    """Split a publish name such as ``key?token=abc&x=1`` into ``("key", {"token": "abc", ...})``.

    Repeated query keys keep their last value; blank values are kept as ``""``.
    """
    name, _, query = raw.partition("?")
    return name, dict(parse_qsl(query, keep_blank_values=True))
