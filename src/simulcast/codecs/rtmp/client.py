"""The push (or pull) side's command flow: ``connect``, ``createStream`` and ``publish`` (or
``play``) run by themselves as events are pulled (third stage, over
:mod:`~simulcast.codecs.rtmp.chunk_stream`); the states and what moves them are
:data:`~simulcast.codecs.rtmp.states.CLIENT_TABLE`.
"""

from __future__ import annotations

from typing import Final, Unpack

from simulcast.codecs.rtmp import handshake, status
from simulcast.codecs.rtmp import messages as msg
from simulcast.codecs.rtmp.chunk import RawMessage, encode_message
from simulcast.codecs.rtmp.chunk_stream import (
    CSID_STREAM,
    MEDIA_CSID,
    ChunkStream,
    ConnectionLimits,
    info,
)
from simulcast.codecs.rtmp.errors import LocalProtocolError, RemoteProtocolError
from simulcast.codecs.rtmp.events import (
    Connected,
    ConnectFailed,
    Event,
    HandshakeDone,
    PlayStarted,
    PublishFailed,
    PublishStarted,
    StatusEvent,
    UnhandledMessage,
    UnknownCommand,
)
from simulcast.codecs.rtmp.states import CLIENT_TABLE, ClientInput, ClientState, StateMachine

_STARTS: Final = (
    (ClientInput.PLAY_STARTED, status.PLAY_START, PlayStarted),
    (ClientInput.PUBLISH_STARTED, status.PUBLISH_START, PublishStarted),
)
"""What answers a requested play or publish: the input, its onStatus code, the event."""


