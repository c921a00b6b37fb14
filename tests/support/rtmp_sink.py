"""An in-test RTMP destination built on the sans-I/O ``ServerConnection``.

It accepts one publish per connection and records every media message, or, with ``stall``,
stops reading right after accepting the publish (a destination that never reads: the pusher's
socket buffers fill and its reader must absorb the rest), or, with ``refuse_key``, refuses every
publish the way a platform refuses a wrong stream key.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from simulcast.codecs.rtmp import events as ev
from simulcast.codecs.rtmp.connection import ClientConnection, ServerConnection
from tests.support import eventually


class RtmpSink:
    """A minimal RTMP server that records ``(type_id, timestamp, payload)`` per message."""

    def __init__(self, *, stall: bool = False, refuse_key: bool = False) -> None:
        self.stall = stall
        self.refuse_key = refuse_key
        self.refused = 0
        self.messages: list[tuple[int, int, bytes]] = []
        # The same messages per published stream name (one sink serving many destinations).
        self.by_name: dict[str, list[tuple[int, int, bytes]]] = {}
        self.publishes = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.port = 0

    async def start(self) -> None:
        """Listen on a free loopback port (tiny receive buffer when stalling)."""
        sock = socket.socket()
        if self.stall:
            # Inherited by accepted sockets: keeps the kernel from absorbing megabytes for us.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        self._server = await asyncio.start_server(self._serve, sock=sock)

    def connections(self) -> int:
        """Connections still open (a pusher that has finished closes its own)."""
        return sum(1 for task in self._tasks if not task.done())

    def video_count(self) -> int:
        """Video messages received so far (sequence headers included)."""
        return sum(1 for type_id, _, _ in self.messages if type_id == 9)

    async def more_video(self, count: int, within: float = 20.0) -> None:
        """Wait until ``count`` more video messages have arrived (30 = a second of the
        publishers' 30 fps): media flowed for that long, however slow the machine."""
        target = self.video_count() + count
        await eventually(lambda: self.video_count() >= target, within)

    async def close(self) -> None:
        """Stop listening and drop every connection."""
        if self._server is not None:
            self._server.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        conn = ServerConnection()
        received: list[tuple[int, int, bytes]] = []
        try:
            while data := await reader.read(65536):
                for event in conn.receive_data(data):
                    if isinstance(event, ev.ConnectRequest):
                        conn.accept_connect()
                    elif isinstance(event, ev.CreateStream):
                        conn.accept_create_stream(event.transaction_id)
                    elif isinstance(event, ev.ReleaseStream):
                        conn.answer_result(event.transaction_id)
                    elif isinstance(event, ev.PublishCommand) and self.refuse_key:
                        conn.reject_publish(event.msid, description="Invalid stream key.")
                        self.refused += 1
                    elif isinstance(event, ev.PublishCommand):
                        conn.accept_publish(event.msid, event.stream_name)
                        self.publishes += 1
                        received = self.by_name.setdefault(event.stream_name, [])
                    elif isinstance(event, ev.MediaMessage):
                        message = (event.type_id, event.timestamp, event.payload)
                        self.messages.append(message)
                        received.append(message)
                writer.write(conn.data_to_send())
                if self.stall and conn.publishing:
                    await asyncio.Event().wait()  # never read again
        except asyncio.CancelledError:
            pass  # closed by the test; a cancelled handler would be logged by asyncio
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()


@pytest.fixture
async def rtmp_sink() -> AsyncIterator[Callable[..., Awaitable[RtmpSink]]]:
    """Start in-test destinations, ``sink = await rtmp_sink(**options)``; closed at teardown."""
    started: list[RtmpSink] = []

    async def start(**options: bool) -> RtmpSink:
        sink = RtmpSink(**options)
        await sink.start()
        started.append(sink)
        return sink

    try:
        yield start
    finally:
        for sink in started:
            await sink.close()


async def publish_raw(port: int, key: str, media: list[tuple[int, int, bytes]]) -> bytes:
    """Publish ``(type_id, timestamp, payload)`` messages with ``ClientConnection``, the way an
    encoder would, then read until the server closes; return what the server sent after publish.
    """
    conn = ClientConnection("live", f"rtmp://127.0.0.1:{port}/live", key)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    conn.initiate()
    tail = b""
    try:
        published = False
        while not published:
            writer.write(conn.data_to_send())
            data = await reader.read(65536)
            if not data:
                return b""
            published = any(isinstance(e, ev.PublishStarted) for e in conn.receive_data(data))
        for type_id, ts, payload in media:
            writer.write(conn.media_bytes(type_id, ts, payload))
        while data := await reader.read(65536):
            tail += data
    except ConnectionError:
        pass
    finally:
        writer.close()
    return tail
