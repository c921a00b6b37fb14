"""Hostile RTMP clients against a real server: memory before authentication, closes that close,
connection limits (issue 20)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from simulcast.codecs.rtmp import handshake
from simulcast.codecs.rtmp import messages as msg
from simulcast.codecs.rtmp.chunk import encode_message
from tests.support import ServerProcess, running_server

HELLO = handshake.client_hello(bytes(handshake.PACKET_SIZE)).c0c1 + bytes(handshake.PACKET_SIZE)
MIB = 1024 * 1024


def rss_bytes(pid: int) -> int:
    """Resident set size of a process, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def server_side_open(server_port: int, client_port: int) -> bool:
    """Whether the server still has a socket for this client (read from /proc/net/tcp)."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table) as f:
            for line in f.readlines()[1:]:
                local, remote, state = line.split()[1:4]
                if state not in ("06", "07") and (  # TIME_WAIT, CLOSE: nothing held
                    int(local.rsplit(":", 1)[1], 16) == server_port
                    and int(remote.rsplit(":", 1)[1], 16) == client_port
                ):
                    return True
    return False


async def attack(port: int, chunk_size_first: bool, body: bytes) -> None:
    """Handshake, maybe a 16 MiB Set Chunk Size, then most of an 8 MiB message; never read."""
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    data = HELLO
    chunk = 128
    if chunk_size_first:
        chunk = 16 * MIB - 1
        data += encode_message(2, msg.SET_CHUNK_SIZE, 0, 0, msg.u32(chunk), 128)
    # The header of an 8 MiB command message, then its body less one byte: never completes.
    message = encode_message(3, msg.COMMAND_AMF0, 0, 0, body, chunk)
    try:
        writer.write(data + message[: len(message) - 1])
        async with asyncio.timeout(20):
            await writer.drain()
    except (ConnectionError, TimeoutError):
        pass
    finally:
        writer.transport.abort()


@pytest.fixture
def hostile_server(tmp_path: Path) -> Iterator[ServerProcess]:
    with running_server(
        tmp_path, rtmp_max_connections_per_address="500", rtmp_handshake_timeout="2"
    ) as server:
        yield server


async def test_unauthenticated_memory_is_bounded(hostile_server: Any) -> None:
    """100 connections, each a 16 MiB chunk size (or not) and a partial 8 MiB message before
    ``connect``: the server's RSS stays within 64 MB of where it started."""
    pid = hostile_server.proc.pid
    before = rss_bytes(pid)
    body = bytes(8 * MIB)  # one buffer shared by every client
    peak = before
    tasks = [
        asyncio.create_task(attack(hostile_server.rtmp_port, i % 2 == 0, body)) for i in range(100)
    ]
    while not all(t.done() for t in tasks):
        peak = max(peak, rss_bytes(pid))
        await asyncio.sleep(0.05)
    await asyncio.gather(*tasks)
    peak = max(peak, rss_bytes(pid))
    print(f"RSS {before / MIB:.0f} MB before, peak {peak / MIB:.0f} MB during the attack")
    assert peak - before < 64 * MIB, f"RSS grew {(peak - before) / MIB:.0f} MB"
    log = hostile_server.log()
    assert "malformed input" in log
    assert "Traceback" not in log


async def test_a_client_that_never_reads_is_gone_after_the_handshake_timeout(
    hostile_server: Any,
) -> None:
    """A client that floods pings and never reads a reply: gone within timeout + 2 s."""
    port = hostile_server.rtmp_port
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # tiny: our replies back up
    sock.connect(("127.0.0.1", port))
    client_port = sock.getsockname()[1]
    started = time.monotonic()
    sock.setblocking(False)
    ping = encode_message(2, msg.USER_CONTROL, 0, 0, msg.user_control(msg.PING_REQUEST, 1), 128)
    pending = HELLO + ping * 2000
    sent = 0
    with contextlib.suppress(BlockingIOError, ConnectionError):
        while sent < len(pending):
            sent += sock.send(pending[sent : sent + 65536])
    deadline = started + 2 + 2  # handshake timeout 2 s, + 2 s
    while server_side_open(port, client_port):
        assert time.monotonic() < deadline, "the server still holds the connection"
        await asyncio.sleep(0.05)
    sock.close()
    assert "Traceback" not in hostile_server.log()


async def test_connections_per_address_are_limited(tmp_path: Path) -> None:
    with running_server(tmp_path, rtmp_max_connections_per_address="3") as server:
        held = [socket.create_connection(("127.0.0.1", server.rtmp_port)) for _ in range(3)]
        for s in held:
            s.sendall(HELLO[: 1 + handshake.PACKET_SIZE])  # accepted: answered
            s.settimeout(5)
            assert s.recv(1)
        extra = socket.create_connection(("127.0.0.1", server.rtmp_port))
        extra.settimeout(5)
        with contextlib.suppress(ConnectionResetError):
            assert extra.recv(1) == b""  # refused at once, before any byte
        extra.close()
        held.pop().close()

        # A slot freed: the next connection is served again.
        async def served() -> bool:
            with socket.create_connection(("127.0.0.1", server.rtmp_port)) as s:
                s.sendall(HELLO[: 1 + handshake.PACKET_SIZE])
                s.settimeout(2)
                with contextlib.suppress(OSError):
                    return bool(s.recv(1))
            return False

        async with asyncio.timeout(5):
            while not await served():  # noqa: ASYNC110 -- another process frees the slot
                await asyncio.sleep(0.05)
        for s in held:
            s.close()
