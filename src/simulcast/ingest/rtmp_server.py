"""RTMP(S) ingest: the thin asyncio shell around the sans-I/O ``ServerConnection``.

Bytes from the socket go to ``receive_data``; the events that come back drive the publish flow
(connect -> createStream -> publish -> media); ``data_to_send`` goes back to the socket. Each
connection is an ``asyncio.Protocol``: media is parsed and handed to the session inside
``data_received``, with no task switch per read (a StreamReader and a moved timeout per read were
a third of the ingest's CPU in bench/relay.py). Reading pauses only while the control plane
authorizes a publish. One bad connection never affects another: malformed input closes that
connection with one log line.

How a publisher leaves matters to a protected session: ``FCUnpublish``/``deleteStream``/
``closeStream`` is an explicit end; a closed or reset socket, a timeout or malformed input is a
loss, which protection rides out with a slate.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from typing import cast
from urllib.parse import parse_qsl

from simulcast import metrics
from simulcast.closing import close_with_grace
from simulcast.codecs import flv
from simulcast.codecs.rtmp import events as ev
from simulcast.codecs.rtmp import messages
from simulcast.codecs.rtmp.connection import ServerConnection
from simulcast.codecs.rtmp.errors import RemoteProtocolError
from simulcast.codecs.unit import Kind, MediaUnit
from simulcast.engine import PublishRefused, PublishRequest
from simulcast.ingest.batch_clock import rest_until
from simulcast.media.sources import APP, PublishHandler
from simulcast.media.switcher import Feed
from simulcast.settings import Settings

log = logging.getLogger("simulcast.ingest")

# A batch this large means the publisher outruns one read per batch window: keep reading.
_FULL_BATCH_BYTES = 128 * 1024
_MEDIA_KINDS = {messages.AUDIO: Kind.AUDIO, messages.VIDEO: Kind.VIDEO}
# Our replies to a publisher are handshake bytes, command answers, acks and pongs: this much
# unsent means the peer does not read (and would make us hold whatever it provokes).
_MAX_UNSENT_REPLIES = 256 * 1024
_STALL_RECHECK_SECONDS = 0.1


class Admission:
    """What all connections share: how many are open (per address and in total) and how many
    bytes the ones not authorized yet hold. Checked on every accept and every read, cheaply."""

    def __init__(self, settings: Settings) -> None:
        self._max_total = settings.rtmp_max_connections
        self._max_per_address = settings.rtmp_max_connections_per_address
        self._max_unauthenticated_bytes = settings.rtmp_unauthenticated_total_bytes
        self.open = 0
        self._per_address: dict[str, int] = {}
        self.unauthenticated_bytes = 0

    def admit(self, address: str) -> bool:
        """Count a new connection from ``address``; ``False`` (not counted) over a limit."""
        held = self._per_address.get(address, 0)
        if self.open >= self._max_total or held >= self._max_per_address:
            return False
        self.open += 1
        self._per_address[address] = held + 1
        return True

    def release(self, address: str) -> None:
        """A connection admitted from ``address`` is gone."""
        self.open -= 1
        left = self._per_address[address] - 1
        if left:
            self._per_address[address] = left
        else:
            del self._per_address[address]

    def hold(self, delta: int) -> bool:
        """Change the bytes held for unauthorized peers; ``False`` once over the global cap."""
        self.unauthenticated_bytes += delta
        return self.unauthenticated_bytes <= self._max_unauthenticated_bytes


class RtmpIngestServer:
    """Listens for RTMP (and RTMPS when a certificate is configured) publishers."""

    def __init__(self, settings: Settings, handler: PublishHandler) -> None:
        self._settings = settings
        self._handler = handler
        self._servers: list[asyncio.Server] = []
        self._connections: set[_IngestConnection] = set()
        self.admission = Admission(settings)
        """Connection counts and bytes held before authorization (shared by all connections)."""
        self.port: int | None = None
        """The bound RTMP port (useful with ``rtmp_port = 0``)."""
        self.tls_port: int | None = None
        """The bound RTMPS port, or ``None`` without a certificate."""

    async def start(self) -> None:
        """Start listening."""
        s = self._settings
        loop = asyncio.get_running_loop()
        server = await loop.create_server(self._connection, s.rtmp_host, s.rtmp_port)
        self._servers.append(server)
        self.port = server.sockets[0].getsockname()[1]
        if s.rtmps_cert_file is not None and s.rtmps_key_file is not None:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(s.rtmps_cert_file, s.rtmps_key_file)
            tls = await loop.create_server(
                self._connection,
                s.rtmp_host,
                s.rtmps_port,
                ssl=context,
                ssl_handshake_timeout=s.rtmp_handshake_timeout,
            )
            self._servers.append(tls)
            self.tls_port = tls.sockets[0].getsockname()[1]
        log.info("RTMP ingest on port %s (RTMPS: %s)", self.port, self.tls_port)

    async def stop_listening(self) -> None:
        """Stop accepting new connections (existing ones continue)."""
        for server in self._servers:
            server.close()
        for server in self._servers:
            await server.wait_closed()
        self._servers.clear()

    async def close(self, grace: float = 3.0) -> None:
        """Stop listening; give connections ``grace`` seconds to finish, then close them."""
        await self.stop_listening()
        if self._connections:
            await asyncio.wait({c.done for c in self._connections}, timeout=grace)
        for connection in list(self._connections):
            connection.shut_down()
        await asyncio.gather(*(c.done for c in self._connections), return_exceptions=True)

    def _connection(self) -> _IngestConnection:
        return _IngestConnection(self._settings, self._handler, self._connections, self.admission)


class _IngestConnection(asyncio.Protocol):
    """One ingest connection, from handshake to the end of its publish.

    Ends once: with the first reason given to :meth:`_close` (or, for a socket that simply
    closed, ``publisher_disconnected``); ``explicit`` tells protection whether the publisher
    meant to leave (unpublish, kick, shutdown) or was lost (reset, stall, malformed input).
    """

    def __init__(
        self,
        settings: Settings,
        handler: PublishHandler,
        registry: set[_IngestConnection],
        admission: Admission,
    ) -> None:
        self._settings = settings
        self._handler = handler
        self._registry = registry
        self._admission = admission
        self._address: str | None = None  # set once admitted
        self._held = 0  # bytes counted in admission.unauthenticated_bytes
        self._closing = False
        self._finished = False  # the session was told (or there is none)
        self._loop = asyncio.get_running_loop()
        self.done: asyncio.Future[None] = self._loop.create_future()
        """Resolved when the connection is closed and its session was told."""
        self._conn = ServerConnection(
            max_message_size=settings.rtmp_max_message_bytes,
            chunk_size=settings.rtmp_chunk_size,
            max_message_size_before_publish=settings.rtmp_max_message_bytes_before_publish,
            max_chunk_size_before_publish=settings.rtmp_max_chunk_size_before_publish,
        )
        self._transport: asyncio.Transport | None = None
        self._peer = "?"
        self._feed: Feed | None = None
        self._msid = 0
        self._name = ""
        self._app = APP
        self._authorizing = False
        self._end: tuple[str, bool] | None = None
        self._last_data = 0.0
        self._stall_suspected = False
        self._timer: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[None] | None = None  # a strong reference while it runs
        self._batch_seconds = settings.relay_batch_seconds
        self._resume: asyncio.TimerHandle | None = None

    # -- asyncio.Protocol ----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Start the handshake clock: the whole way to a publish must fit in it."""
        # uvloop's transports do not subclass asyncio.Transport; they implement it.
        self._transport = cast(asyncio.Transport, transport)
        peer = self._transport.get_extra_info("peername")
        self._peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        address = str(peer[0]) if isinstance(peer, tuple) else self._peer
        if not self._admission.admit(address):
            # Refused before any parsing or logging: a flood costs an accept and a RST.
            metrics.INGEST_REJECTED.labels("connection_limit").inc()
            self._end = ("refused", True)
            self._transport.abort()
            return
        self._address = address
        self._registry.add(self)
        self._timer = self._loop.call_later(
            self._settings.rtmp_handshake_timeout, self._handshake_timed_out
        )

    def data_received(self, data: bytes) -> None:
        """Parse what arrived and act on it; media goes to the session synchronously."""
        if self._end is not None:
            return
        self._last_data = self._loop.time()
        metrics.BYTES_IN.inc(len(data))
        if self._feed is not None:
            self._feed.received(len(data))
        # Buffering only; parse errors surface in _process (which then closes us, so no more
        # data reaches a connection that has failed).
        self._conn.receive_data(data)
        self._process()
        self._end_batch(len(data))

    def eof_received(self) -> bool | None:
        """The publisher half-closed: treat as gone (close our side too, within the grace)."""
        self._close("publisher_disconnected", explicit=False)  # lost, not left
        return True  # our close, not asyncio's (which would wait on a peer that never reads)

    def connection_lost(self, exc: Exception | None) -> None:
        """Tell the session (once any publish authorization in flight has returned)."""
        if exc is not None and self._end is None:
            log.info("publisher %s disconnected: %s", self._peer, exc)
        if self._end is None:
            self._end = ("publisher_disconnected", False)  # lost, not left
        if self._timer is not None:
            self._timer.cancel()
        if self._resume is not None:
            self._resume.cancel()
        self._hold(0)
        if self._address is not None:
            self._admission.release(self._address)
            self._address = None
        if not self._authorizing:
            self._finish()

    # -- commands from the server and the engine -------------------------------------------------

    def shut_down(self) -> None:
        """Server shutdown: end the session explicitly."""
        self._close("server_shutdown", explicit=True)

    def _kick(self) -> None:
        # Tell the publisher its stream ended (encoders show it) before closing the socket.
        if self._msid in self._conn.publishing:
            self._conn.unpublish_notify(self._msid, self._name)
            self._flush()
        self._close("publisher_disconnected", explicit=True)

    # -- internals ---------------------------------------------------------------------------

    def _process(self) -> None:
        try:
            while not self._authorizing and self._end is None:
                event = self._conn.next_event()
                if event is None:
                    break
                self._handle(event)
        except (RemoteProtocolError, flv.FlvError) as exc:
            self._malformed(exc)
            return
        self._flush()
        if self._feed is None and self._end is None:
            self._check_held()

    def _check_held(self) -> None:
        # Before authorization the peer is a stranger: bound what it makes us hold, alone and
        # together with every other stranger. (While authorizing, reading is paused and at most
        # one read waits unparsed.)
        held = self._conn.buffered_bytes
        if not self._hold(held) or (
            not self._authorizing and held > self._settings.rtmp_unauthenticated_buffer_bytes
        ):
            log.warning("closing %s: too much buffered before publish", self._peer)
            metrics.INGEST_REJECTED.labels("buffer_limit").inc()
            self._close("protocol_error", explicit=False)
            self._hold(0)

    def _hold(self, held: int) -> bool:
        """Account ``held`` bytes as this connection's share of the unauthorized total."""
        within = self._admission.hold(held - self._held)
        self._held = held
        return within

    def _end_batch(self, nbytes: int) -> None:
        # Each read is one batch: outputs write it in one go, and reading rests for the batch
        # window so the next read gathers ~window of media (a wake-up per read, ~100 a second
        # per publisher, dominated the relay's CPU). Ended here, not in a later callback of
        # the loop: that callback cost one more loop iteration (an epoll_pwait and a handle)
        # per batch, and what a window gathers (~30 KB at 5 Mb/s) fits in one of uvloop's
        # reads (a 256 KB buffer).
        full = nbytes >= _FULL_BATCH_BYTES
        if self._feed is None:
            return
        self._feed.flush()
        if self._batch_seconds and not full and self._end is None and self._resume is None:
            assert self._transport is not None
            self._transport.pause_reading()
            # Rest until the next boundary of a clock every publisher shares: their reads then
            # fall in the same loop iteration (one wake-up for all streams, not one per stream),
            # and none rests longer than the window.
            boundary = rest_until(self._loop.time(), self._batch_seconds)
            self._resume = self._loop.call_at(boundary, self._resume_reading)

    def _resume_reading(self) -> None:
        self._resume = None
        if self._end is None and self._transport is not None:
            self._transport.resume_reading()

    def _flush(self) -> None:
        out = self._conn.data_to_send()
        transport = self._transport
        if out and transport is not None and not transport.is_closing():
            transport.write(out)
            if transport.get_write_buffer_size() > _MAX_UNSENT_REPLIES and not self._closing:
                log.warning("closing %s: it does not read our replies", self._peer)
                self._close("protocol_error", explicit=False)

    def _handle(self, event: ev.Event) -> None:
        if isinstance(event, ev.MediaMessage):
            self._media(event)
        elif isinstance(event, ev.ConnectRequest):
            app = event.app.partition("?")[0].strip("/")
            if not self._handler.accepts_app(app):
                self._conn.reject_connect(f"Unknown application {event.app!r}; use /{APP}")
                self._flush()
                self._close("rejected", explicit=True)
                return
            self._app = app
            self._conn.accept_connect()
        elif isinstance(event, ev.CreateStream):
            self._conn.accept_create_stream(event.transaction_id)
        elif isinstance(event, ev.ReleaseStream):
            self._conn.answer_result(event.transaction_id)
        elif isinstance(event, ev.FCPublish):
            self._conn.send_on_fcpublish(event.name)
        elif isinstance(event, ev.PublishCommand):
            self._begin_publish(event)
        elif isinstance(event, ev.FCUnpublish | ev.DeleteStream | ev.CloseStream):
            if self._feed is not None:
                self._close("publisher_disconnected", explicit=True)
        elif isinstance(event, ev.UnknownCommand) and event.transaction_id:
            # A client waiting on an answer (e.g. getStreamLength) must not hang.
            self._conn.answer_error(event.transaction_id, f"{event.name} is not supported")

    def _begin_publish(self, event: ev.PublishCommand) -> None:
        if self._feed is not None:
            self._conn.reject_publish(event.msid, description="Already publishing")
            return
        # Events after this one wait (reading pauses) until the control plane has answered.
        self._authorizing = True
        assert self._transport is not None
        self._transport.pause_reading()
        self._task = self._loop.create_task(self._authorize(event))

    async def _authorize(self, event: ev.PublishCommand) -> None:
        key, _, query = event.stream_name.partition("?")
        request = PublishRequest(
            app=self._app, stream_key=key, query=dict(parse_qsl(query)), remote_addr=self._peer
        )
        try:
            self._feed = await self._handler.begin_publish(request, self._kick)
        except PublishRefused as refused:
            log.info("publish refused for %s: %s", self._peer, refused.description)
            metrics.INGEST_REJECTED.labels("refused").inc()
            self._conn.reject_publish(event.msid, refused.code, refused.description)
            self._flush()
            self._close("refused", explicit=True)
        except Exception:
            log.exception("authorizing the publish of %s failed", self._peer)
            self._close("refused", explicit=True)
        finally:
            self._authorizing = False
        if self._end is not None:
            self._finish()  # gone or closed while we waited (a granted feed is ended at once)
            return
        if self._feed is None:
            return
        self._hold(0)  # authorized: the post-publish limits apply from here
        self._msid, self._name = event.msid, event.stream_name
        self._conn.accept_publish(event.msid, event.stream_name)
        self._watch_for_stall()
        assert self._transport is not None
        self._transport.resume_reading()
        self._process()

    def _watch_for_stall(self) -> None:
        # A live publisher sends media many times a second; this long without a byte means it
        # is gone (half-open TCP after a network cut would otherwise hold the stream key). One
        # timer per stall period, not one moved per read.
        if self._timer is not None:
            self._timer.cancel()
        self._last_data = self._loop.time()
        self._timer = self._loop.call_at(
            self._last_data + self._settings.rtmp_publish_stall_seconds, self._check_stall
        )

    def _check_stall(self) -> None:
        deadline = self._last_data + self._settings.rtmp_publish_stall_seconds
        if self._loop.time() < deadline:
            self._stall_suspected = False
            self._timer = self._loop.call_at(deadline, self._check_stall)
            return
        if not self._stall_suspected:
            # A busy loop runs this check before it reads what came meanwhile (timers that are
            # due run before the next poll, and a batch's rest may have just ended): judge only
            # after the loop has had a turn at reading.
            self._stall_suspected = True
            self._timer = self._loop.call_later(_STALL_RECHECK_SECONDS, self._check_stall)
            return
        log.warning("closing %s: publisher stalled (no data)", self._peer)
        self._close("publisher_stalled", explicit=False)

    def _handshake_timed_out(self) -> None:
        if self._feed is None:
            log.warning("closing %s: timed out", self._peer)
            self._close("timeout", explicit=False)

    def _malformed(self, exc: Exception) -> None:
        log.warning("closing %s: malformed input: %s", self._peer, exc)
        metrics.INGEST_REJECTED.labels("malformed").inc()
        self._close("protocol_error", explicit=False)

    def _close(self, reason: str, *, explicit: bool) -> None:
        if self._end is None:
            self._end = (reason, explicit)
        if not self._authorizing:
            # The session hears now, not when the socket is gone: a publisher that re-publishes
            # at once finds its old session already ending.
            self._finish()
        transport = self._transport
        if transport is None or self._closing:
            return
        self._closing = True
        self._flush()  # answers already queued (e.g. Publish.Start before a deleteStream)
        # connection_lost follows once the replies are sent, or the grace is over.
        close_with_grace(transport, self._settings.close_grace_seconds)

    def _finish(self) -> None:
        if self._finished or self._end is None:
            return
        self._finished = True
        reason, explicit = self._end
        if self._feed is None:
            self._done()
            return
        ending = self._handler.end_publish(self._feed, reason, explicit=explicit)
        self._task = self._loop.create_task(ending)
        self._task.add_done_callback(lambda _: self._done())

    def _done(self) -> None:
        self._registry.discard(self)
        if not self.done.done():
            self.done.set_result(None)

    def _media(self, event: ev.MediaMessage) -> None:
        if self._feed is None:
            return  # media before publish: nothing to attach it to
        unit = media_unit(event)
        if unit is not None:
            self._feed.publish(unit)


def media_unit(event: ev.MediaMessage) -> MediaUnit | None:
    """The media unit of one received RTMP media message (``None``: nothing to relay).

    Raises ``flv.FlvError`` for a malformed audio/video body.
    """
    kind = _MEDIA_KINDS.get(event.type_id)
    if kind is not None:
        keyframe, sequence_header = flv.classify(kind, event.payload)
        return MediaUnit(kind, event.timestamp, event.payload, keyframe, sequence_header)
    if event.type_id == messages.DATA_AMF0:
        # Publishers wrap metadata as @setDataFrame(onMetaData, ...); the stream keeps the
        # bare onMetaData form (what players expect), pushes wrap it again. Servers a pull
        # plays from send the bare form already (stripping is then a no-op).
        payload = messages.strip_set_data_frame(event.payload)
        return MediaUnit(Kind.DATA, event.timestamp, payload)
    return None  # AMF3-only data has no AMF0 form to relay
