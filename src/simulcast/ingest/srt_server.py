"""SRT ingest: the thin asyncio UDP shell around the sans-I/O SRT listener and receiver.

One UDP socket serves every publisher. Datagrams to socket id 0 are handshakes (the stateless
:class:`~simulcast.codecs.srt.handshake.Listener` answers inductions and checks cookies); the
others go to the connection owning their destination socket id, and only from the address that
connected. A conclusion that passes the cookie check is authorized through the same
``PublishHandler`` as RTMP (so disconnect protection and stream shift between RTMP and SRT devices
behave the same), then answered; delivered payloads are demuxed from MPEG-TS into the hub's units.

Stream ids: ``publish:{streamKey}`` (a ``?query`` after the key is passed on, e.g. ``?shift=1``)
and the SRT access control form ``#!::r={streamKey},m=publish`` (other keys go to the query).
How a publisher leaves: SHUTDOWN is an explicit end; silence past the stall timeout, or
malformed TS, is a loss that protection rides out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import socket
import struct
from typing import cast

from simulcast import metrics
from simulcast.codecs.srt.crypto import BadSecret, Decryptor, unwrap_key_material
from simulcast.codecs.srt.handshake import ConnectRequest, Listener, RejectReason, peer_ip_field
from simulcast.codecs.srt.packet import HEADER_SIZE, ControlType, SrtError
from simulcast.codecs.srt.receiver import Receiver
from simulcast.codecs.unit import MediaUnit
from simulcast.engine import PublishRefused, PublishRequest
from simulcast.ingest.srt_receiving import SrtReceiving
from simulcast.media.sources import APP, PublishHandler
from simulcast.media.switcher import Feed
from simulcast.settings import Settings

log = logging.getLogger("simulcast.ingest.srt")

_REJECT_MEMORY_S = 5.0  # a rejected caller retransmits its conclusion: answer it the same way
_RECEIVE_BUFFER = 8 * 1024 * 1024  # the kernel caps it at net.core.rmem_max
_DEST = struct.Struct(">I")  # the destination socket id, the header's fourth word


def parse_stream_id(stream_id: str) -> tuple[str, dict[str, str]] | None:
    """``(stream key, query)`` for a publish stream id, or ``None`` if it is not one.

    >>> parse_stream_id("publish:abc?shift=1")
    ('abc', {'shift': '1'})
    >>> parse_stream_id("#!::r=abc,m=publish")
    ('abc', {})
    """
    if stream_id.startswith("#!::"):
        fields: dict[str, str] = {}
        for item in stream_id[4:].split(","):
            name, sep, value = item.partition("=")
            if not sep:
                return None
            fields[name.strip()] = value.strip()
        key = fields.pop("r", "")
        if fields.pop("m", "request") != "publish" or not key:
            return None
        fields.pop("u", None)  # user name: the key is the credential
        return key, fields
    if stream_id.startswith("publish:"):
        key, _, query = stream_id[len("publish:") :].partition("?")
        if not key:
            return None
        pairs = (p.partition("=") for p in query.split("&") if p)
        return key, {name: value for name, _, value in pairs}
    return None


def _secure(
    key_material: bytes | None, passphrase: str | None
) -> tuple[int | None, Decryptor | None, bytes | None]:
    """``(reject reason, decryptor, KMRSP)`` for a caller's key material against the stream's
    passphrase. As libsrt with enforced encryption: both sides encrypt or neither does."""
    if key_material is None and passphrase is None:
        return None, None, None
    if key_material is None or passphrase is None:
        return RejectReason.UNSECURE, None, None
    try:
        material = unwrap_key_material(key_material, passphrase)
    except BadSecret:
        return RejectReason.BADSECRET, None, None
    except SrtError:
        return RejectReason.UNSECURE, None, None  # a cipher or key size we do not speak
    return None, Decryptor(passphrase, material), material.raw


class SrtIngestServer(asyncio.DatagramProtocol):
    """Listens for SRT callers publishing MPEG-TS."""

    def __init__(self, settings: Settings, handler: PublishHandler) -> None:
        self._settings = settings
        self._handler = handler
        self._loop: asyncio.AbstractEventLoop | None = None
        self._transport: asyncio.DatagramTransport | None = None
        self._listener = Listener(secrets.token_bytes(32), 0, settings.srt_latency_ms)
        self._connections: dict[int, _SrtPublisher] = {}
        self._by_peer: dict[tuple[str, int, int], _SrtPublisher | float | bytes] = {}
        self._accepting = True
        self._authorizing: set[asyncio.Task[None]] = set()
        self.port: int | None = None
        """The bound UDP port (useful with ``srt_port = 0``)."""

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        """Bind the UDP port."""
        self._loop = asyncio.get_running_loop()
        s = self._settings
        await self._loop.create_datagram_endpoint(lambda: self, local_addr=(s.srt_host, s.srt_port))
        assert self._transport is not None
        sock = self._transport.get_extra_info("socket")
        with contextlib.suppress(OSError):
            # Every publisher shares this socket: room for bursts (and floods) between reads.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _RECEIVE_BUFFER)
        self.port = self._transport.get_extra_info("sockname")[1]
        log.info("SRT ingest on UDP port %s (latency %s ms)", self.port, s.srt_latency_ms)

    async def stop_listening(self) -> None:
        """Accept no new publishers (existing ones continue)."""
        self._accepting = False

    async def close(self, grace: float = 3.0) -> None:
        """End every connection (``server_shutdown``) and close the socket."""
        self._accepting = False
        if self._authorizing:
            await asyncio.wait(self._authorizing, timeout=grace)
        for connection in list(self._connections.values()):
            connection.close("server_shutdown", explicit=True)
        pending = [c.done for c in self._connections.values()]
        if pending:
            await asyncio.wait(pending, timeout=grace)
        if self._transport is not None:
            self._transport.close()

    @property
    def rate_limited(self) -> int:
        """Handshakes ignored because their source was over its rate."""
        return self._listener.rate_limited

    # -- asyncio.DatagramProtocol --------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Keep the transport."""
        self._transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        """Route one datagram: handshakes to the listener, the rest to their connection."""
        if len(data) < HEADER_SIZE:
            return
        dest = _DEST.unpack_from(data, 12)[0]
        if dest:
            connection = self._connections.get(dest)
            # The address as the transport gives it (an IPv6 one has two more fields).
            if connection is not None and (
                addr == connection.addr or (str(addr[0]), int(addr[1])) == connection.addr
            ):
                connection.received(data)
            return
        if data[0] & 0x80 and int.from_bytes(data[0:2], "big") & 0x7FFF == ControlType.HANDSHAKE:
            self._handshake(str(addr[0]), int(addr[1]), data)

    def error_received(self, exc: Exception) -> None:
        """ICMP errors (a publisher's port closed) show up as silence; nothing to do here."""
        log.debug("SRT socket error: %s", exc)

    # -- handshakes ----------------------------------------------------------------------------

    def _handshake(self, host: str, port: int, data: bytes) -> None:
        assert self._loop is not None
        if not self._accepting:
            return
        now = self._loop.time()
        answer = self._listener.receive(host, port, data[HEADER_SIZE:], now)
        if answer is None:
            return
        if isinstance(answer, bytes):
            self.send(answer, (host, port))
            return
        peer = (host, port, answer.socket_id)
        known = self._by_peer.get(peer)
        if isinstance(known, _SrtPublisher):
            self.send(known.accepted, (host, port))  # our answer was lost: say it again
            return
        if isinstance(known, bytes):
            self.send(known, (host, port))
            return
        if isinstance(known, float) and now - known < self._settings.rtmp_handshake_timeout:
            return  # being authorized
        self._by_peer[peer] = now
        task = self._loop.create_task(self._authorize(answer))
        self._authorizing.add(task)  # a strong reference while it runs
        task.add_done_callback(self._authorizing.discard)

    async def _authorize(self, request: ConnectRequest) -> None:
        assert self._loop is not None
        peer = (request.host, request.port, request.socket_id)
        ip = peer_ip_field(request.host)
        parsed = parse_stream_id(request.stream_id)
        reason: int | None = None
        feed: Feed | None = None
        connection: _SrtPublisher | None = None
        decryptor: Decryptor | None = None
        kmrsp: bytes | None = None
        if parsed is None:
            reason = RejectReason.BAD_REQUEST
        else:
            key, query = parsed
            publish = PublishRequest(APP, key, query, f"{request.host}:{request.port}")
            try:
                passphrase = await self._handler.srt_passphrase(publish)
            except Exception:
                log.exception("looking up the SRT passphrase of %s failed", publish.remote_addr)
                passphrase, reason = None, RejectReason.PEER
            if reason is None:
                reason, decryptor, kmrsp = _secure(request.key_material, passphrase)
                if reason is not None:
                    log.info(
                        "SRT publish refused for %s: encryption (%s)", publish.remote_addr, reason
                    )
        if reason is None and parsed is not None:
            socket_id = self._new_socket_id()
            connection = _SrtPublisher(self, request, socket_id)
            try:
                feed = await self._handler.begin_publish(publish, connection.kick)
            except PublishRefused as refused:
                log.info("SRT publish refused for %s: %s", publish.remote_addr, refused.description)
                reason = (
                    RejectReason.CONFLICT
                    if "already live" in refused.description.lower()
                    else RejectReason.FORBIDDEN
                )
            except Exception:
                log.exception("authorizing the SRT publish of %s failed", publish.remote_addr)
                reason = RejectReason.PEER
        if reason is not None or feed is None or connection is None:
            metrics.INGEST_REJECTED.labels("refused").inc()
            rejection = self._listener.reject(request, reason or RejectReason.PEER, ip)
            self._by_peer[peer] = rejection
            self._loop.call_later(_REJECT_MEMORY_S, self._by_peer.pop, peer, None)
            self.send(rejection, (request.host, request.port))
            return
        if not self._accepting:  # shutting down while the control plane answered
            await self._handler.end_publish(feed, "server_shutdown", explicit=True)
            return
        accepted = self._listener.accept(request, connection.socket_id, ip, kmrsp)
        connection.start(feed, accepted.response, accepted.latency_ms, decryptor)
        self._connections[connection.socket_id] = connection
        self._by_peer[peer] = connection
        self.send(accepted.response, (request.host, request.port))
        log.info(
            "SRT publisher %s:%s live (latency %s ms)",
            request.host,
            request.port,
            accepted.latency_ms,
        )

    def _new_socket_id(self) -> int:
        while True:
            socket_id = secrets.randbits(30) + 1
            if socket_id not in self._connections:
                return socket_id

    # -- for connections -----------------------------------------------------------------------

    def send(self, datagram: bytes, addr: tuple[str, int]) -> None:
        """Send one datagram (dropped silently if the socket is closed)."""
        if self._transport is not None and not self._transport.is_closing():
            self._transport.sendto(datagram, addr)

    def forget(self, connection: _SrtPublisher) -> None:
        """A connection ended."""
        self._connections.pop(connection.socket_id, None)
        peer = (*connection.addr, connection.peer_socket_id)
        if self._by_peer.get(peer) is connection:
            del self._by_peer[peer]

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The event loop the server runs on."""
        assert self._loop is not None
        return self._loop

    @property
    def handler(self) -> PublishHandler:
        """The engine's publish handler."""
        return self._handler

    @property
    def settings(self) -> Settings:
        """Server settings."""
        return self._settings


