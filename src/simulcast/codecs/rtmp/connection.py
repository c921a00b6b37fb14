"""Sans-I/O RTMP connections: :class:`ServerConnection` (ingest) and :class:`ClientConnection`
(push), in the h11 style.

Usage, either side::

    for event in conn.receive_data(data):  # buffer bytes read from the socket, then pull events
        ...                                # react, possibly calling conn.accept_* methods
    sock.write(conn.data_to_send())        # handshake replies, acks, pongs, command answers

``receive_data`` buffers and returns a lazy iterator; :meth:`next_event` (what the iterator
calls) parses one event at a time and returns ``None`` when it needs more data. Parsing is lazy
so that state the caller changes while handling an event (e.g. ``accept_publish``, even after
an ``await``) applies to the events after it. Acknowledgements and ping responses are queued
on their own. After a :class:`RemoteProtocolError` the connection is dead and re-raises it.
"""

from __future__ import annotations

import enum
import os
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any, Final, TypedDict, Unpack

from simulcast.codecs.rtmp import handshake, status
from simulcast.codecs.rtmp import messages as msg
from simulcast.codecs.rtmp.chunk import ChunkDecoder, RawMessage, encode_message
from simulcast.codecs.rtmp.errors import LocalProtocolError, RemoteProtocolError
from simulcast.codecs.rtmp.events import (
    Acknowledged,
    CloseStream,
    Connected,
    ConnectFailed,
    ConnectRequest,
    CreateStream,
    DeleteStream,
    Event,
    FCPublish,
    FCUnpublish,
    HandshakeDone,
    MediaMessage,
    PeerBandwidth,
    PeerChunkSizeChanged,
    PeerWindowAckSize,
    PublishFailed,
    PublishRequest,
    PublishStarted,
    ReleaseStream,
    StatusEvent,
    UnhandledMessage,
    UnknownCommand,
    UserControl,
)

__all__ = ["CSID_AUDIO", "CSID_VIDEO", "ClientConnection", "ServerConnection"]

# Chunk stream ids as nginx-rtmp uses them.
CSID_CONTROL: Final = 2
CSID_COMMAND: Final = 3
CSID_STREAM: Final = 5  # stream-level commands, onStatus and data messages
CSID_AUDIO: Final = 6
CSID_VIDEO: Final = 7
_MEDIA_CSID: Final = {msg.AUDIO: CSID_AUDIO, msg.VIDEO: CSID_VIDEO, msg.DATA_AMF0: CSID_STREAM}
_MEDIA_TYPES: Final = frozenset((msg.AUDIO, msg.VIDEO, msg.DATA_AMF0, msg.DATA_AMF3))

RandomBytes = Callable[[int], bytes]


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


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _info(value: Any) -> tuple[str, str, str]:
    """``(code, level, description)`` of an info object, tolerating anything."""
    if not isinstance(value, dict):
        return "", "", ""
    return _text(value.get("code")), _text(value.get("level")), _text(value.get("description"))


class _Connection:
    """What both sides share: buffering, handshake bytes, control messages, acks, pings."""

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
    def bytes_received(self) -> int:
        """Total bytes passed to :meth:`receive_data`."""
        return self._received

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


