"""End to end: ffmpeg (libsrt) publishes MPEG-TS over SRT through a lossy relay to the ingest;
RTMP destinations receive the fan-out and what they got must decode."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import av
import pytest

from simulcast.engine import OutputSpec
from simulcast.outputs.hls_registry import HlsRegistry
from simulcast.settings import Settings
from tests.support import eventually
from tests.support.lossy_relay import LossyRelay
from tests.support.media import Processes, end_reasons, probe
from tests.support.srt import PASSPHRASE, ROTATE_KEYS, publish_srt, srt_counter

pytestmark = pytest.mark.media

FRAMES = 120  # 4 s at 30 fps


@pytest.mark.parametrize(
    ("loss", "jitter", "latency_ms", "pbkeylen", "more"),
    [
        (0.0, 0.0, 120, 0, ""),
        (0.02, 0.05, 400, 0, ""),
        (0.0, 0.0, 120, 16, ""),
        (0.02, 0.05, 400, 32, ""),
        (0.02, 0.05, 400, 16, ROTATE_KEYS),
    ],
    ids=[
        "clean",
        "2pct-loss-50ms-jitter",
        "aes128-clean",
        "aes256-2pct-loss-50ms-jitter",
        "aes128-key-rotation-2pct-loss",
    ],
)
async def test_srt_publish_fans_out_and_decodes(
    make_engine: object,
    procs: Processes,
    tmp_path: Path,
    loss: float,
    jitter: float,
    latency_ms: int,
    pbkeylen: int,
    more: str,
) -> None:
    """Two RTMP destinations and HLS get what ffmpeg (libsrt) sent, clear or encrypted."""
    assert callable(make_engine)
    engine, control = await make_engine(srt_latency_ms=latency_ms)
    options = (
        f"&passphrase={PASSPHRASE.replace(' ', '%20')}&pbkeylen={pbkeylen}" if pbkeylen else ""
    )
    options += more
    registry = HlsRegistry(Settings(hls_dir=tmp_path / "hls", hls_segment_seconds=1.0))
    engine.output_factories["hls"] = registry.factory
    port_a, rec_a = await procs.receiver(tmp_path / "a.flv")
    port_b, rec_b = await procs.receiver(tmp_path / "b.flv")
    control.allow(
        "key1",
        1,
        [
            OutputSpec(1, "rtmp", f"rtmp://127.0.0.1:{port_a}/app/k"),
            OutputSpec(2, "rtmp", f"rtmp://127.0.0.1:{port_b}/app/k"),
            OutputSpec(3, "hls", options={"dvrWindowSeconds": 60}),
        ],
        srt_passphrase=PASSPHRASE if pbkeylen else None,
    )
    relay = LossyRelay(("127.0.0.1", engine.srt.port), loss, jitter)
    await relay.start()
    recovered, rekeyed = srt_counter("recovered"), srt_counter("rekeyed")
    undecryptable = srt_counter("undecryptable")
    try:
        publisher = await publish_srt(
            procs, relay.port, "publish:key1", 4, tmp_path / "pub.log", latency_ms, options=options
        )
        await eventually(lambda: registry.live_channel(3) is not None, within=10)
        channel = registry.live_channel(3)
        assert channel is not None
        assert await asyncio.wait_for(publisher.wait(), 20) == 0
        reasons = await end_reasons(control)
        # ffmpeg sends its SHUTDOWN once: where the relay lost it, the server sees only silence.
        assert reasons == ["publisher_stalled" if relay.lost_shutdown else "publisher_disconnected"]
        await asyncio.wait_for(asyncio.gather(rec_a.wait(), rec_b.wait()), 10)
        await eventually(lambda: not channel.live)
        # As a finished recording: without ENDLIST a demuxer waits for more segments forever.
        (channel.directory / "index.m3u8").write_text(channel.playlist() + "#EXT-X-ENDLIST\n")
        hls = probe(channel.directory / "index.m3u8")
    finally:
        relay.close()
        await registry.close()
    if loss:
        assert relay.dropped > 0
        assert srt_counter("recovered") > recovered  # losses were repaired, not skipped
    assert srt_counter("undecryptable") == undecryptable
    if more == ROTATE_KEYS:
        assert srt_counter("rekeyed") > rekeyed  # the keys did rotate, in-band
    for path in (tmp_path / "a.flv", tmp_path / "b.flv"):
        media = probe(path)
        assert media.first_video_keyframe, path
        assert media.monotonic, path
        assert FRAMES - 3 <= media.video_frames <= FRAMES + 1, (path, media)
        assert media.audio_packets > 150, (path, media)  # 4 s of 44.1 kHz AAC is ~172
    assert hls.first_video_keyframe and hls.monotonic
    assert FRAMES - 3 <= hls.video_frames <= FRAMES + 1, hls
    assert hls.audio_packets > 150, hls


async def test_srt_at_ten_percent_loss_stays_continuous(
    make_engine: object, procs: Processes, tmp_path: Path
) -> None:
    """10 % loss each way and 100 ms of jitter: the stream keeps going; losses are counted."""
    assert callable(make_engine)
    engine, control = await make_engine(srt_latency_ms=1000)
    port_a, rec_a = await procs.receiver(tmp_path / "a.flv")
    control.allow("key1", 1, [OutputSpec(1, "rtmp", f"rtmp://127.0.0.1:{port_a}/app/k")])
    relay = LossyRelay(("127.0.0.1", engine.srt.port), 0.10, 0.1)
    await relay.start()
    recovered, dropped = srt_counter("recovered"), srt_counter("dropped")
    try:
        publisher = await publish_srt(procs, relay.port, "publish:key1", 6, tmp_path / "p.log")
        await eventually(lambda: engine.session(1) is not None, within=15)
        assert await asyncio.wait_for(publisher.wait(), 30) == 0
        await end_reasons(control)
        await asyncio.wait_for(rec_a.wait(), 10)
    finally:
        relay.close()
    repaired = srt_counter("recovered") - recovered
    assert repaired > 0
    media = probe(tmp_path / "a.flv")
    assert media.monotonic
    # Continuous: most of the 180 frames arrive and decode (losses past the latency are counted).
    assert media.video_frames >= 150, (media, repaired, srt_counter("dropped") - dropped)


GST = shutil.which("gst-launch-1.0")


@pytest.mark.skipif(GST is None, reason="GStreamer (gst-launch-1.0) is not installed")
@pytest.mark.parametrize(("loss", "pbkeylen"), [(0.02, 0), (0.0, 24), (0.02, 24)])
async def test_gstreamer_srtsink_publishes_through_loss(
    make_engine: object, procs: Processes, tmp_path: Path, loss: float, pbkeylen: int
) -> None:
    """A second SRT implementation's caller (GStreamer's srtsink) with jitter and loss, in
    clear or encrypted with AES-192."""
    assert callable(make_engine)
    engine, control = await make_engine(srt_latency_ms=400)
    port_a, rec_a = await procs.receiver(tmp_path / "a.flv")
    control.allow(
        "gstkey",
        1,
        [OutputSpec(1, "rtmp", f"rtmp://127.0.0.1:{port_a}/app/k")],
        srt_passphrase=PASSPHRASE if pbkeylen else None,
    )
    secret = [f"passphrase={PASSPHRASE}", f"pbkeylen={pbkeylen}"] if pbkeylen else []
    relay = LossyRelay(("127.0.0.1", engine.srt.port), loss, 0.05)
    await relay.start()
    assert GST is not None
    try:
        publisher = await procs.start(
            GST, "-q", "-e",
            "videotestsrc", "num-buffers=120", "is-live=true", "!",
            "video/x-raw,width=320,height=240,framerate=30/1", "!",
            "x264enc", "tune=zerolatency", "key-int-max=30", "speed-preset=ultrafast", "!",
            "h264parse", "!", "mpegtsmux", "name=mux", "alignment=7", "!",
            "srtsink", f"uri=srt://127.0.0.1:{relay.port}?streamid=publish:gstkey",
            "latency=400", "wait-for-connection=true", *secret,
            "audiotestsrc", "is-live=true", "num-buffers=180", "!", "audioconvert", "!",
            "voaacenc", "!", "aacparse", "!", "mux.",
            log=tmp_path / "gst.log",
        )  # fmt: skip
        await eventually(lambda: engine.session(1) is not None, within=15)
        await asyncio.wait_for(publisher.wait(), 30)
        await end_reasons(control)
        await asyncio.wait_for(rec_a.wait(), 10)
    finally:
        relay.close()
    media = probe(tmp_path / "a.flv")
    assert media.first_video_keyframe and media.monotonic
    assert media.video_frames >= 110, media
    assert media.audio_packets > 100, media


@pytest.mark.parametrize(
    ("stream_passphrase", "options", "reason"),
    [
        (PASSPHRASE, "&passphrase=wrong%20horse%20battery&pbkeylen=16", "BADSECRET"),
        (PASSPHRASE, "", "UNSECURE"),
        (None, "&passphrase=correct%20horse%20battery", "UNSECURE"),
    ],
    ids=["wrong-passphrase", "no-passphrase", "unexpected-passphrase"],
)
async def test_srt_encryption_mismatch_is_refused(
    make_engine: object,
    procs: Processes,
    tmp_path: Path,
    stream_passphrase: str | None,
    options: str,
    reason: str,
) -> None:
    """libsrt's caller is refused with the SRT reject reason, and no session is recorded."""
    assert callable(make_engine)
    engine, control = await make_engine()
    control.allow("key1", 1, srt_passphrase=stream_passphrase)
    log = tmp_path / "pub.log"
    publisher = await publish_srt(procs, engine.srt.port, "publish:key1", 2, log, options=options)
    assert await asyncio.wait_for(publisher.wait(), 20) != 0
    assert engine.session(1) is None and not control.events
    text = log.read_text(errors="replace")
    assert f"ERROR:{reason}" in text, text  # libsrt's own reading of our reject code


