"""End to end: publish refusal, malformed input, reconnects, commands, shutdown, Enhanced RTMP."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import pytest

from simulcast.codecs import flv
from simulcast.codecs.flv import VideoPacketType
from simulcast.codecs.rtmp.chunk import encode_message
from simulcast.codecs.unit import Kind
from simulcast.engine import OutputSpec
from tests.support import eventually
from tests.support.media import FFMPEG, Processes, end_reasons, ended, probe
from tests.support.rtmp_sink import RtmpSink, publish_raw

pytestmark = pytest.mark.media


async def test_unknown_key_and_wrong_app_are_refused(make_engine: Any, procs: Processes) -> None:
    engine, control = await make_engine()
    port = engine.ingest.port
    refused = await procs.publish(port, "nope", seconds=2)
    assert await asyncio.wait_for(refused.wait(), 8) != 0
    control.allow("key", 1)
    wrong_app = await procs.start(
        FFMPEG, "-hide_banner", "-f", "lavfi", "-i", "testsrc2=size=64x64:rate=5", "-t", "1",
        "-c:v", "libx264", "-f", "flv", f"rtmp://127.0.0.1:{port}/other/key",
    )  # fmt: skip
    assert await asyncio.wait_for(wrong_app.wait(), 8) != 0
    assert engine.sessions() == {} and control.events == []


async def test_malformed_input_closes_only_that_connection(
    make_engine: Any, procs: Processes, caplog: pytest.LogCaptureFixture
) -> None:
    engine, control = await make_engine()
    port = engine.ingest.port
    sink = RtmpSink()
    await sink.start()
    control.allow("good", 1, [OutputSpec(1, "rtmp", f"rtmp://127.0.0.1:{sink.port}/app/k")])
    control.allow("bad", 2)
    caplog.set_level(logging.WARNING, logger="simulcast.ingest")
    good = await procs.publish(port, "good", seconds=4)
    await eventually(lambda: engine.session(1) is not None)

    # 1. Garbage AMF in a command right after a valid handshake.
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"\x03" + bytes(1536))
    await reader.readexactly(1 + 2 * 1536)
    writer.write(bytes(1536) + encode_message(3, 20, 0, 0, b"\x02\xff\xff", 128))
    assert await asyncio.wait_for(reader.read(), 5) == b""  # closed by the server
    writer.close()
    # 2. A publish whose video tag is not FLV (codec id 15).
    await asyncio.wait_for(publish_raw(port, "bad", [(Kind.VIDEO, 0, b"\x1f\x00")]), 5)
    await eventually(lambda: any(e.stream_id == 2 for e in ended(control)))

    assert engine.session(1) is not None  # the good publish never noticed
    assert await asyncio.wait_for(good.wait(), 10) == 0
    await eventually(lambda: any(e.stream_id == 1 for e in ended(control)))
    await sink.close()
    reasons = {e.stream_id: e.reason for e in ended(control)}
    assert reasons == {1: "publisher_disconnected", 2: "protocol_error"}
    lines = [r for r in caplog.records if r.name == "simulcast.ingest"]
    assert len(lines) == 2 and all("malformed" in r.getMessage() for r in lines)
    assert len([m for m in sink.messages if m[0] == Kind.VIDEO]) >= 118


async def test_killed_receiver_is_reconnected_at_a_keyframe(
    make_engine: Any, procs: Processes, tmp_path: Path
) -> None:
    engine, control = await make_engine()
    port, first = await procs.receiver(tmp_path / "first.flv")
    control.allow("key", 1, [OutputSpec(1, "rtmp", f"rtmp://127.0.0.1:{port}/app/k")])
    publisher = await procs.publish(engine.ingest.port, "key", seconds=7)

    def status() -> Any:
        session = engine.session(1)
        return session.outputs[1] if session is not None else None

    await eventually(lambda: status() is not None and status().state == "live")
    await asyncio.sleep(1.5)
    first.kill()
    await eventually(lambda: status().state == "retrying")
    assert status().last_error
    _, second = await procs.receiver(tmp_path / "second.flv", port)
    await eventually(lambda: status().state == "live" and status().reconnects == 1)
    assert await asyncio.wait_for(publisher.wait(), 10) == 0
    await asyncio.wait_for(second.wait(), 5)
    media = probe(tmp_path / "second.flv")
    assert media.first_video_keyframe and media.monotonic
    assert media.video_frames >= 60, media  # at least the last ~2.5 s of the 7
    assert await end_reasons(control) == ["publisher_disconnected"]


async def test_commands_stop_outputs_and_sessions(make_engine: Any, procs: Processes) -> None:
    engine, control = await make_engine()
    sink1, sink2 = RtmpSink(), RtmpSink()
    await sink1.start()
    await sink2.start()
    control.allow("key", 7, [OutputSpec(1, "rtmp", f"rtmp://127.0.0.1:{sink1.port}/app/k")])
    publisher = await procs.publish(engine.ingest.port, "key", seconds=10)
    await eventually(lambda: sink1.publishes == 1)
    loop = asyncio.get_running_loop()

    start = loop.time()
    assert await engine.add_output(7, OutputSpec(2, "rtmp", f"rtmp://127.0.0.1:{sink2.port}/a/k"))
    await eventually(lambda: sink2.publishes == 1, within=1.0)
    assert await engine.remove_output(7, 1)
    session = engine.session(7)
    assert session is not None and set(session.outputs) == {2}
    assert loop.time() - start < 2.0
    assert not await engine.remove_output(7, 1)
    assert not await engine.add_output(99, OutputSpec(3, "rtmp", "rtmp://x/a/k"))

    start = loop.time()
    assert await engine.stop(7, "stopped")
    assert loop.time() - start < 1.0
    assert engine.session(7) is None
    assert await asyncio.wait_for(publisher.wait(), 3) is not None  # kicked off
    assert await end_reasons(control) == ["stopped"]
    assert not await engine.stop(7, "stopped")

    again = await procs.publish(engine.ingest.port, "key", seconds=10)
    await eventually(lambda: engine.session(7) is not None)
    start = loop.time()
    await engine.close()
    assert loop.time() - start < 3.0
    assert await asyncio.wait_for(again.wait(), 3) is not None
    assert await end_reasons(control, 2) == ["stopped", "server_shutdown"]
    await sink1.close()
    await sink2.close()


async def test_av1_enhanced_rtmp_is_relayed_untouched(
    make_engine: Any, procs: Processes, tmp_path: Path
) -> None:
    engine, control = await make_engine()
    sink = RtmpSink()
    await sink.start()
    control.allow("av1", 1, [OutputSpec(1, "rtmp", f"rtmp://127.0.0.1:{sink.port}/app/k")])
    local = tmp_path / "sent.flv"
    # tee: the very same FLV tag bodies go to the ingest and to a local file we compare with.
    publisher = await procs.start(
        FFMPEG, "-hide_banner", "-nostats", "-re",
        "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=30",
        "-c:v", "libsvtav1", "-preset", "12", "-g", "30", "-pix_fmt", "yuv420p", "-t", "3",
        "-map", "0:v", "-f", "tee",
        f"[f=flv]rtmp://127.0.0.1:{engine.ingest.port}/live/av1|[f=flv]{local}",
        log=tmp_path / "publisher.log",
    )  # fmt: skip
    code = await asyncio.wait_for(publisher.wait(), 12)
    if code != 0 or not local.exists():
        pytest.skip("this ffmpeg cannot publish AV1 over (Enhanced) RTMP")
    await eventually(lambda: len(ended(control)) == 1)
    await sink.close()
    sent = [body for t, _, body in flv.iter_tags(local.read_bytes()) if t == Kind.VIDEO]
    got = [body for t, _, body in sink.messages if t == Kind.VIDEO]
    assert flv.parse_video(sent[0]).codec == "av1" and flv.parse_video(sent[0]).enhanced
    assert got[0] == sent[0]  # the sequence header (AV1CodecConfigurationRecord)
    assert len(got) > 0.8 * len(sent)
    assert got[1:] == sent[len(sent) - len(got) + 1 :]  # every frame since, byte for byte
    coded = [t for t in map(flv.parse_video, got) if t.packet_type == VideoPacketType.CODED_FRAMES]
    assert coded[0].is_keyframe
