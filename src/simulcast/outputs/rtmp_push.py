"""RTMP/RTMPS push to one destination: the thin asyncio shell around ``ClientConnection``.

Every unit is serialized once per ``(chunk size, message stream id, chunk stream id)`` and
cached on the unit, so N pushes with the same negotiated parameters write the same ``bytes``
object. Timestamps are the session's own (not rebased per connection) precisely so that cache
can be shared; servers accept a publish whose first timestamp is not zero.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from pathlib import Path

from simulcast.closing import close_writer
from simulcast.codecs.rtmp import events as ev
from simulcast.codecs.rtmp import messages
from simulcast.codecs.rtmp.connection import ClientConnection
from simulcast.codecs.rtmp.url import parse_rtmp_url
from simulcast.codecs.unit import Kind, MediaUnit
from simulcast.dialing import dial
from simulcast.media.output import Output, OutputFailed, OutputLink, OutputRejected
from simulcast.media.reader import Reader, ReaderClosed, is_metadata

_READ_SIZE = 64 * 1024
_LINGER_S = 1.5
_WRITE_HIGH_WATER = 256 * 1024
_KERNEL_UNSENT = 128 * 1024
_BATCH = 64
_CSID = {Kind.AUDIO: 6, Kind.VIDEO: 7, Kind.DATA: 5}  # as ClientConnection / nginx-rtmp use


class PushRejected(OutputRejected):
    """The destination refused ``connect`` or ``publish``, or ended the publish."""


class RtmpPush(Output):
    """One attempt at publishing a session to an RTMP(S) URL (see :class:`Output`)."""

    def __init__(
        self,
        url: str,
        *,
        chunk_size: int = 4096,
        ca_file: Path | None = None,
        connect_timeout: float = 10.0,
        write_stall_seconds: float = 10.0,
        close_grace_seconds: float = 1.0,
    ) -> None:
        self._url = url
        self._chunk_size = chunk_size
        self._ca_file = ca_file
        self._connect_timeout = connect_timeout
        # A destination that has not taken a byte for this long is treated as gone and
        # reconnected; until then its reader absorbs (and drops) what it cannot take.
        self._write_stall = write_stall_seconds
        self._close_grace = close_grace_seconds

    async def run(self, reader: Reader, link: OutputLink) -> None:
        """Connect, publish, then relay ``reader`` until it closes or the destination fails."""
        try:
            target = parse_rtmp_url(self._url)
        except ValueError as exc:
            raise OutputFailed(str(exc)) from None  # no retry can fix a URL
        conn = ClientConnection(
            target.app, target.tc_url, target.stream_key, chunk_size=self._chunk_size
        )
        sock_reader, writer = await dial(
            target.host,
            target.port,
            tls=target.tls,
            seconds=self._connect_timeout,
            ca_file=self._ca_file,
        )
        try:
            writer.transport.set_write_buffer_limits(high=_WRITE_HIGH_WATER)
            _limit_unsent(writer)
            try:
                async with asyncio.timeout(self._connect_timeout):
                    await self._publish(conn, sock_reader, writer)
            except TimeoutError:
                raise ConnectionError("destination did not answer the publish") from None
            link.connected()
            await self._relay(conn, reader, sock_reader, writer, link)
        finally:
            # Never wait for a frozen destination to read what is still buffered.
            await close_writer(writer, self._close_grace)

    async def _publish(
        self, conn: ClientConnection, sock: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        conn.initiate()
        while True:
            writer.write(conn.data_to_send())
            await writer.drain()
            data = await sock.read(_READ_SIZE)
            if not data:
                raise ConnectionError("destination closed the connection while connecting")
            for event in conn.receive_data(data):
                if isinstance(event, ev.ConnectFailed | ev.PublishFailed):
                    raise PushRejected(f"{event.code}: {event.description}".strip(": "))
                if isinstance(event, ev.PublishStarted):
                    writer.write(conn.data_to_send())
                    return

    async def _relay(
        self,
        conn: ClientConnection,
        reader: Reader,
        sock: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        link: OutputLink,
    ) -> None:
        # The destination still talks (acks, pings, onStatus errors): listen while sending.
        listener = asyncio.create_task(self._listen(conn, sock, writer))
        sender = asyncio.create_task(self._send(conn, reader, writer, link))
        try:
            done, _ = await asyncio.wait({listener, sender}, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()  # re-raise the failure that ended the attempt
        finally:
            for task in (listener, sender):
                task.cancel()
            await asyncio.gather(listener, sender, return_exceptions=True)
        # The stream ended: say goodbye like ffmpeg does, then close gracefully.
        conn.unpublish()
        writer.write(conn.data_to_send())
        await _linger(sock, writer)

    async def _listen(
        self, conn: ClientConnection, sock: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        while True:
            data = await sock.read(_READ_SIZE)
            if not data:
                raise ConnectionError("destination closed the connection")
            for event in conn.receive_data(data):
                if isinstance(event, ev.StatusEvent) and event.level == "error":
                    raise PushRejected(f"{event.code}: {event.description}".strip(": "))
            out = conn.data_to_send()
            if out:
                writer.write(out)  # acks and pongs: tiny, drained by the sender

    async def _send(
        self,
        conn: ClientConnection,
        reader: Reader,
        writer: asyncio.StreamWriter,
        link: OutputLink,
    ) -> None:
        direct = _DirectWriter(conn, writer, link)
        reader.set_sink(direct)
        try:
            while True:
                # Wakes only when units were queued: the sink refused them (socket backed up)
                # or the reader was primed with the GOP cache when the connection went live.
                try:
                    batch = await reader.get_batch(_BATCH)
                except ReaderClosed:
                    direct.flush()
                    return
                # Behind what the sink took: one write, in order.
                for unit in batch:
                    direct.take(unit)
                if writer.is_closing():
                    raise ConnectionResetError("destination closed the connection")
                direct.flush()
                # Only a backed-up socket needs waiting for; arming a timeout for every batch of
                # every destination was a measurable share of the relay's CPU (bench/relay.py).
                if writer.transport.get_write_buffer_size():
                    try:
                        async with asyncio.timeout(self._write_stall):
                            await writer.drain()
                    except TimeoutError:
                        raise ConnectionError("write stalled") from None
        finally:
            reader.set_sink(None)


class _DirectWriter:
    """Every byte of media this push writes: as the reader's sink it takes units inside the
    publisher's ``push``, with no task switch; the sender task adds what the reader queued.

    What arrives in one batch (one read of the publisher's socket, see ``relay_batch_seconds``)
    goes out in one write, one syscall, at the batch's end. Refuses units while the socket is
    backed up, so they queue in the reader (bounded, with its drop policy) and the sender task
    takes over until the destination catches up.
    """

    def __init__(
        self, conn: ClientConnection, writer: asyncio.StreamWriter, link: OutputLink
    ) -> None:
        self._conn = conn
        self._transport = writer.transport
        self._link = link
        self._pending: list[bytes] = []
        self._pending_bytes = 0
        self._open: bool | None = None  # the socket's verdict for this batch (None: not asked)
        # The wire cache keys of this connection, per kind: its chunk size and stream id are
        # fixed once it publishes.
        self._keys = {
            kind: ("rtmp", conn.chunk_size, conn.msid, csid) for kind, csid in _CSID.items()
        }

    def offer(self, unit: MediaUnit) -> bool:
        """Take ``unit`` for the next write, or refuse it while the socket is backed up."""
        # Asked once per batch: nothing is written (and nothing drains) until the batch's
        # flush, so the answer cannot change within it; asking per unit per destination was a
        # measurable share of the fan-out (bench/relay.py).
        is_open = self._open
        if is_open is None:
            transport = self._transport
            is_open = self._open = not transport.is_closing() and (
                transport.get_write_buffer_size() < _WRITE_HIGH_WATER
            )
        if not is_open:
            return False
        self.take(unit)
        if self._pending_bytes >= _WRITE_HIGH_WATER:
            self.flush()
        return True

    def take(self, unit: MediaUnit) -> None:
        """Add ``unit`` to the next write, unconditionally (the sender task's queued units)."""
        data = _wire(self._conn, self._keys[unit.kind], unit)
        self._pending.append(data)
        self._pending_bytes += len(data)

    def flush(self) -> None:
        """Write what was taken and not written yet."""
        self._open = None
        pending, nbytes = self._pending, self._pending_bytes
        if not pending:
            return
        self._pending = []
        self._pending_bytes = 0
        if not self._transport.is_closing():
            # The shared serialized bytes themselves, gathered by one writev (uvloop) rather
            # than copied into a per-destination buffer.
            self._transport.writelines(pending)
            self._link.sent(nbytes)


def _limit_unsent(writer: asyncio.StreamWriter) -> None:
    # The kernel would otherwise queue megabytes for a destination that stopped reading, which
    # both delays noticing the stall and sends stale media when it wakes (Linux only).
    lowat = getattr(socket, "TCP_NOTSENT_LOWAT", None)
    sock = writer.get_extra_info("socket")
    if lowat is not None and sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, lowat, _KERNEL_UNSENT)


async def _linger(sock: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Half-close and read until the destination closes too (bounded by ``_LINGER_S``).

    Closing a socket whose receive buffer holds unread bytes (the destination's late acks)
    sends a RST, and a RST makes the destination discard what it had not read yet: the tail of
    the stream. Sending FIN and draining its answers first delivers every byte.
    """
    with contextlib.suppress(TimeoutError, ConnectionError, ssl.SSLError):
        async with asyncio.timeout(_LINGER_S):
            await writer.drain()
            if writer.can_write_eof():
                writer.write_eof()
            while await sock.read(_READ_SIZE):
                pass


def _wire(conn: ClientConnection, key: tuple[object, ...], unit: MediaUnit) -> bytes:
    """The unit's RTMP bytes for this connection (whose cache key for the unit's kind is
    ``key``), serialized once and shared through the cache."""
    data = unit.wire.get(key)
    if data is None:
        payload = unit.payload
        if is_metadata(unit):
            payload = messages.add_set_data_frame(payload)  # as ffmpeg publishes metadata
        data = unit.wire[key] = conn.media_bytes(int(unit.kind), unit.timestamp, payload)
    return data
