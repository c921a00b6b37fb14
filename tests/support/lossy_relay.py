"""A UDP relay between one SRT caller and the server that loses, delays and reorders datagrams.

Each datagram, in either direction, is dropped with probability ``loss`` and otherwise sent after
a uniformly random delay in ``[0, jitter]`` seconds (so later datagrams overtake earlier ones:
reordering). Seeded, so a run is reproducible.
"""

from __future__ import annotations

import asyncio
import random
from typing import cast

from simulcast.codecs.srt.packet import ControlPacket, ControlType, SrtError, parse


class LossyRelay(asyncio.DatagramProtocol):
    """Listens on a loopback UDP port; forwards to ``target`` through one upstream socket."""

    def __init__(self, target: tuple[str, int], loss: float, jitter: float, seed: int = 7) -> None:
        self._target = target
        self._loss = loss
        self._jitter = jitter
        self._random = random.Random(seed)
        self._transport: asyncio.DatagramTransport | None = None
        self._upstream: asyncio.DatagramTransport | None = None
        self._client: tuple[str, int] | None = None
        self.port = 0
        self.forwarded = 0
        self.dropped = 0
        self.lost_shutdown = False
        """Whether the caller's SHUTDOWN was among the datagrams lost (a caller sends it once:
        the server then sees only silence)."""

    async def start(self) -> None:
        """Bind the listening and the upstream sockets."""
        loop = asyncio.get_running_loop()
        await loop.create_datagram_endpoint(lambda: self, local_addr=("127.0.0.1", 0))
        assert self._transport is not None
        self.port = self._transport.get_extra_info("sockname")[1]
        upstream, _ = await loop.create_datagram_endpoint(
            lambda: _Upstream(self), local_addr=("127.0.0.1", 0)
        )
        self._upstream = upstream

    def cut(self) -> None:
        """Lose everything from now on, both ways (a network cut)."""
        self._loss = 1.0

    def close(self) -> None:
        """Close both sockets."""
        for transport in (self._transport, self._upstream):
            if transport is not None:
                transport.close()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        self._client = (str(addr[0]), int(addr[1]))
        if not self._forward(data, self._upstream, self._target) and _is_shutdown(data):
            self.lost_shutdown = True

    def from_server(self, data: bytes) -> None:
        """A datagram from the server, for the caller."""
        if self._client is not None:
            self._forward(data, self._transport, self._client)

    def _forward(
        self, data: bytes, via: asyncio.DatagramTransport | None, to: tuple[str, int]
    ) -> bool:
        """Send ``data`` on (after its delay) or lose it; whether it was sent."""
        if via is None:
            return False
        if self._random.random() < self._loss:
            self.dropped += 1
            return False
        self.forwarded += 1
        delay = self._random.uniform(0, self._jitter)
        if delay:
            asyncio.get_running_loop().call_later(delay, self._send, via, data, to)
        else:
            self._send(via, data, to)
        return True

    @staticmethod
    def _send(via: asyncio.DatagramTransport, data: bytes, to: tuple[str, int]) -> None:
        if not via.is_closing():
            via.sendto(data, to)


class _Upstream(asyncio.DatagramProtocol):
    def __init__(self, relay: LossyRelay) -> None:
        self._relay = relay

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        self._relay.from_server(data)


def _is_shutdown(datagram: bytes) -> bool:
    try:
        packet = parse(datagram)
    except SrtError:
        return False
    return isinstance(packet, ControlPacket) and packet.type == ControlType.SHUTDOWN
