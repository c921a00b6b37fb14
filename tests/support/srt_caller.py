"""A minimal SRT caller for fault tests: speaks the real HSv5 wire format (induction, conclusion
with HSREQ and the stream id), then sends data packets. Reliability is not its business."""

from __future__ import annotations

import asyncio
import struct
from typing import cast

from simulcast.codecs.srt.packet import (
    HS_EXT_CONFIG,
    HS_EXT_HSREQ,
    ControlPacket,
    ControlType,
    Extension,
    Handshake,
    HandshakeType,
    control,
    parse,
    parse_handshake,
    swap_words,
)


def handshake(hs_type: int, socket_id: int, cookie: int = 0, stream_id: str = "") -> bytes:
    """A caller's handshake packet (version 4 for induction, 5 with extensions after)."""
    if hs_type == HandshakeType.INDUCTION:
        hs = Handshake(4, 0, 2, 1000, 1500, 8192, hs_type, socket_id, cookie, bytes(16))
    else:
        hsreq = struct.pack(">III", 0x010501, 0x3F, (120 << 16) | 120)
        sid = swap_words(stream_id.encode())
        hs = Handshake(
            5,
            0,
            HS_EXT_HSREQ | HS_EXT_CONFIG,
            1000,
            1500,
            8192,
            hs_type,
            socket_id,
            cookie,
            bytes(16),
            ((Extension.HSREQ, hsreq), (Extension.SID, sid)),
        )
    return control(ControlType.HANDSHAKE, 0, 0, 0, hs.encode())


def data_packet(seq: int, timestamp: int, dest: int, payload: bytes) -> bytes:
    """A solo in-order data packet, unencrypted."""
    return struct.pack(">IIII", seq, 0xE0000000 | 1, timestamp, dest) + payload


class SrtCaller(asyncio.DatagramProtocol):
    """One caller socket on ``host``; collects what the server answers."""

    def __init__(self) -> None:
        self.answers: asyncio.Queue[ControlPacket] = asyncio.Queue()
        self._transport: asyncio.DatagramTransport | None = None
        self.peer_socket_id = 0

    @classmethod
    async def open(cls, host: str = "127.0.0.1") -> SrtCaller:
        """Bind a UDP socket on ``host``."""
        caller = cls()
        loop = asyncio.get_running_loop()
        await loop.create_datagram_endpoint(lambda: caller, local_addr=(host, 0))
        return caller

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        packet = parse(data)
        if isinstance(packet, ControlPacket):
            self.answers.put_nowait(packet)

    def send(self, data: bytes, port: int) -> None:
        """Send one datagram to the server on loopback."""
        assert self._transport is not None
        self._transport.sendto(data, ("127.0.0.1", port))

    async def handshake(self, port: int, stream_id: str, socket_id: int = 77) -> Handshake:
        """Induction then conclusion; returns the server's conclusion answer.

        Each request is repeated every 250 ms until answered, as libsrt does.
        """
        induction = await self._request(port, handshake(HandshakeType.INDUCTION, socket_id))
        conclusion = handshake(HandshakeType.CONCLUSION, socket_id, induction.cookie, stream_id)
        hs = await self._request(port, conclusion)
        self.peer_socket_id = hs.socket_id
        return hs

    async def _request(self, port: int, packet: bytes) -> Handshake:
        async with asyncio.timeout(5):
            while True:
                self.send(packet, port)
                try:
                    answer = await asyncio.wait_for(self.answers.get(), 0.25)
                except TimeoutError:
                    continue
                if answer.type == ControlType.HANDSHAKE:
                    return parse_handshake(answer.body)

    def close(self) -> None:
        """Close the socket."""
        if self._transport is not None:
            self._transport.close()