class ClientConnection(ChunkStream):
    """The push side: publishes one stream to an RTMP server.

    After :meth:`initiate` the whole exchange runs by itself as events are pulled: C2 and
    Set Chunk Size + ``connect`` after the handshake; ``releaseStream``, ``FCPublish`` and
    ``createStream`` after :class:`Connected`; ``publish`` once the stream exists, until
    :class:`PublishStarted` (or :class:`ConnectFailed` / :class:`PublishFailed`). Then send media
    with :meth:`media_bytes`. ``handshake_verified`` tells whether S2 matched our C1 (not fatal).

    With ``play=True`` it plays the stream instead (an RTMP pull): ``createStream`` after
    :class:`Connected`, then ``play`` and a buffer length, until :class:`PlayStarted` (or
    :class:`PublishFailed` carrying the server's error); media then arrives as
    :class:`MediaMessage` events.
    """

    def __init__(
        self,
        app: str,
        tc_url: str,
        stream_name: str,
        *,
        chunk_size: int = 4096,
        flash_ver: str = "FMLE/3.0 (compatible; FMSc/1.0)",
        play: bool = False,
        **limits: Unpack[ConnectionLimits],
    ) -> None:
        super().__init__(chunk_size=chunk_size, **limits)
        self.app, self.tc_url, self.stream_name = app, tc_url, stream_name
        self._play = play
        self._flash_ver = flash_ver
        self._flow = StateMachine(CLIENT_TABLE, ClientState.IDLE)
        self._hs = handshake.ClientHandshake(self._random)
        self._tid = 0.0
        self._connect_tid = self._create_tid = self._publish_tid = -1.0
        self.msid: int | None = None
        """The message stream id the server gave us (set once ``createStream`` succeeded)."""

    @property
    def handshake_verified(self) -> bool | None:
        """Whether S2 matched our C1 (``None`` before the handshake ended; not fatal)."""
        return self._hs.verified

    @property
    def publishing(self) -> bool:
        """True between :class:`PublishStarted` and :meth:`unpublish`."""
        return self._flow.state is ClientState.PUBLISHING

    def initiate(self) -> None:
        """Queue C0+C1 (digest form, schema 0) to start the handshake."""
        self._flow.fire(ClientInput.INITIATE, remote=False, message="initiate() called twice")
        self._out += self._hs.hello()

    def _handshake_step(self) -> Event | None:
        if self._flow.state is not ClientState.HANDSHAKE:
            if self._handshake:
                raise LocalProtocolError("data received before initiate()")
            return None
        self._out += self._hs.receive(self._handshake)
        if not self._hs.done:
            return None
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
        self._flow.fire(ClientInput.HANDSHAKE_DONE, remote=True)
        return HandshakeDone(self._hs.peer_digest)

    def _next_tid(self) -> float:
        self._tid += 1
        return self._tid

    def _on_command(self, cmd: msg.Command, raw: RawMessage) -> Event | None:
        name, tid = cmd.name, cmd.transaction_id
        if (
            name == "_result"
            and tid == self._connect_tid
            and self._flow.allows(ClientInput.CONNECTED)
        ):
            if not self._play:
                self._send_command("releaseStream", self._next_tid(), None, self.stream_name)
                self._send_command("FCPublish", self._next_tid(), None, self.stream_name)
            self._create_tid = self._next_tid()
            self._send_command("createStream", self._create_tid, None)
            self._flow.fire(ClientInput.CONNECTED, remote=True)
            return Connected(cmd.command_object, cmd.arg(0))
        if (
            name == "_result"
            and tid == self._create_tid
            and self._flow.state is ClientState.CREATING
        ):
            msid = cmd.arg(0)
            if isinstance(msid, bool) or not isinstance(msid, int | float) or not 0 < msid < 2**32:
                raise RemoteProtocolError(f"createStream answered with stream id {msid!r}")
            self.msid = int(msid)
            self._publish_tid = self._next_tid()
            if self._play:
                self._request_play(self.msid)
                return None
            self._send_command(
                "publish",
                self._publish_tid,
                None,
                self.stream_name,
                "live",
                msid=self.msid,
                csid=CSID_STREAM,
            )
            self._flow.fire(ClientInput.CREATED_TO_PUBLISH, remote=True)
            return None
        if name == "_error" and tid in (self._connect_tid, self._create_tid, self._publish_tid):
            code, _, description = info(cmd.arg(0))
            if tid == self._connect_tid:
                self._flow.fire(ClientInput.CONNECT_FAILED, remote=True)
                return ConnectFailed(code, description)
            if self._flow.allows(ClientInput.STREAM_FAILED):
                self._flow.fire(ClientInput.STREAM_FAILED, remote=True)
                return PublishFailed(code, description)
        if name in ("onStatus", "onFCPublish", "onFCUnpublish"):
            code, level, description = info(cmd.arg(0))
            for started, start_code, event in _STARTS:
                if name != "onStatus" or not self._flow.allows(started):
                    continue
                if code == start_code:
                    self._flow.fire(started, remote=True)
                    assert self.msid is not None  # set before play or publish was sent
                    return event(self.msid)
                if level == status.LEVEL_ERROR:
                    self._flow.fire(ClientInput.STREAM_FAILED, remote=True)
                    return PublishFailed(code, description)
            return StatusEvent(code, level, description)
        return UnknownCommand(name, tid, raw.msid, cmd.command_object, cmd.args)

    def _request_play(self, msid: int) -> None:
        # As ffmpeg plays: start -2000 (live, else recorded), then a 3 s buffer length.
        self._send_command(
            "play", self._publish_tid, None, self.stream_name, -2000.0, msid=msid, csid=CSID_STREAM
        )
        self._send_control(msg.USER_CONTROL, msg.user_control(msg.SET_BUFFER_LENGTH, msid, 3000))
        self._flow.fire(ClientInput.CREATED_TO_PLAY, remote=True)

    @property
    def playing(self) -> bool:
        """True after :class:`PlayStarted`."""
        return self._flow.state is ClientState.PLAYING

    def _on_media(self, raw: RawMessage) -> Event | None:
        if self._play and self._flow.state in (ClientState.PLAY_REQUESTED, ClientState.PLAYING):
            return self._media_event(raw)
        return UnhandledMessage(raw.type_id, raw.msid, raw.timestamp, raw.payload)

    def media_bytes(self, type_id: int, timestamp: int, payload: bytes) -> bytes:
        """Serialize an audio (8), video (9) or data (18) message for the published stream.

        Pure: nothing is queued, the caller writes the result. It depends only on the arguments,
        :attr:`chunk_size` and :attr:`msid`, so one copy can be cached per ``(chunk_size, msid)``
        and shared by every push with the same pair.
        """
        if self._flow.state is not ClientState.PUBLISHING or self.msid is None:
            raise LocalProtocolError(f"not publishing (state: {self._flow.state.value})")
        csid = MEDIA_CSID.get(type_id)
        if csid is None:
            raise LocalProtocolError(f"message type {type_id} is not audio, video or data")
        return encode_message(csid, type_id, self.msid, timestamp, payload, self.chunk_size)

    def unpublish(self) -> None:
        """Queue ``FCUnpublish`` and ``deleteStream`` (what ffmpeg sends at the end)."""
        if self._flow.state is not ClientState.PUBLISHING or self.msid is None:
            raise LocalProtocolError(f"not publishing (state: {self._flow.state.value})")
        self._send_command("FCUnpublish", self._next_tid(), None, self.stream_name)
        self._send_command("deleteStream", self._next_tid(), None, float(self.msid))
        self._flow.fire(ClientInput.UNPUBLISH, remote=False)
