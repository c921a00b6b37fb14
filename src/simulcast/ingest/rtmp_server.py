"""RTMP(S) ingest: the thin asyncio shell around the sans-I/O ``ServerConnection``.

Bytes from the socket go to ``receive_data``; the events that come back drive the publish flow
(connect -> createStream -> publish -> media); ``data_to_send`` goes back to the socket. Reading
is pulled (``StreamReader.read``), so a publisher never gets ahead of us by more than the socket
buffers. One bad connection never affects another: malformed input closes that connection with
one log line.

How a publisher leaves matters to a protected session: ``FCUnpublish``/``deleteStream``/
``closeStream`` is an explicit end; a closed or reset socket, a timeout or malformed input is a
loss, which protection rides out with a slate.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Callable
from typing import Protocol
from urllib.parse import parse_qsl

from simulcast import metrics
from simulcast.codecs import flv
from simulcast.codecs.rtmp import events as ev
from simulcast.codecs.rtmp import messages
from simulcast.codecs.rtmp.connection import ServerConnection
from simulcast.codecs.rtmp.errors import RemoteProtocolError
from simulcast.engine import PublishRefused, PublishRequest
from simulcast.media.switcher import Feed
from simulcast.media.unit import Kind, MediaUnit
from simulcast.settings import Settings

log = logging.getLogger("simulcast.ingest")

APP = "live"
_READ_SIZE = 256 * 1024
# A live publisher sends media many times a second; rtmp_publish_stall_seconds without a byte
# means it is gone (half-open TCP after a network drop would otherwise hold the stream key).
_MEDIA_KINDS = {messages.AUDIO: Kind.AUDIO, messages.VIDEO: Kind.VIDEO}


class PublishHandler(Protocol):
    """What the ingest server needs from the engine."""

    async def begin_publish(self, request: PublishRequest, kick: Callable[[], None]) -> Feed:
        """Authorize and join a session; raise ``PublishRefused``. ``kick`` disconnects it."""
        ...

    async def end_publish(self, feed: Feed, reason: str, *, explicit: bool) -> None:
        """The publisher of ``feed`` is gone: it unpublished (``explicit``) or was lost."""
        ...


class _Closed(Exception):
    """The connection is done; ``reason`` is the session end reason."""

    def __init__(self, reason: str, *, explicit: bool = True) -> None:
        super().__init__(reason)
        self.reason = reason
        self.explicit = explicit


class RtmpIngestServer:
    """Listens for RTMP (and RTMPS when a certificate is configured) publishers."""

    def __init__(self, settings: Settings, handler: PublishHandler) -> None:
        self._settings = settings
        self._handler = handler
        self._servers: list[asyncio.Server] = []
        self._connections: set[asyncio.Task[None]] = set()
        self.port: int | None = None
        """The bound RTMP port (useful with ``rtmp_port = 0``)."""
        self.tls_port: int | None = None
        """The bound RTMPS port, or ``None`` without a certificate."""

    async def start(self) -> None:
        """Start listening."""
        s = self._settings
        server = await asyncio.start_server(self._accept, s.rtmp_host, s.rtmp_port)
        self._servers.append(server)
        self.port = server.sockets[0].getsockname()[1]
        if s.rtmps_cert_file is not None and s.rtmps_key_file is not None:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(s.rtmps_cert_file, s.rtmps_key_file)
            tls = await asyncio.start_server(
                self._accept,
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
        """Stop listening; give connections ``grace`` seconds to finish, then cancel them."""
        await self.stop_listening()
        if self._connections:
            await asyncio.wait(set(self._connections), timeout=grace)
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            await _Publisher(self._settings, self._handler, reader, writer).run()
        except asyncio.CancelledError:
            pass  # server shutdown; asyncio (3.11) would log a cancelled connection callback
        finally:
            self._connections.discard(task)


class _Publisher:
    """One ingest connection."""

    def __init__(
        self,
        settings: Settings,
        handler: PublishHandler,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        self._settings = settings
        self._handler = handler
        self._reader = reader
        self._writer = writer
        peer = writer.get_extra_info("peername")
        self._peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        self._conn = ServerConnection(
            max_message_size=settings.rtmp_max_message_bytes,
            chunk_size=settings.rtmp_chunk_size,
        )
        self._feed: Feed | None = None
        self._msid = 0
        self._name = ""
        self._kicked = False

    async def run(self) -> None:
        reason = "publisher_disconnected"
        explicit = False
        try:
            await self._serve()
        except _Closed as closed:
            reason, explicit = closed.reason, closed.explicit
        except (RemoteProtocolError, flv.FlvError) as exc:
            log.warning("closing %s: malformed input: %s", self._peer, exc)
            metrics.INGEST_REJECTED.labels("malformed").inc()
            reason = "protocol_error"
        except TimeoutError:
            if self._feed is not None:  # past the handshake: a live publisher went silent
                log.warning("closing %s: publisher stalled (no data)", self._peer)
                reason = "publisher_stalled"
            else:
                log.warning("closing %s: timed out", self._peer)
                reason = "timeout"
        except (ConnectionError, ssl.SSLError) as exc:
            log.info("publisher %s disconnected: %s", self._peer, exc)
        except asyncio.CancelledError:
            reason, explicit = "server_shutdown", True
        finally:
            self._writer.close()
            if self._feed is not None:
                await self._handler.end_publish(self._feed, reason, explicit=explicit)
            with contextlib.suppress(Exception):
                await self._writer.wait_closed()

    async def _serve(self) -> None:
        # The whole way to a publish must fit in the handshake timeout; after that silence longer
        # than rtmp_publish_stall_seconds ends the connection: a network cut without FIN/RST is a
        # lost publisher, handled like a reset socket (protection takes over).
        async with asyncio.timeout(self._settings.rtmp_handshake_timeout) as deadline:
            while self._feed is None:
                await self._receive()
            deadline.reschedule(None)
        loop = asyncio.get_running_loop()
        stall = self._settings.rtmp_publish_stall_seconds
        async with asyncio.timeout(None) as idle:
            while True:
                # One timeout moved forward per read, not a new one entered for every read.
                idle.reschedule(loop.time() + stall)
                await self._receive()

    async def _receive(self) -> None:
        data = await self._reader.read(_READ_SIZE)
        if not data or self._kicked:
            raise _Closed("publisher_disconnected", explicit=self._kicked)
        metrics.BYTES_IN.inc(len(data))
        if self._feed is not None:
            self._feed.received(len(data))
        for event in self._conn.receive_data(data):
            await self._handle(event)
        await self._flush()

    async def _flush(self) -> None:
        out = self._conn.data_to_send()
        if out:
            self._writer.write(out)
            await self._writer.drain()

    async def _handle(self, event: ev.Event) -> None:
        if isinstance(event, ev.MediaMessage):
            self._media(event)
        elif isinstance(event, ev.ConnectRequest):
            if event.app.partition("?")[0].strip("/") != APP:
                self._conn.reject_connect(f"Unknown application {event.app!r}; use /{APP}")
                await self._flush()
                raise _Closed("rejected")
            self._conn.accept_connect()
        elif isinstance(event, ev.CreateStream):
            self._conn.accept_create_stream(event.transaction_id)
        elif isinstance(event, ev.ReleaseStream):
            self._conn.answer_result(event.transaction_id)
        elif isinstance(event, ev.FCPublish):
            self._conn.send_on_fcpublish(event.name)
        elif isinstance(event, ev.PublishRequest):
            await self._publish(event)
        elif isinstance(event, ev.FCUnpublish | ev.DeleteStream | ev.CloseStream):
            if self._feed is not None:
                raise _Closed("publisher_disconnected")
        elif isinstance(event, ev.UnknownCommand) and event.transaction_id:
            # A client waiting on an answer (e.g. getStreamLength) must not hang.
            self._conn.answer_error(event.transaction_id, f"{event.name} is not supported")

    async def _publish(self, event: ev.PublishRequest) -> None:
        if self._feed is not None:
            self._conn.reject_publish(event.msid, description="Already publishing")
            return
        key, _, query = event.stream_name.partition("?")
        request = PublishRequest(
            app=APP, stream_key=key, query=dict(parse_qsl(query)), remote_addr=self._peer
        )
        try:
            self._feed = await self._handler.begin_publish(request, self._kick)
        except PublishRefused as refused:
            log.info("publish refused for %s: %s", self._peer, refused.description)
            metrics.INGEST_REJECTED.labels("refused").inc()
            self._conn.reject_publish(event.msid, refused.code, refused.description)
            await self._flush()
            raise _Closed("refused") from None
        self._msid, self._name = event.msid, event.stream_name
        self._conn.accept_publish(event.msid, event.stream_name)

    def _media(self, event: ev.MediaMessage) -> None:
        if self._feed is None:
            return  # media before publish: nothing to attach it to
        kind = _MEDIA_KINDS.get(event.type_id)
        if kind is not None:
            keyframe, sequence_header = flv.classify(kind, event.payload)
            unit = MediaUnit(kind, event.timestamp, event.payload, keyframe, sequence_header)
        elif event.type_id == messages.DATA_AMF0:
            # Publishers wrap metadata as @setDataFrame(onMetaData, ...); the stream keeps the
            # bare onMetaData form (what players expect), pushes wrap it again.
            payload = messages.strip_set_data_frame(event.payload)
            unit = MediaUnit(Kind.DATA, event.timestamp, payload)
        else:
            return  # AMF3-only data has no AMF0 form to relay
        self._feed.publish(unit)

    def _kick(self) -> None:
        # Tell the publisher its stream ended (encoders show it) before closing the socket.
        self._kicked = True
        if self._msid in self._conn.publishing:
            self._conn.unpublish_notify(self._msid, self._name)
            self._writer.write(self._conn.data_to_send())
        self._writer.close()
