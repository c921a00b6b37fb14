"""An in-test RTMP destination built on the sans-I/O ``ServerConnection``.

It accepts one publish per connection and records every media message, or, with ``stall``,
stops reading right after accepting the publish (a destination that never reads: the pusher's
socket buffers fill and its reader must absorb the rest).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket

from simulcast.codecs.rtmp import events as ev
from simulcast.codecs.rtmp.connection import ClientConnection, ServerConnection


class RtmpSink:
    """A minimal RTMP server that records ``(type_id, timestamp, payload)`` per message."""

    def __init__(self, *, stall: bool = False) -> None:
        self.stall = stall
        self.messages: list[tuple[int, int, bytes]] = []
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
        try:
            while data := await reader.read(65536):
                for event in conn.receive_data(data):
                    if isinstance(event, ev.ConnectRequest):
                        conn.accept_connect()
                    elif isinstance(event, ev.CreateStream):
                        conn.accept_create_stream(event.transaction_id)
                    elif isinstance(event, ev.ReleaseStream):
                        conn.answer_result(event.transaction_id)
                    elif isinstance(event, ev.PublishRequest):
                        conn.accept_publish(event.msid, event.stream_name)
                        self.publishes += 1
                    elif isinstance(event, ev.MediaMessage):
                        self.messages.append((event.type_id, event.timestamp, event.payload))
                writer.write(conn.data_to_send())
                if self.stall and conn.publishing:
                    await asyncio.Event().wait()  # never read again
        except asyncio.CancelledError:
            pass  # closed by the test; a cancelled handler would be logged by asyncio
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()


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