async def test_srt_opus_reaches_hls_and_rtmp(
    make_engine: object, procs: Processes, tmp_path: Path
) -> None:
    """Opus in MPEG-TS (libopus): HLS (fMP4) carries it; RTMP gets it as Enhanced RTMP Opus."""
    assert callable(make_engine)
    engine, control = await make_engine()
    registry = HlsRegistry(Settings(hls_dir=tmp_path / "hls", hls_segment_seconds=1.0))
    engine.output_factories["hls"] = registry.factory
    port_a, rec_a = await procs.receiver(tmp_path / "a.flv")
    control.allow(
        "key1",
        1,
        [
            OutputSpec(1, "rtmp", f"rtmp://127.0.0.1:{port_a}/app/k"),
            OutputSpec(3, "hls", options={"dvrWindowSeconds": 60}),
        ],
    )
    try:
        log = tmp_path / "pub.log"
        publisher = await publish_srt(
            procs, engine.srt.port, "publish:key1", 4, log, audio_codec="libopus"
        )
        await eventually(lambda: registry.live_channel(3) is not None, within=10)
        channel = registry.live_channel(3)
        assert channel is not None
        assert await asyncio.wait_for(publisher.wait(), 20) == 0
        await end_reasons(control)
        await asyncio.wait_for(rec_a.wait(), 10)
        await eventually(lambda: not channel.live)
        (channel.directory / "index.m3u8").write_text(channel.playlist() + "#EXT-X-ENDLIST\n")
        hls = probe(channel.directory / "index.m3u8")
        assert audio_codec(channel.directory / "index.m3u8") == "opus"
    finally:
        await registry.close()
    assert hls.first_video_keyframe and hls.monotonic
    assert FRAMES - 3 <= hls.video_frames <= FRAMES + 1, hls
    assert hls.audio_packets > 180, hls  # 4 s of 20 ms Opus packets is 200
    rtmp = probe(tmp_path / "a.flv")
    assert FRAMES - 3 <= rtmp.video_frames <= FRAMES + 1, rtmp
    assert rtmp.audio_packets > 180, rtmp
    assert audio_codec(tmp_path / "a.flv") == "opus"


def audio_codec(path: Path) -> str:
    """The codec of a recording's first audio stream, once one of its packets decoded."""
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        for packet in container.demux(stream):
            if packet.size and packet.decode():
                return str(stream.codec_context.name)
    return ""
