"""A destination frozen with SIGSTOP (nginx-rtmp): torn down after the write-stall timeout,
shown as ``retrying`` with ``write stalled``, live again after SIGCONT; the other destination
and HLS keep their full rate meanwhile (issue 20)."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from simulcast.codecs.rtmp import messages as msg
from simulcast.engine import OutputSpec
from simulcast.outputs.hls_registry import HlsRegistry
from simulcast.settings import Settings
from tests.support import eventually
from tests.support.media import X264, Processes
from tests.support.rtmp_sink import RtmpSink

pytestmark = pytest.mark.media

STALL_S = 3.0
FREEZE_S = 12.0


async def test_frozen_destination_is_retried_and_others_keep_their_rate(
    make_engine: Any, procs: Processes, nginx_rtmp: tuple[int, Path], tmp_path: Path
) -> None:
    nginx_port, records = nginx_rtmp
    nginx_pid = int((records.parent / "nginx.pid").read_text())
    engine, control = await make_engine(push_write_stall_seconds=STALL_S)
    hls = HlsRegistry(Settings(data_dir=tmp_path, hls_segment_seconds=1.0))
    await hls.start()
    engine.output_factories["hls"] = hls.factory
    healthy = RtmpSink()
    await healthy.start()
    control.allow(
        "key",
        1,
        [
            OutputSpec(1, "rtmp", f"rtmp://127.0.0.1:{nginx_port}/live/frozen"),
            OutputSpec(2, "rtmp", f"rtmp://127.0.0.1:{healthy.port}/app/k"),
            OutputSpec(3, "hls", options={"dvrWindowSeconds": 120, "mode": "production"}),
        ],
    )
    # Noisy video (several Mb/s): the kernel buffers toward the frozen nginx fill in moments.
    video = [*X264, "-qp", "10", "-vf", "noise=alls=12:allf=t+u"]
    publisher = await procs.publish(engine.ingest.port, "key", seconds=40, video=video)

    def status(dest: int) -> Any:
        session = engine.session(1)
        return None if session is None else session.outputs.get(dest)

    def video_frames() -> int:
        return sum(1 for m in healthy.messages if m[0] == msg.VIDEO)

    try:
        await eventually(lambda: all((s := status(d)) and s.state == "live" for d in (1, 2, 3)), 20)
        await asyncio.sleep(1.0)
        channel = hls.live_channel(3)
        assert channel is not None
        os.kill(nginx_pid, signal.SIGSTOP)
        frozen_at = time.monotonic()
        frames_at_freeze, segments_at_freeze = video_frames(), channel.segment_count
        # nginx's receive buffer takes a few more MB; then nothing moves, and within the stall
        # timeout (+ 2 s) the push is torn down: it never claims to be live while nothing moves.
        last_bytes, last_moved = status(1).bytes_sent, time.monotonic()
        while (st := status(1)).state == "live":
            if st.bytes_sent != last_bytes:
                last_bytes, last_moved = st.bytes_sent, time.monotonic()
            assert time.monotonic() - last_moved < STALL_S + 2, "live while nothing moves"
            await asyncio.sleep(0.05)
        detected = time.monotonic() - last_moved
        assert st.state in ("retrying", "connecting") and st.last_error == "write stalled"
        remaining = FREEZE_S - (time.monotonic() - frozen_at)
        await asyncio.sleep(max(0.0, remaining))
        frozen_for = time.monotonic() - frozen_at
        frames = video_frames() - frames_at_freeze
        segments = channel.segment_count - segments_at_freeze
        os.kill(nginx_pid, signal.SIGCONT)
        thawed_at = time.monotonic()
        # The other destination and HLS kept full rate (30 fps; 1 s segments).
        assert frames >= 30 * frozen_for * 0.85, (frames, frozen_for)
        assert segments >= frozen_for * 0.7, (segments, frozen_for)
        assert status(2).state == "live" and status(2).dropped_frames == 0
        # The peer answers again: live within 5 s (its retry backoff is at most 1 s here).
        await eventually(lambda: (s := status(1)) and s.state == "live", 5)
        assert time.monotonic() - thawed_at < 5
        assert status(1).last_error is None
        assert status(1).reconnects >= 1
        back = time.monotonic() - thawed_at
        print(f"stall detected {detected:.1f}s after the last byte; live {back:.1f}s after SIGCONT")
    finally:
        os.kill(nginx_pid, signal.SIGCONT)
        publisher.kill()
        await publisher.wait()
        await healthy.close()
        await hls.close()
