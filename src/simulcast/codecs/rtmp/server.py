"""The ingest side's command flow: a publisher's ``connect``, ``createStream`` and ``publish``
become events the caller answers (third stage, over :mod:`~simulcast.codecs.rtmp.chunk_stream`);
the connection-level states are :data:`~simulcast.codecs.rtmp.states.SERVER_TABLE`.
"""

from __future__ import annotations

from typing import Any, Unpack

from simulcast.codecs.rtmp import handshake, status
from simulcast.codecs.rtmp import messages as msg
from simulcast.codecs.rtmp.chunk import RawMessage
from simulcast.codecs.rtmp.chunk_stream import (
    CSID_STREAM,
    ChunkStream,
    ConnectionLimits,
    text,
)
from simulcast.codecs.rtmp.errors import LocalProtocolError, RemoteProtocolError
from simulcast.codecs.rtmp.events import (
    CloseStream,
    ConnectRequest,
    CreateStream,
    DeleteStream,
    Event,
    FCPublish,
    FCUnpublish,
    HandshakeDone,
    PublishCommand,
    ReleaseStream,
    UnknownCommand,
)
from simulcast.codecs.rtmp.states import SERVER_TABLE, ServerInput, ServerState, StateMachine


class ServerConnection(ChunkStream):
    """The ingest side of one RTMP connection (a publisher connected to us).

    The peer's commands become events; the caller answers them with the ``accept_*`` /
    ``reject_*`` methods. Media is only accepted on streams whose publish was accepted.
    ``chunk_size`` is what :meth:`accept_connect` announces and then uses.

    Until a publish is accepted the peer is a stranger: its messages and chunk size are held to
    the ``*_before_publish`` limits (what a real ``connect``/``publish`` needs), so a connection
    that never authenticates cannot make the server hold megabytes of partial messages.
    """

    def __init__(self, *, chunk_size: int = 4096, **limits: Unpack[ConnectionLimits]) -> None:
        super().__init__(chunk_size=chunk_size, **limits)
        self._full_limits = (self._decoder.max_message_size, self._decoder.max_chunk_size)
        self._decoder.max_message_size = min(
            self._decoder.max_message_size, limits.get("max_message_size_before_publish", 16384)
        )
        self._decoder.max_chunk_size = limits.get("max_chunk_size_before_publish", 65536)
        self._hs = handshake.ServerHandshake(self._random)
        self._flow = StateMachine(SERVER_TABLE, ServerState.HANDSHAKE)
        self._connect_tid = 0.0
        self._object_encoding = 0.0
        self._next_msid = 1
        self._streams: set[int] = set()
        self._publish_requests: set[int] = set()
        self.publishing: dict[int, str] = {}
        """Stream id -> raw stream name of every accepted, still running publish."""

    def _handshake_step(self) -> Event | None:
        self._out += self._hs.receive(self._handshake)
        if not self._hs.done:
            return None
        self._handshaking = False
        self._flow.fire(ServerInput.HANDSHAKE_DONE, remote=True)
        return HandshakeDone(self._hs.peer_digest)

    def _on_command(self, cmd: msg.Command, raw: RawMessage) -> Event | None:
        name = cmd.name
        if name == "connect":
            self._flow.fire(
                ServerInput.CONNECT, remote=True, message="second connect on one connection"
            )
            obj = cmd.command_object if isinstance(cmd.command_object, dict) else {}
            self._connect_tid = cmd.transaction_id
            encoding = obj.get("objectEncoding", 0.0)
            self._object_encoding = float(encoding) if isinstance(encoding, int | float) else 0.0
            return ConnectRequest(
                text(obj.get("app")),
                text(obj.get("tcUrl")),
                obj,
                cmd.transaction_id,
                self._object_encoding,
            )
        self._flow.fire(ServerInput.COMMAND, remote=True, message=f"{name!r} before connect")
        if name == "releaseStream":
            return ReleaseStream(text(cmd.arg(0)), cmd.transaction_id)
        if name == "FCPublish":
            return FCPublish(text(cmd.arg(0)), cmd.transaction_id)
        if name == "FCUnpublish":
            return FCUnpublish(text(cmd.arg(0)), cmd.transaction_id)
        if name == "createStream":
            return CreateStream(cmd.transaction_id)
        if name == "publish":
            if raw.msid not in self._streams:
                raise RemoteProtocolError(f"publish on stream {raw.msid} that was never created")
            if raw.msid in self.publishing or raw.msid in self._publish_requests:
                raise RemoteProtocolError(f"second publish on stream {raw.msid}")
            self._publish_requests.add(raw.msid)
            kind = text(cmd.arg(1)) or "live"
            return PublishCommand(text(cmd.arg(0)), kind, raw.msid, cmd.transaction_id)
        if name in ("deleteStream", "closeStream"):
            target = cmd.arg(0) if name == "deleteStream" else raw.msid
            if (
                isinstance(target, bool)
                or not isinstance(target, int | float)
                or not 0 <= target < 2**32  # also refuses NaN and infinities
            ):
                raise RemoteProtocolError(f"{name} without a valid stream id")
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
        tid = self._take_connect(ServerInput.ACCEPT_CONNECT)
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
        tid = self._take_connect(ServerInput.REJECT_CONNECT)
        self._send_command("_error", tid, None, status.info(status.LEVEL_ERROR, code, description))

    def _take_connect(self, answer: ServerInput) -> float:
        self._flow.fire(answer, remote=False, message="no connect request waiting for an answer")
        return self._connect_tid

    def _require_connected(self) -> None:
        self._flow.fire(ServerInput.ANSWER, remote=False, message="connect has not been answered")

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
        self._decoder.max_message_size, self._decoder.max_chunk_size = self._full_limits
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
