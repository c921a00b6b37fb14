"""SRT pull: call an SRT listener (caller mode) and publish what it sends into an instance input.

``pullUrl: srt://host:port?streamid=...&passphrase=...&pbkeylen=16&latency=200`` (``latency``
in milliseconds, as libsrt's URIs and srt-live-transmit take it). The thin asyncio shell around
the sans-I/O :class:`~simulcast.codecs.srt.caller.Caller` (handshake) and the same receiving
connection the SRT listener uses (reliability, TSBPD, decryption, MPEG-TS demux). Like the RTMP
pull, each connection is one publisher of the input: when it ends the input is down and the pull
calls again with the push backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from typing import cast
from urllib.parse import parse_qs, urlsplit

from simulcast import metrics
from simulcast.codecs.srt.caller import RETRY_S, Caller, Connected, Refused
from simulcast.codecs.srt.packet import SrtError
from simulcast.codecs.srt.receiver import Receiver
from simulcast.codecs.unit import MediaUnit
from simulcast.ingest.pull import PullTiming, ReconnectingPull
from simulcast.ingest.srt_receiving import SrtReceiving
from simulcast.media.output import OutputFailed
from simulcast.media.sources import PullTarget
from simulcast.media.switcher import Feed

log = logging.getLogger("simulcast.pull")


class SrtPullError(Exception):
    """A connection attempt that failed (refused, unanswered)."""


def parse_srt_url(url: str, default_latency_ms: int) -> tuple[str, int, Caller]:
    """``(host, port, caller)`` for a ``pullUrl``; raises :class:`OutputFailed` if unusable."""
    parts = urlsplit(url)
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    try:
        port = parts.port
        latency = int(query.get("latency", default_latency_ms))
        key_len = int(query.get("pbkeylen", "16"))
        if parts.scheme.lower() != "srt" or not parts.hostname or not port:
            raise ValueError("an srt://host:port URL is needed")
        caller = Caller(
            secrets.randbits(30) + 1,
            secrets.randbits(31),
            min(max(latency, 20), 4000),
            query.get("streamid", ""),
            query.get("passphrase", ""),
            key_len,
        )
    except (ValueError, SrtError) as exc:
        raise OutputFailed(f"bad SRT pull URL: {exc}") from None
    return parts.hostname, port, caller


class SrtPull(ReconnectingPull):
    """Calls ``url`` and feeds ``target`` until stopped, calling again when the source drops."""

    label = "SRT pull"
    fatal = (OutputFailed,)
    retried = (OSError, TimeoutError, SrtPullError)

    def __init__(
        self, url: str, target: PullTarget, timing: PullTiming, *, latency_ms: int
    ) -> None:
        super().__init__(url, target, timing)
        self._latency = latency_ms

    def _masked(self) -> str:
        return _masked(self.url)

    async def _connect(self) -> bool:
        """One connection; ``True`` if media flowed."""
        host, port, caller = parse_srt_url(self.url, self._latency)
        loop = asyncio.get_running_loop()
        transport, connection = await loop.create_datagram_endpoint(
            lambda: _PullConnection(loop, (host, port), caller, self._target, self._stall),
            remote_addr=(host, port),
        )
        try:
            async with asyncio.timeout(self._connect_timeout):
                while not connection.connected.done():
                    transport.sendto(caller.request())
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(asyncio.shield(connection.connected), RETRY_S)
            refused = connection.connected.result()
            if refused is not None:
                raise SrtPullError(f"the SRT listener refused the call (reject code {refused})")
            await connection.done
            return connection.fed
        finally:
            connection.close("pull_stopped", explicit=True)
            transport.close()


class _PullConnection(SrtReceiving, asyncio.DatagramProtocol):
    """One call: the handshake, then receiving into the input."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        addr: tuple[str, int],
        caller: Caller,
        target: PullTarget,
        stall_seconds: float,
    ) -> None:
        super().__init__(loop, addr)
        self._caller = caller
        self._target = target
        self._stall = stall_seconds
        self._transport: asyncio.DatagramTransport | None = None
        self._feed: Feed | None = None
        self.fed = False
        self.connected: asyncio.Future[int | None] = loop.create_future()
        """Settles with ``None`` once connected, or the listener's reject reason."""
        self.done: asyncio.Future[None] = loop.create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Keep the transport."""
        self._transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        """The handshake's answers, then the stream."""
        if self._receiver is not None:
            metrics.BYTES_IN.inc(len(data))
            if self._feed is not None:
                self._feed.received(len(data))
            self._receive(data)
            return
        if self.connected.done():
            return
        answer = self._caller.receive(data)
        if isinstance(answer, Refused):
            self.connected.set_result(answer.reason)
        elif isinstance(answer, Connected):
            self._begin(
                Receiver(
                    socket_id=self._caller.socket_id,
                    peer_socket_id=answer.peer_socket_id,
                    isn=answer.isn,
                    latency_ms=answer.latency_ms,
                    flow_window=answer.flow_window,
                    now=self._loop.time(),
                    idle_timeout=self._stall,
                    decryptor=answer.decryptor,
                )
            )
            self.connected.set_result(None)
            log.info("SRT pull from %s:%s connected (latency %s ms)", *self.addr, answer.latency_ms)

    def error_received(self, exc: Exception) -> None:
        """Nothing listens there (ICMP port unreachable): the retry loop times out."""
        log.debug("SRT pull %s:%s: %s", *self.addr, exc)

    def close(self, reason: str, *, explicit: bool) -> None:
        """End the call (tells the source) and leave the input."""
        if self._end is not None:
            return
        self._end = (reason, explicit)
        self._stop()
        feed, self._feed = self._feed, None
        if feed is not None:
            self._target.detach(feed, "source_unpublished" if explicit else "pull_disconnected")
        if not self.done.done():
            self.done.set_result(None)

    def _kick(self) -> None:
        self.close("pull_disconnected", explicit=True)

    def _send(self, datagram: bytes) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.sendto(datagram)

    def _units(self, units: list[MediaUnit]) -> None:
        if self._feed is None:
            # The source is on air once media flows.
            self._feed = self._target.attach(self._kick)
            self.fed = True
        for unit in units:
            self._feed.publish(unit)
        self._feed.flush()


def _masked(url: str) -> str:
    """``url`` without its query (the stream id and passphrase are secrets), for logs."""
    return url.partition("?")[0]
