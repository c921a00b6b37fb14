"""End to end, v1 inputs over SRT: an input pulls (``pullUrl: srt://``, our caller mode) from
ffmpeg acting as an SRT listener (libsrt), in clear and encrypted, through the lossy relay; and
ffmpeg publishes into an input with its key as the stream id. What the instance's RTMP
destination receives must decode."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from simulcast.engine import ElementSpec
from tests.support import eventually, free_port
from tests.support.instances import INPUT1, KEY1, destinations, element_state, output, spec
from tests.support.lossy_relay import LossyRelay
from tests.support.media import FFMPEG, X264, Processes, probe
from tests.support.srt import publish_srt

pytestmark = pytest.mark.media

SECONDS = 5
PASSPHRASE = "pulled-over-srt-secret"


async def srt_listener(procs: Processes, port: int, options: str, log: Path) -> Any:
    """ffmpeg serving test video + tone as MPEG-TS to one SRT caller (it waits for it)."""
    return await procs.start(
        FFMPEG, "-hide_banner", "-nostats", "-re",
        "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=30",
        "-f", "lavfi", "-i", "sine=frequency=440",
        "-pix_fmt", "yuv420p", *X264, "-c:a", "aac", "-t", str(SECONDS),
        "-f", "mpegts", f"srt://127.0.0.1:{port}?mode=listener&pkt_size=1316{options}",
        log=log,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("loss", "pbkeylen"), [(0.0, 0), (0.02, 32)], ids=["clean", "aes256-2pct-loss"]
)
async def test_pull_input_calls_an_srt_listener(
    make_engine: Any, procs: Processes, tmp_path: Path, loss: float, pbkeylen: int
) -> None:
    engine, _ = await make_engine()
    source_port = free_port()
    secret = f"&passphrase={PASSPHRASE}&pbkeylen={pbkeylen}" if pbkeylen else ""
    source = await srt_listener(procs, source_port, secret, tmp_path / "source.log")
    relay = LossyRelay(("127.0.0.1", source_port), loss, 0.05 if loss else 0.0)
    await relay.start()
    port_a, rec_a = await procs.receiver(tmp_path / "a.flv")
    url = f"srt://127.0.0.1:{relay.port}?latency=400{secret}"
    pulled = ElementSpec("inputstream-1", "inputstream", {"pullUrl": url})
    dests = {"a": f"rtmp://127.0.0.1:{port_a}/app/k"}
    try:
        await engine.start_instance(spec([pulled, output(["a"], "inputstream-1")], dests))
        await engine.set_outputs("inst-1", True)
        await eventually(lambda: element_state(engine, "inputstream-1")["live"], within=10)
        await eventually(lambda: destinations(engine)["a"] == "live", within=5)
        assert await asyncio.wait_for(source.wait(), 20) == 0
        # The listener said goodbye: the input is down, the pull keeps calling.
        await eventually(lambda: not element_state(engine, "inputstream-1")["live"], within=10)
        assert await engine.stop_instance("inst-1", "test")
        await asyncio.wait_for(rec_a.wait(), 10)
    finally:
        relay.close()
    if loss:
        assert relay.dropped > 0
    media = probe(tmp_path / "a.flv")
    assert media.first_video_keyframe and media.monotonic
    assert media.video_frames >= SECONDS * 30 - 15, media
    assert media.audio_packets > SECONDS * 40, media


async def test_srt_publish_into_an_instance_input(
    make_engine: Any, procs: Processes, tmp_path: Path
) -> None:
    """V1.md: ``srt://HOST:8890?streamid=publish:{streamkey}`` publishes into the input."""
    engine, control = await make_engine()
    port_a, rec_a = await procs.receiver(tmp_path / "a.flv")
    dests = {"a": f"rtmp://127.0.0.1:{port_a}/app/k"}
    await engine.start_instance(spec([INPUT1, output(["a"], "inputstream-1")], dests))
    await engine.set_outputs("inst-1", True)
    ingest = element_state(engine, "inputstream-1")["ingest"]
    assert ingest["srt"] == f"srt://127.0.0.1:{engine.srt.port}?streamid=publish:{KEY1}"
    publisher = await publish_srt(procs, engine.srt.port, f"publish:{KEY1}", 3, tmp_path / "p.log")
    await eventually(lambda: element_state(engine, "inputstream-1")["live"], within=10)
    assert await asyncio.wait_for(publisher.wait(), 20) == 0
    await eventually(lambda: not element_state(engine, "inputstream-1")["live"], within=10)
    assert await engine.stop_instance("inst-1", "test")
    await asyncio.wait_for(rec_a.wait(), 10)
    assert not control.keys  # the control plane was never asked about the input's key
    media = probe(tmp_path / "a.flv")
    assert media.first_video_keyframe and media.video_frames >= 80, media
