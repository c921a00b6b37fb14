"""Publish edge cases (issue 20): publish and deleteStream in one read still get
NetStream.Publish.Start; a re-publish right after the end is not refused as already live."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest

from simulcast.codecs.rtmp import handshake
from simulcast.codecs.rtmp import messages as msg
from simulcast.codecs.rtmp.chunk import encode_message
from tests.support import make_server
from tests.support.media import Processes
from tests.support.rtmp_sink import RtmpSink

pytestmark = pytest.mark.media


def command(name: str, tid: float, *args: Any, msid: int = 0) -> bytes:
    body = msg.Command(name, tid, None if name != "connect" else {"app": "live"}, args).encode()
    return encode_message(3, msg.COMMAND_AMF0, msid, 0, body, 128)


def publish_bytes(key: str) -> bytes:
    """A whole publish (handshake, connect, createStream, publish ``key``) in one write."""
    return b"".join(
        (
            handshake.client_hello(bytes(handshake.PACKET_SIZE)).c0c1,
            bytes(handshake.PACKET_SIZE),  # C2
            command("connect", 1.0),
            command("createStream", 2.0),
            command("publish", 3.0, key, "live", msid=1),
        )
    )


async def test_publish_and_delete_stream_in_one_read_still_get_publish_start(
    make_engine: Any,
) -> None:
    engine, control = await make_engine()
    control.allow("key", 1)
    everything = publish_bytes("key") + command("deleteStream", 4.0, 1.0)
    reader, writer = await asyncio.open_connection("127.0.0.1", engine.ingest.port)
    writer.write(everything)
    async with asyncio.timeout(10):
        received = await reader.read(-1)  # until the server closes
    writer.close()
    assert b"NetStream.Publish.Start" in received


async def test_republish_right_after_the_end_is_accepted(tmp_path: Path, procs: Processes) -> None:
    """ffmpeg publishes and leaves; the same key publishes again at once. The first session is
    still ending (its stalled destination gets 2 s to drain) and the control plane still counts
    it live: the new publish waits for that end instead of being refused."""
    server = make_server(tmp_path)
    server.start()
    stalled = RtmpSink(stall=True)
    await stalled.start()
    try:
        sk = server.create_account(sats=100_000)
        async with httpx.AsyncClient(
            base_url=server.base_url, headers={"X-API-Key": sk}, timeout=10
        ) as api:
            stream = (await api.post("/api/streams", json={"label": "again"})).json()
            url = f"rtmp://127.0.0.1:{stalled.port}/app/k"
            r = await api.post(
                f"/api/streams/{stream['id']}/destinations",
                json={"type": "rtmp", "config": {"url": url}},
            )
            assert r.status_code in (200, 201), r.text
        key = stream["streamKey"]
        first = await procs.publish(server.rtmp_port, key, seconds=2)
        assert await asyncio.wait_for(first.wait(), 30) == 0
        # The server sees ffmpeg's goodbye within one read (relay_batch_seconds, 50 ms).
        await asyncio.sleep(0.3)
        reader, writer = await asyncio.open_connection("127.0.0.1", server.rtmp_port)
        writer.write(publish_bytes(key))
        received = b""
        async with asyncio.timeout(15):
            while b"NetStream.Publish." not in received:
                received += await reader.read(65536)
        writer.close()
        assert b"NetStream.Publish.Start" in received, received[-200:]
    finally:
        await stalled.close()
        server.stop()