class ServerConnection(_Connection):
    """The ingest side of one RTMP connection (a publisher connected to us).

    The peer's commands become events; the caller answers them with the ``accept_*`` /
    ``reject_*`` methods. Media is only accepted on streams whose publish was accepted.
    ``chunk_size`` is what :meth:`accept_connect` announces and then uses.
    """

    def __init__(self, *, chunk_size: int = 4096, **limits: Unpack[ConnectionLimits]) -> None:
        super().__init__(chunk_size=chunk_size, **limits)
        self._answered_c1 = False
        self._peer_digest = False
        self._connect_tid: float | None = None
        self._connect_answered = False
        self._object_encoding = 0.0
        self._next_msid = 1
        self._streams: set[int] = set()
        self._publish_requests: set[int] = set()
        self.publishing: dict[int, str] = {}
        """Stream id -> raw stream name of every accepted, still running publish."""

    def _handshake_step(self) -> Event | None:
        hs = self._handshake
        if not self._answered_c1:
            if hs[:1] and hs[0] != handshake.RTMP_VERSION:
                raise RemoteProtocolError(f"unsupported RTMP version {hs[0]}")
            if len(hs) < 1 + handshake.PACKET_SIZE:
                return None
            c0c1 = bytes(hs[: 1 + handshake.PACKET_SIZE])
            del hs[: 1 + handshake.PACKET_SIZE]
            reply = handshake.server_response(c0c1, self._random(2 * handshake.PACKET_SIZE))
            self._out += reply
            self._answered_c1 = True
            self._peer_digest = any(reply[5:9])  # S1 version is zero for the simple form
        if len(hs) < handshake.PACKET_SIZE:
            return None
        del hs[: handshake.PACKET_SIZE]  # C2 is not checked: clients differ and it proves nothing
        self._handshaking = False
        return HandshakeDone(self._peer_digest)

    def _on_command(self, cmd: msg.Command, raw: RawMessage) -> Event | None:
        name = cmd.name
        if name == "connect":
            if self._connect_tid is not None:
                raise RemoteProtocolError("second connect on one connection")
            obj = cmd.command_object if isinstance(cmd.command_object, dict) else {}
            self._connect_tid = cmd.transaction_id
            encoding = obj.get("objectEncoding", 0.0)
            self._object_encoding = float(encoding) if isinstance(encoding, int | float) else 0.0
            return ConnectRequest(
                _text(obj.get("app")),
                _text(obj.get("tcUrl")),
                obj,
                cmd.transaction_id,
                self._object_encoding,
            )
        if self._connect_tid is None:
            raise RemoteProtocolError(f"{name!r} before connect")
        if name == "releaseStream":
            return ReleaseStream(_text(cmd.arg(0)), cmd.transaction_id)
        if name == "FCPublish":
            return FCPublish(_text(cmd.arg(0)), cmd.transaction_id)
        if name == "FCUnpublish":
            return FCUnpublish(_text(cmd.arg(0)), cmd.transaction_id)
        if name == "createStream":
            return CreateStream(cmd.transaction_id)
        if name == "publish":
            if raw.msid not in self._streams:
                raise RemoteProtocolError(f"publish on stream {raw.msid} that was never created")
            if raw.msid in self.publishing or raw.msid in self._publish_requests:
                raise RemoteProtocolError(f"second publish on stream {raw.msid}")
            self._publish_requests.add(raw.msid)
            kind = _text(cmd.arg(1)) or "live"
            return PublishRequest(_text(cmd.arg(0)), kind, raw.msid, cmd.transaction_id)
        if name in ("deleteStream", "closeStream"):
            target = cmd.arg(0) if name == "deleteStream" else raw.msid
            if isinstance(target, bool) or not isinstance(target, int | float):
                raise RemoteProtocolError("deleteStream without a stream id")
            msid = int(target)
            self.publishing.pop(msid, None)
            self._publish_requests.discard(msid)
            if name == "closeStream":
                return CloseStream(msid)
            self._streams.discard(msid)
            return DeleteStream(msid)
        return UnknownCommand(name, cmd.transaction_id, raw.msid, cmd.command_object, cmd.args)

    def _on_media(self, raw: RawMessage) -> Event | None:
        if raw.msid not in self.publishing:
            raise RemoteProtocolError(f"media on stream {raw.msid}, which is not publishing")
        return self._media_event(raw)

    # -- answers -------------------------------------------------------------------------------

    def accept_connect(
        self,
        *,
        chunk_size: int | None = None,
        window_ack_size: int = 2_500_000,
        peer_bandwidth: int = 2_500_000,
        description: str = "Connection succeeded.",
    ) -> None:
        """Send Window Ack Size, Set Peer Bandwidth, Set Chunk Size and the connect ``_result``."""
        tid = self._take_connect()
        self._send_window_ack_size(window_ack_size)
        self._send_control(msg.SET_PEER_BANDWIDTH, msg.set_peer_bandwidth(peer_bandwidth))
        self.set_chunk_size(self._wanted_chunk_size if chunk_size is None else chunk_size)
        properties = {"fmsVer": "FMS/3,0,1,123", "capabilities": 31.0}
        info = status.info(
            status.LEVEL_STATUS,
            status.CONNECT_SUCCESS,
            description,
            objectEncoding=self._object_encoding,
        )
        self._send_command("_result", tid, properties, info)

    def reject_connect(self, description: str, code: str = status.CONNECT_REJECTED) -> None:
        """Answer ``connect`` with ``_error``; the caller then closes the socket."""
        tid = self._take_connect()
        self._send_command("_error", tid, None, status.info(status.LEVEL_ERROR, code, description))

    def _take_connect(self) -> float:
        if self._connect_tid is None or self._connect_answered:
            raise LocalProtocolError("no connect request waiting for an answer")
        self._connect_answered = True
        return self._connect_tid

    def _require_connected(self) -> None:
        if not self._connect_answered:
            raise LocalProtocolError("connect has not been answered")

    def accept_create_stream(self, transaction_id: float) -> int:
        """Allocate a message stream id and answer ``createStream`` with it."""
        self._require_connected()
        msid = self._next_msid
        self._next_msid += 1
        self._streams.add(msid)
        self._send_command("_result", transaction_id, None, float(msid))
        return msid

    def accept_publish(self, msid: int, name: str) -> None:
        """Send StreamBegin and onStatus NetStream.Publish.Start; media on ``msid`` is let in."""
        self._take_publish(msid)
        self.publishing[msid] = name
        self._send_control(msg.USER_CONTROL, msg.user_control(msg.STREAM_BEGIN, msid))
        self._on_status(
            msid, status.LEVEL_STATUS, status.PUBLISH_START, f"{name} is now published.", name
        )

    def reject_publish(
        self, msid: int, code: str = status.PUBLISH_BAD_NAME, description: str = "Publish refused."
    ) -> None:
        """Refuse a publish with an error onStatus (e.g. NetStream.Publish.BadName)."""
        self._take_publish(msid)
        self._on_status(msid, status.LEVEL_ERROR, code, description)

    def _take_publish(self, msid: int) -> None:
        if msid not in self._publish_requests:
            raise LocalProtocolError(f"no publish request waiting on stream {msid}")
        self._publish_requests.discard(msid)

    def unpublish_notify(self, msid: int, name: str) -> None:
        """Tell the client its publish on ``msid`` ended (onStatus NetStream.Unpublish.Success)."""
        self._require_connected()
        self.publishing.pop(msid, None)
        self._on_status(
            msid, status.LEVEL_STATUS, status.UNPUBLISH_SUCCESS, f"{name} is now unpublished.", name
        )

    def send_on_fcpublish(self, name: str) -> None:
        """Answer ``FCPublish`` the way FMS does (some encoders log its absence)."""
        self._require_connected()
        info = status.info(status.LEVEL_STATUS, status.PUBLISH_START, name)
        self._send_command("onFCPublish", 0.0, None, info)

    def answer_result(self, transaction_id: float, *values: Any) -> None:
        """Send ``_result`` for a transaction (e.g. releaseStream): null then ``values``."""
        self._require_connected()
        self._send_command("_result", transaction_id, None, *values)

    def answer_error(
        self, transaction_id: float, description: str, code: str = status.CALL_FAILED
    ) -> None:
        """Send ``_error`` for a transaction (e.g. an unknown command the client waits on)."""
        self._require_connected()
        info = status.info(status.LEVEL_ERROR, code, description)
        self._send_command("_error", transaction_id, None, info)

    def _on_status(
        self, msid: int, level: str, code: str, description: str, details: str | None = None
    ) -> None:
        extra = {} if details is None else {"details": details}
        info = status.info(level, code, description, **extra)
        self._send_command("onStatus", 0.0, None, info, msid=msid, csid=CSID_STREAM)


