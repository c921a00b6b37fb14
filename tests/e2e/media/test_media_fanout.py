"""End to end: ffmpeg publishes to the ingest; real RTMP servers receive the fan-out."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from simulcast.codecs.unit import Kind
from simulcast.engine import OutputSpec, OutputStateChanged
from tests.support import eventually
from tests.support.media import Processes, end_reasons, ended, probe, recorded
from tests.support.rtmp_sink import RtmpSink

pytestmark = pytest.mark.media

FRAMES = 120  # 4 s at 30 fps


async def test_fanout_to_ffmpeg_nginx_and_sink(
    make_engine: object, procs: Processes, nginx_rtmp: tuple[int, Path], tmp_path: Path
) -> None:
    assert callable(make_engine)
    engine, control = await make_engine()
    port_a, rec_a = await procs.receiver(tmp_path / "a.flv")
    port_b, rec_b = await procs.receiver(tmp_path / "b.flv")
    nginx_port, records = nginx_rtmp
    sink = RtmpSink()
    await sink.start()
    control.allow(
        "key1",
        1,
        [
            OutputSpec(1, "rtmp", f"rtmp://127.0.0.1:{port_a}/app/k"),
            OutputSpec(2, "rtmp", f"rtmp://127.0.0.1:{port_b}/app/k"),
            OutputSpec(3, "rtmp", f"rtmp://127.0.0.1:{nginx_port}/live/nginxkey"),
            OutputSpec(4, "rtmp", f"rtmp://127.0.0.1:{sink.port}/app/sinkkey?x=1"),
        ],
    )
    publisher = await procs.publish(engine.ingest.port, "key1")

    def all_live() -> bool:
        session = engine.session(1)
        return session is not None and {s.state for s in session.outputs.values()} == {"live"}

    await eventually(all_live, within=4)
    await asyncio.sleep(1.0)  # every push carries a couple of GOPs
    session = engine.session(1)
    assert session is not None and session.bytes_in > 0
    # Serialize once: all four pushes negotiated the same parameters, so every cached unit
    # holds exactly one wire form, shared by all of them.
    stream = engine.hub.get(1)
    assert stream is not None
    wire_forms = {len(u.wire) for u in stream.gop if u.kind != Kind.DATA}
    assert wire_forms == {1}
    assert await asyncio.wait_for(publisher.wait(), 10) == 0
    await asyncio.wait_for(asyncio.gather(rec_a.wait(), rec_b.wait()), 5)
    await sink.close()
    assert await end_reasons(control) == ["publisher_disconnected"]
    await recorded(records / "nginxkey.flv", probe, lambda m: m.video_frames >= FRAMES - 3)

    for path in (tmp_path / "a.flv", tmp_path / "b.flv", records / "nginxkey.flv"):
        media = probe(path)
        assert media.first_video_keyframe, path
        assert media.monotonic, path
        assert FRAMES - 3 <= media.video_frames <= FRAMES + 1, (path, media)
        assert media.audio_packets > 150, (path, media)  # 4 s of 44.1 kHz AAC is ~172

    videos = [p for t, _, p in sink.messages if t == Kind.VIDEO]
    assert len(videos) >= FRAMES
    assert ended(control)[0].bytes_in > 100_000
    states = [e.status.state for e in control.events if isinstance(e, OutputStateChanged)]
    assert states.count("live") == 4 and states.count("stopped") == 4
    assert engine.sessions() == {}
