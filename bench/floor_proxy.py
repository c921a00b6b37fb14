"""The floor under any relay written on asyncio + uvloop: forward bytes, on the relay's cadence.

    python -m bench.floor_proxy LISTEN_PORT UPSTREAM_PORT BATCH_SECONDS

Each connection that arrives on ``LISTEN_PORT`` (127.0.0.1) is joined to a new connection to
``UPSTREAM_PORT``, and bytes go both ways unparsed. Reading from the arriving side rests between
reads until the next boundary of the same shared clock ``simulcast serve``'s ingest rests on
(``simulcast.ingest.batch_clock``; ``bench.relay`` passes ``relay_batch_seconds``' default), so it
wakes as often as the relay does and writes what it read in one go, as the relay's push does.

``bench.relay --systems floor`` puts it between a publisher and the sink at N=1: a relay of one
destination that does no work of its own. What ``simulcast serve`` spends above it is its own
work (RTMP parsing, the media graph, muxing, status); nothing in Python on this event loop at this
cadence spends less.
"""

from __future__ import annotations

import asyncio
import sys
from typing import cast

import uvloop

from simulcast.ingest.batch_clock import rest_until


class Upstream(asyncio.Protocol):
    """The connection to the upstream: what it sends goes back to the arriving side as is."""

    def __init__(self, arriving: Arriving) -> None:
        self.arriving = arriving
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        self.arriving.write(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.arriving.close()


class Arriving(asyncio.Protocol):
    """An arriving connection: read in batches, each written upstream in one go."""

    def __init__(self, upstream_port: int, batch_seconds: float) -> None:
        self.upstream_port = upstream_port
        self.batch_seconds = batch_seconds
        self.transport: asyncio.Transport | None = None
        self.upstream: Upstream | None = None
        self.early: list[bytes] = []  # what arrived before the upstream connection was up
        self.loop = asyncio.get_running_loop()
        self.connecting: asyncio.Task[None] | None = None  # held: the loop keeps weak refs

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self.connecting = self.loop.create_task(self.connect())

    async def connect(self) -> None:
        _, upstream = await self.loop.create_connection(
            lambda: Upstream(self), "127.0.0.1", self.upstream_port
        )
        self.upstream = upstream
        if self.early and upstream.transport is not None:
            upstream.transport.write(b"".join(self.early))
        self.early.clear()

    def data_received(self, data: bytes) -> None:
        if self.upstream is None or self.upstream.transport is None:
            self.early.append(data)
            return
        self.upstream.transport.write(data)
        if self.batch_seconds and self.transport is not None:
            self.transport.pause_reading()
            boundary = rest_until(self.loop.time(), self.batch_seconds)
            self.loop.call_at(boundary, self.resume)

    def resume(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()

    def write(self, data: bytes) -> None:
        if self.transport is not None:
            self.transport.write(data)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.upstream is not None and self.upstream.transport is not None:
            self.upstream.transport.close()


async def serve(listen_port: int, upstream_port: int, batch_seconds: float) -> None:
    """Accept on ``listen_port`` until cancelled."""
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: Arriving(upstream_port, batch_seconds), "127.0.0.1", listen_port
    )
    await server.serve_forever()


def main() -> None:
    listen_port, upstream_port, batch_seconds = (
        int(sys.argv[1]),
        int(sys.argv[2]),
        float(sys.argv[3]),
    )
    uvloop.run(serve(listen_port, upstream_port, batch_seconds))


if __name__ == "__main__":
    main()
