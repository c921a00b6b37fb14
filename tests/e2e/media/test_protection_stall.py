"""A publisher whose connection goes silent without FIN/RST (a network cut) is a lost publisher.

An in-test RTMP client publishes ~1.5 s of real H.264/AAC, then stops sending while keeping its
socket open. With ``rtmp_publish_stall_seconds`` at 1 s the session enters protection within
about that long (not after the old 30 s idle timeout), and the destination keeps its one
connection and receives the slate.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from simulcast.codecs import flv
from simulcast.codecs.rtmp import events as ev
from simulcast.codecs.rtmp.connection import ClientConnection
from simulcast.codecs.unit import Kind
from simulcast.engine import OutputSpec, PublisherLost, SessionEnded
from tests.support import eventually
from tests.support.media import FFMPEG, X264, Processes, end_reasons
from tests.support.rtmp_sink import RtmpSink

pytestmark = pytest.mark.media

STALL_SECONDS = 1.0


def _media(tmp_path: Path, seconds: float) -> list[tuple[int, int, bytes]]:
    """``(type_id, timestamp, payload)`` of a short ffmpeg-encoded FLV (video, audio, metadata)."""
    out = tmp_path / "clip.flv"
    subprocess.run(
        [
            FFMPEG, "-hide_banner", "-nostats", "-loglevel", "error", "-y",
            "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=30",
            "-f", "lavfi", "-i", "sine=frequency=440",
            "-pix_fmt", "yuv420p", *X264, "-c:a", "aac", "-t", str(seconds),
            "-f", "flv", str(out),
        ],
        check=True,
        timeout=30,
    )  # fmt: skip
    return list(flv.iter_tags(out.read_bytes()))


async def test_silent_publisher_is_lost_after_stall_seconds_and_protection_takes_over(
    make_engine: Any, tmp_path: Path
) -> None:
    media = _media(tmp_path, 1.5)
    engine, control = await make_engine(rtmp_publish_stall_seconds=STALL_SECONDS)
    sink = RtmpSink()
    await sink.start()
    control.allow("key", 1, [OutputSpec(1, "rtmp", f"rtmp://127.0.0.1:{sink.port}/app/k")], 30)

    port = engine.ingest.port
    conn = ClientConnection("live", f"rtmp://127.0.0.1:{port}/live", "key")
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        conn.initiate()
        published = False
        while not published:
            writer.write(conn.data_to_send())
            data = await asyncio.wait_for(reader.read(65536), 5)
            assert data, "server closed before the publish started"
            published = any(isinstance(e, ev.PublishStarted) for e in conn.receive_data(data))
        # Real time-ish, so the destination is live before the publisher goes quiet.
        start = time.monotonic()
        for type_id, ts, payload in media:
            await asyncio.sleep(max(0.0, start + ts / 1000 - time.monotonic()))
            writer.write(conn.media_bytes(type_id, ts, payload))
            await writer.drain()
        await eventually(lambda: engine.session(1) is not None and sink.publishes == 1)

        # The network "cuts": no FIN, no RST, nothing more sent; the socket stays open.
        silent = time.monotonic()
        await eventually(
            lambda: engine.session(1) is not None and engine.session(1).protecting, within=5
        )
        noticed = time.monotonic() - silent
        print(f"\nstalled publisher noticed after {noticed * 1000:.0f} ms")
        assert noticed <= STALL_SECONDS + 1.5

        # The server dropped the silent connection (we see EOF), the session lives on.
        with contextlib.suppress(ConnectionError):
            async with asyncio.timeout(3):
                while await reader.read(65536):
                    pass
        lost = [e for e in control.events if isinstance(e, PublisherLost)]
        assert len(lost) == 1 and lost[0].grace_seconds == 30
        assert not [e for e in control.events if isinstance(e, SessionEnded)]
        info = engine.session(1)
        assert info is not None and info.protecting
        assert all(o.state == "live" for o in info.outputs.values())

        # The destination kept its one connection and receives the slate past the live part.
        last_live_ts = max(ts for type_id, ts, _ in media if type_id == Kind.VIDEO)
        await eventually(
            lambda: any(m[0] == Kind.VIDEO and m[1] > last_live_ts + 1000 for m in sink.messages),
            within=5,
        )
        assert sink.publishes == 1
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()
        await sink.close()


async def test_a_busy_loop_is_not_a_stalled_publisher(make_engine: Any, procs: Processes) -> None:
    # A loaded machine: the loop that reads the publisher is held for longer than the stall
    # period while ffmpeg goes on sending. What it sent waits in the socket; the publisher is
    # not lost, and the publish ends when ffmpeg does.
    engine, control = await make_engine(rtmp_publish_stall_seconds=STALL_SECONDS)
    sink = RtmpSink()
    await sink.start()
    control.allow("key", 1, [OutputSpec(1, "rtmp", f"rtmp://127.0.0.1:{sink.port}/app/k")], 30)
    publisher = await procs.publish(engine.ingest.port, "key", seconds=4)
    try:
        await eventually(lambda: sink.publishes == 1, within=10)
        await asyncio.sleep(0.5)
        time.sleep(STALL_SECONDS * 1.5)  # noqa: ASYNC251 -- holding the loop is the point
        assert await asyncio.wait_for(publisher.wait(), 15) == 0
        assert await end_reasons(control) == ["publisher_disconnected"]
        assert not [e for e in control.events if isinstance(e, PublisherLost)]
    finally:
        await sink.close()
