"""Events produced by :mod:`simulcast.codecs.rtmp.connection` (frozen dataclasses)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Event:
    """Base class of all connection events."""


@dataclass(frozen=True, slots=True)
class HandshakeDone(Event):
    """The handshake finished; ``peer_digest`` tells whether the peer used the digest form."""

    peer_digest: bool


# -- session level, both sides -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PeerChunkSizeChanged(Event):
    """The peer sent Set Chunk Size (already applied)."""

    chunk_size: int


@dataclass(frozen=True, slots=True)
class PeerWindowAckSize(Event):
    """The peer asked to be acknowledged every ``size`` bytes (acks are sent automatically)."""

    size: int


@dataclass(frozen=True, slots=True)
class PeerBandwidth(Event):
    """The peer sent Set Peer Bandwidth."""

    size: int
    limit_type: int


@dataclass(frozen=True, slots=True)
class Acknowledged(Event):
    """The peer acknowledged ``sequence_number`` received bytes (mod 2**32)."""

    sequence_number: int


@dataclass(frozen=True, slots=True)
class UserControl(Event):
    """A User Control message; PingRequest is answered automatically before this is returned."""

    event_type: int
    value: int
    extra: int | None = None


@dataclass(frozen=True, slots=True)
class MediaMessage(Event):
    """Audio (8), video (9) or data (18; 15 when it cannot be expressed as AMF0) message.

    ``timestamp`` is in milliseconds, unwrapped from the 32-bit wire clock.
    """

    type_id: int
    msid: int
    timestamp: int
    payload: bytes


@dataclass(frozen=True, slots=True)
class UnknownCommand(Event):
    """A command the connection does not act on; answer it with ``answer_error`` if you like."""

    name: str
    transaction_id: float
    msid: int
    command_object: Any = None
    args: tuple[Any, ...] = field(default_factory=tuple)


@dataclass(frozen=True, slots=True)
class UnhandledMessage(Event):
    """A message of a type the connection ignores (shared objects, aggregate, ...)."""

    type_id: int
    msid: int
    timestamp: int
    payload: bytes


# -- server side (ingest) --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ConnectRequest(Event):
    """``connect``: answer with ``accept_connect`` or ``reject_connect``."""

    app: str
    tc_url: str
    params: dict[str, Any]
    transaction_id: float
    object_encoding: float = 0.0


@dataclass(frozen=True, slots=True)
class ReleaseStream(Event):
    """``releaseStream`` (FMLE-style clients send it before publishing)."""

    name: str
    transaction_id: float


@dataclass(frozen=True, slots=True)
class FCPublish(Event):
    """``FCPublish`` (FMLE-style clients send it before publishing)."""

    name: str
    transaction_id: float


@dataclass(frozen=True, slots=True)
class CreateStream(Event):
    """``createStream``: answer with ``accept_create_stream``."""

    transaction_id: float


@dataclass(frozen=True, slots=True)
class PublishCommand(Event):
    """``publish`` on stream ``msid``; ``stream_name`` is raw (see ``split_stream_name``)."""

    stream_name: str
    publish_type: str
    msid: int
    transaction_id: float


@dataclass(frozen=True, slots=True)
class FCUnpublish(Event):
    """``FCUnpublish``: the publisher is about to stop."""

    name: str
    transaction_id: float


@dataclass(frozen=True, slots=True)
class DeleteStream(Event):
    """``deleteStream``: stream ``msid`` is gone (publishing on it stopped)."""

    msid: int


@dataclass(frozen=True, slots=True)
class CloseStream(Event):
    """``closeStream`` on stream ``msid`` (publishing on it stopped)."""

    msid: int


# -- client side (push) ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Connected(Event):
    """The server accepted ``connect``; the connection now asks to publish by itself."""

    properties: Any
    info: Any


@dataclass(frozen=True, slots=True)
class ConnectFailed(Event):
    """The server rejected ``connect``."""

    code: str
    description: str


@dataclass(frozen=True, slots=True)
class PublishStarted(Event):
    """NetStream.Publish.Start: ``media_bytes`` may be used from now on."""

    msid: int


@dataclass(frozen=True, slots=True)
class PublishFailed(Event):
    """The server refused ``createStream`` or ``publish``."""

    code: str
    description: str


@dataclass(frozen=True, slots=True)
class PlayStarted(Event):
    """NetStream.Play.Start (a playing client): media messages follow as ``MediaMessage``."""

    msid: int


@dataclass(frozen=True, slots=True)
class StatusEvent(Event):
    """Any other ``onStatus`` (e.g. NetStream.Unpublish.Success, errors while publishing)."""

    code: str
    level: str
    description: str
