"""End to end: destinations that fail must not disturb the others."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from typing import Any

import pytest

from simulcast.engine import OutputSpec, SessionEnded
from tests.support import free_port
from tests.support.media import X264, Processes, probe
from tests.support.rtmp_sink import RtmpSink

pytestmark = pytest.mark.media

FRAMES = 120


async def wait_ended(control: Any, within: float = 5.0) -> SessionEnded:
    """The first SessionEnded the control plane got."""
    async with asyncio.timeout(within):
        while True:
            for event in control.events:
                if isinstance(event, SessionEnded):
                    return event
            await asyncio.sleep(0.02)


async def test_refusing_and_stalled_destinations_do_not_disturb_others(
    make_engine: Any, procs: Processes, tmp_path: Path
) -> None:
    engine, control = await make_engine(
        output_queue_bytes=2 * 1024 * 1024, output_queue_seconds=1.0
    )
    port_ok, rec = await procs.receiver(tmp_path / "ok.flv")
    refused = free_port()  # nothing listens there
    stalled = RtmpSink(stall=True)  # publishes, then never reads
    await stalled.start()
    blackhole = socket.socket()  # accepts TCP (backlog), never answers the handshake
    blackhole.bind(("127.0.0.1", 0))
    blackhole.listen(8)
    control.allow(
        "key",
        1,
        [
            OutputSpec(1, "rtmp", f"rtmp://127.0.0.1:{port_ok}/app/k"),
            OutputSpec(2, "rtmp", f"rtmp://127.0.0.1:{refused}/app/k"),
            OutputSpec(3, "rtmp", f"rtmp://127.0.0.1:{stalled.port}/app/k"),
            OutputSpec(4, "rtmp", f"rtmp://127.0.0.1:{blackhole.getsockname()[1]}/app/k"),
        ],
    )
    try:
        # Noisy near-lossless video (~17 Mb/s): the stalled destination's socket buffers fill fast.
        publisher = await procs.publish(
            engine.ingest.port,
            "key",
            seconds=6,
            video=[*X264, "-g", "15", "-qp", "4", "-vf", "noise=alls=12:allf=t+u"],
        )
        max_queued = 0
        statuses: dict[int, Any] = {}
        for _ in range(int(5.8 / 0.05)):
            await asyncio.sleep(0.05)
            session = engine.session(1)
            stream = engine.hub.get(1)
            if session is None or stream is None:
                if statuses:
                    break  # ended
                continue  # not live yet
            statuses = dict(session.outputs)
            max_queued = max([max_queued, *(r.queued_bytes for r in stream.readers)])
        assert await asyncio.wait_for(publisher.wait(), 10) == 0
        await asyncio.wait_for(rec.wait(), 5)
    finally:
        await stalled.close()
        blackhole.close()

    assert statuses[1].state == "live" and statuses[1].dropped_frames == 0
    assert statuses[2].state == "retrying" and statuses[2].attempt >= 3
    assert "refused" in (statuses[2].last_error or "").lower() or statuses[2].last_error
    assert statuses[3].state == "live" and statuses[3].dropped_frames > 0
    assert statuses[4].state in ("connecting", "retrying") and statuses[4].bytes_sent == 0
    assert max_queued <= 2 * 1024 * 1024 + 256 * 1024  # the bound, plus at most one unit
    media = probe(tmp_path / "ok.flv")
    assert media.first_video_keyframe and media.monotonic
    # Everything after the push's first keyframe arrives: no frame missing between two (30 fps,
    # one frame is 33 ms). Where it starts depends on the machine: ffmpeg -re bursts its first
    # 0.5 s, one whole GOP (-g 15), before the push connects, and on a loaded machine the
    # connect itself has taken another GOP or two.
    assert media.max_video_step_ms < 50, media
    assert 180 - 3 * 15 - 3 <= media.video_frames <= 181, media
