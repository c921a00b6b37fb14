"""The recorder output on the real engine: a protected session whose publisher is killed and
comes back is one recording file (publisher, slate, publisher) whose every frame decodes; a
shift to another resolution stays in the file; a full disk fails the recorder alone."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import av
import pytest

from simulcast.control.archiver import check_recording
from simulcast.engine import ARCHIVE_FILE_OPTION, OutputSpec
from simulcast.outputs.recorder import RecorderRegistry
from simulcast.settings import Settings
from tests.support import eventually
from tests.support.media import Processes, end_reasons

pytestmark = pytest.mark.media


async def recording(
    make_engine: Any, procs: Processes, tmp_path: Path
) -> tuple[Any, Any, asyncio.subprocess.Process]:
    """An engine recording key ``key`` (protected for 30 s) to ``archives/rec.mp4`` under
    ``tmp_path``, and a 60 s publisher once its session is open."""
    settings = Settings(data_dir=tmp_path, archive_fragment_seconds=1.0)
    engine, control = await make_engine(data_dir=tmp_path)
    engine.output_factories["archive"] = RecorderRegistry(settings).factory
    spec = OutputSpec(1, "archive", options={ARCHIVE_FILE_OPTION: "rec.mp4"})
    control.allow("key", 1, [spec], protection_seconds=30)
    first = await procs.publish(engine.ingest.port, "key", seconds=60)
    await eventually(lambda: engine.session(1) is not None, 15)
    return engine, control, first


async def test_one_file_through_a_protection_gap(
    make_engine: Any, procs: Processes, tmp_path: Path
) -> None:
    engine, control, first = await recording(make_engine, procs, tmp_path)
    await asyncio.sleep(3)
    first.kill()
    await eventually(lambda: engine.session(1).protecting, 10)
    await asyncio.sleep(4)
    second = await procs.publish(engine.ingest.port, "key", seconds=3)
    await eventually(lambda: not engine.session(1).protecting, 15)
    assert await asyncio.wait_for(second.wait(), 20) == 0
    await eventually(lambda: engine.session(1) is None, 15)
    assert await end_reasons(control) == ["publisher_disconnected"]

    path = tmp_path / "archives" / "rec.mp4"
    assert [p.name for p in path.parent.iterdir()] == ["rec.mp4"], "one file per session"
    check = await asyncio.to_thread(check_recording, path)
    # ~3 s live + ~4 s slate (plus the ~1 s the loss takes to detect) + ~3 s live
    assert 9 <= check.duration_seconds <= 14, check
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        packets = frames = 0
        last = -1
        for packet in container.demux(stream):
            if not packet.size:
                continue
            assert packet.dts is not None and packet.dts > last, "timestamps only grow"
            last = packet.dts
            packets += 1
            frames += len(packet.decode())
        frames += len(stream.codec_context.decode(None))
    assert frames == packets, "every frame decodes (publisher, slate and publisher again)"
    assert frames >= 9 * 30


async def test_a_shift_to_another_resolution_stays_in_the_file_and_decodes(
    make_engine: Any, procs: Processes, tmp_path: Path
) -> None:
    """The new device's SPS/PPS travel in band, so its frames decode at their own size."""
    engine, _, first = await recording(make_engine, procs, tmp_path)
    await asyncio.sleep(3)
    second = await procs.publish(engine.ingest.port, "key?shift=1", seconds=3, size="480x360")
    assert await asyncio.wait_for(second.wait(), 20) == 0
    await eventually(lambda: engine.session(1) is None, 15)
    assert first.returncode is not None  # shifted out

    path = tmp_path / "archives" / "rec.mp4"
    sizes: list[tuple[int, int]] = []
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        packets = frames = 0
        for packet in container.demux(stream):
            if not packet.size:
                continue
            packets += 1
            for frame in [*packet.decode()]:
                frames += 1
                if not sizes or sizes[-1] != (frame.width, frame.height):
                    sizes.append((frame.width, frame.height))
        frames += len(stream.codec_context.decode(None))
    assert sizes == [(320, 240), (480, 360)], sizes
    assert frames >= packets - 2 and frames >= 5 * 30


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A 256 KiB tmpfs (needs the privilege to mount; skipped without it)."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


async def test_disk_full_fails_the_recorder_and_leaves_the_push_alone(
    make_engine: Any, procs: Processes, tmp_path: Path, tiny_disk: Path
) -> None:
    settings = Settings(data_dir=tmp_path, archive_dir=tiny_disk, archive_fragment_seconds=1.0)
    engine, control = await make_engine(data_dir=tmp_path)
    engine.output_factories["archive"] = RecorderRegistry(settings).factory
    port, receiver = await procs.receiver(tmp_path / "push.flv")
    outputs = [
        OutputSpec(1, "archive", options={ARCHIVE_FILE_OPTION: "rec.mp4"}),
        OutputSpec(2, "rtmp", f"rtmp://127.0.0.1:{port}/app/k"),
    ]
    control.allow("key", 1, outputs)
    publisher = await procs.publish(engine.ingest.port, "key", seconds=10)
    await eventually(lambda: engine.session(1) is not None, 15)
    await eventually(lambda: engine.session(1).outputs[1].state == "failed", 20)
    info = engine.session(1)
    assert "No space left on device" in (info.outputs[1].last_error or ""), info.outputs[1]
    assert info.outputs[2].state == "live"
    assert await asyncio.wait_for(publisher.wait(), 30) == 0
    assert await asyncio.wait_for(receiver.wait(), 15) == 0
    # The push got the whole stream; the recording holds what fit, and still plays.
    with av.open(str(tmp_path / "push.flv")) as container:
        pushed = sum(1 for p in container.demux(video=0) if p.size)
    assert pushed >= 9 * 30
    check = await asyncio.to_thread(check_recording, tiny_disk / "rec.mp4")
    assert check.fragments >= 1 and check.size <= 256 * 1024