class _SrtPublisher(SrtReceiving):
    """One SRT publisher: its receiver, its TS demuxer and its feed into a session."""

    def __init__(self, server: SrtIngestServer, request: ConnectRequest, socket_id: int) -> None:
        super().__init__(server.loop, (request.host, request.port))
        self._server = server
        self.socket_id = socket_id
        self.peer_socket_id = request.socket_id
        self._request = request
        self.accepted = b""
        self.done: asyncio.Future[None] = self._loop.create_future()
        self._feed: Feed | None = None
        self._kicked = False
        self._unreported = 0  # bytes received, counted per batch of units (not per datagram)

    def start(
        self, feed: Feed, accepted: bytes, latency_ms: int, decryptor: Decryptor | None
    ) -> None:
        """Authorized: start receiving (decrypting with ``decryptor`` when encrypted)."""
        self._feed = feed
        self.accepted = accepted
        receiver = Receiver(
            socket_id=self.socket_id,
            peer_socket_id=self.peer_socket_id,
            isn=self._request.isn,
            latency_ms=latency_ms,
            flow_window=self._request.flow_window,
            now=self._loop.time(),
            idle_timeout=self._server.settings.rtmp_publish_stall_seconds,
            decryptor=decryptor,
        )
        self._receiver = receiver
        if self._kicked:  # kicked while being authorized (a shift raced us)
            self.close("publisher_disconnected", explicit=True)
            return
        self._begin(receiver)

    def kick(self) -> None:
        """The engine disconnects this publisher (stream shift, stop)."""
        self._kicked = True
        if self._receiver is not None:
            self.close("publisher_disconnected", explicit=True)

    def received(self, data: bytes) -> None:
        """A datagram from the publisher."""
        if self._receiver is None or self._end is not None:
            return
        self._unreported += len(data)
        if data[0] & 0x80 and int.from_bytes(data[0:2], "big") & 0x7FFF == 0:
            self._send(self.accepted)  # a late conclusion retransmission
            return
        self._receive(data)

    def close(self, reason: str, *, explicit: bool) -> None:
        """End the connection (tells the publisher) and the feed."""
        if self._end is not None:
            return
        self._end = (reason, explicit)
        self._stop()
        self._server.forget(self)
        self._report_bytes()
        if self._feed is None:
            self.done.set_result(None)
            return
        ending = self._server.handler.end_publish(self._feed, reason, explicit=explicit)
        task = self._loop.create_task(ending)
        task.add_done_callback(self._ended)

    def _ended(self, _: object) -> None:
        if not self.done.done():
            self.done.set_result(None)

    def _send(self, datagram: bytes) -> None:
        self._server.send(datagram, self.addr)

    def _report_bytes(self) -> None:
        metrics.BYTES_IN.inc(self._unreported)
        if self._feed is not None:
            self._feed.received(self._unreported)
        self._unreported = 0

    def _units(self, units: list[MediaUnit]) -> None:
        assert self._feed is not None
        self._report_bytes()
        for unit in units:
            self._feed.publish(unit)
        # Payloads come out per timer period (~10 ms): one output write per batch.
        self._feed.flush()