class _Push(enum.Enum):
    IDLE = "idle"
    HANDSHAKE = "handshake"
    CONNECTING = "connecting"
    CREATING = "creating"
    PUBLISHING_REQUESTED = "publish requested"
    PUBLISHING = "publishing"
    FAILED = "failed"
    CLOSED = "closed"


class ClientConnection(_Connection):
    """The push side: publishes one stream to an RTMP server.

    After :meth:`initiate` the whole exchange runs by itself as events are pulled: C2 and
    Set Chunk Size + ``connect`` after the handshake; ``releaseStream``, ``FCPublish`` and
    ``createStream`` after :class:`Connected`; ``publish`` once the stream exists, until
    :class:`PublishStarted` (or :class:`ConnectFailed` / :class:`PublishFailed`). Then send media
    with :meth:`media_bytes`. ``handshake_verified`` tells whether S2 matched our C1 (not fatal).
    """

    def __init__(
        self,
        app: str,
        tc_url: str,
        stream_name: str,
        *,
        chunk_size: int = 4096,
        flash_ver: str = "FMLE/3.0 (compatible; FMSc/1.0)",
        **limits: Unpack[ConnectionLimits],
    ) -> None:
        super().__init__(chunk_size=chunk_size, **limits)
        self.app, self.tc_url, self.stream_name = app, tc_url, stream_name
        self._flash_ver = flash_ver
        self._state = _Push.IDLE
        self._c1_digest = b""
        self._c1 = b""
        self._tid = 0.0
        self._connect_tid = self._create_tid = self._publish_tid = -1.0
        self.msid: int | None = None
        """The message stream id the server gave us (set once ``createStream`` succeeded)."""
        self.handshake_verified: bool | None = None

    @property
    def publishing(self) -> bool:
        """True between :class:`PublishStarted` and :meth:`unpublish`."""
        return self._state is _Push.PUBLISHING

    def initiate(self) -> None:
        """Queue C0+C1 (digest form, schema 0) to start the handshake."""
        if self._state is not _Push.IDLE:
            raise LocalProtocolError("initiate() called twice")
        hello = handshake.client_hello(self._random(handshake.PACKET_SIZE - 8))
        self._c1_digest, self._c1 = hello.digest, hello.c0c1[1:]
        self._out += hello.c0c1
        self._state = _Push.HANDSHAKE

    def _handshake_step(self) -> Event | None:
        if self._state is not _Push.HANDSHAKE:
            if self._handshake:
                raise LocalProtocolError("data received before initiate()")
            return None
        hs = self._handshake
        if hs[:1] and hs[0] != handshake.RTMP_VERSION:
            raise RemoteProtocolError(f"unsupported RTMP version {hs[0]}")
        size = 1 + 2 * handshake.PACKET_SIZE
        if len(hs) < size:
            return None
        s1 = bytes(hs[1 : 1 + handshake.PACKET_SIZE])
        s2 = bytes(hs[1 + handshake.PACKET_SIZE : size])
        del hs[:size]
        self._out += handshake.client_c2(s1, self._random(handshake.PACKET_SIZE))
        self.handshake_verified = s2 == self._c1 or handshake.verify_s2(s2, self._c1_digest)
        self._handshaking = False
        self.set_chunk_size(self._wanted_chunk_size)
        self._connect_tid = self._next_tid()
        obj = {
            "app": self.app,
            "type": "nonprivate",
            "flashVer": self._flash_ver,
            "tcUrl": self.tc_url,
        }
        self._send_command("connect", self._connect_tid, obj)
        self._state = _Push.CONNECTING
        return HandshakeDone(handshake.find_digest(s1, handshake.FMS_KEY_PARTIAL) is not None)

    def _next_tid(self) -> float:
        self._tid += 1
        return self._tid

    def _on_command(self, cmd: msg.Command, raw: RawMessage) -> Event | None:
        name, tid = cmd.name, cmd.transaction_id
        if name == "_result" and tid == self._connect_tid and self._state is _Push.CONNECTING:
            self._send_command("releaseStream", self._next_tid(), None, self.stream_name)
            self._send_command("FCPublish", self._next_tid(), None, self.stream_name)
            self._create_tid = self._next_tid()
            self._send_command("createStream", self._create_tid, None)
            self._state = _Push.CREATING
            return Connected(cmd.command_object, cmd.arg(0))
        if name == "_result" and tid == self._create_tid and self._state is _Push.CREATING:
            msid = cmd.arg(0)
            if isinstance(msid, bool) or not isinstance(msid, int | float) or not 0 < msid < 2**32:
                raise RemoteProtocolError(f"createStream answered with stream id {msid!r}")
            self.msid = int(msid)
            self._publish_tid = self._next_tid()
            self._send_command(
                "publish",
                self._publish_tid,
                None,
                self.stream_name,
                "live",
                msid=self.msid,
                csid=CSID_STREAM,
            )
            self._state = _Push.PUBLISHING_REQUESTED
            return None
        if name == "_error" and tid in (self._connect_tid, self._create_tid, self._publish_tid):
            code, _, description = _info(cmd.arg(0))
            if tid == self._connect_tid:
                self._state = _Push.FAILED
                return ConnectFailed(code, description)
            if self._state is not _Push.PUBLISHING:
                self._state = _Push.FAILED
                return PublishFailed(code, description)
        if name in ("onStatus", "onFCPublish", "onFCUnpublish"):
            code, level, description = _info(cmd.arg(0))
            if name == "onStatus" and self._state is _Push.PUBLISHING_REQUESTED:
                if code == status.PUBLISH_START:
                    self._state = _Push.PUBLISHING
                    assert self.msid is not None  # set before publish was sent
                    return PublishStarted(self.msid)
                if level == status.LEVEL_ERROR:
                    self._state = _Push.FAILED
                    return PublishFailed(code, description)
            return StatusEvent(code, level, description)
        return UnknownCommand(name, tid, raw.msid, cmd.command_object, cmd.args)

    def _on_media(self, raw: RawMessage) -> Event | None:
        return UnhandledMessage(raw.type_id, raw.msid, raw.timestamp, raw.payload)

    def media_bytes(self, type_id: int, timestamp: int, payload: bytes) -> bytes:
        """Serialize an audio (8), video (9) or data (18) message for the published stream.

        Pure: nothing is queued, the caller writes the result. It depends only on the arguments,
        :attr:`chunk_size` and :attr:`msid`, so one copy can be cached per ``(chunk_size, msid)``
        and shared by every push with the same pair.
        """
        if self._state is not _Push.PUBLISHING or self.msid is None:
            raise LocalProtocolError(f"not publishing (state: {self._state.value})")
        csid = _MEDIA_CSID.get(type_id)
        if csid is None:
            raise LocalProtocolError(f"message type {type_id} is not audio, video or data")
        return encode_message(csid, type_id, self.msid, timestamp, payload, self.chunk_size)

    def unpublish(self) -> None:
        """Queue ``FCUnpublish`` and ``deleteStream`` (what ffmpeg sends at the end)."""
        if self._state is not _Push.PUBLISHING or self.msid is None:
            raise LocalProtocolError(f"not publishing (state: {self._state.value})")
        self._send_command("FCUnpublish", self._next_tid(), None, self.stream_name)
        self._send_command("deleteStream", self._next_tid(), None, float(self.msid))
        self._state = _Push.CLOSED
