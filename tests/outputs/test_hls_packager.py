"""The HLS packager in process: real FLV media through LiveStream -> Reader -> HlsOutput -> disk.

Checks the playlist with the m3u8 parser and decodes the result with PyAV; window trimming,
reconnects (discontinuity), DVR expiry and disk trouble use the channel directly.
"""

from __future__ import annotations

import asyncio
import errno
from pathlib import Path

import av
import m3u8
import pytest

from simulcast.codecs.hls import InitSegment, Segment
from simulcast.engine import OutputSpec, OutputStatus
from simulcast.media.stream import LiveStream
from simulcast.outputs import hls
from simulcast.outputs.hls import HlsChannel
from simulcast.outputs.hls_registry import HlsRegistry
from simulcast.settings import Settings
from tests.support import poll_until
from tests.support.hls import config, feed
from tests.support.media_units import units


class Link:
    """Records what an output reports to its supervisor."""

    def __init__(self) -> None:
        self.connected_calls = 0
        self.bytes = 0

    def connected(self) -> None:
        self.connected_calls += 1

    def sent(self, nbytes: int) -> None:
        self.bytes += nbytes


async def publish_session(registry: HlsRegistry, spec: OutputSpec) -> Link:
    """One session: a LiveStream with one HLS output fed the whole fixture, then closed."""
    stream = LiveStream(1, "s", gop_max_bytes=8 << 20, gop_max_seconds=10)
    reader = stream.add_reader(max_bytes=64 << 20, max_seconds=3600)
    link = Link()
    task = asyncio.create_task(registry.factory(spec).run(reader, link))
    for unit in units("media_avc_aac.flv"):
        stream.publish(unit)
        await asyncio.sleep(0)
    stream.close()
    await asyncio.wait_for(task, 10)
    return link


def settings(tmp_path: Path, **extra: object) -> Settings:
    return Settings(data_dir=tmp_path, hls_segment_seconds=1.0, **extra)  # type: ignore[arg-type]


async def test_session_packages_playable_hls(tmp_path: Path) -> None:
    registry = HlsRegistry(settings(tmp_path))
    await registry.start()
    spec = OutputSpec(7, "hls", options={"mode": "production", "dvrWindowSeconds": 60})
    opened: list[HlsChannel] = []
    original_open = registry._open

    def spy(s: OutputSpec) -> HlsChannel:
        opened.append(original_open(s))
        return opened[-1]

    registry._open = spy  # type: ignore[method-assign]
    link = await publish_session(registry, spec)
    channel = opened[0]
    assert link.connected_calls == 1 and link.bytes > 0
    assert registry.live_channel(7) is None  # session over: not served
    assert channel.segment_count >= 2

    text = channel.playlist("?apiKey=pk_x")
    parsed = m3u8.loads(text)
    assert parsed.version == 7 and parsed.target_duration >= 1
    assert all(seg.uri.endswith("?apiKey=pk_x") for seg in parsed.segments)
    assert parsed.segments[0].init_section.uri.endswith("?apiKey=pk_x")
    assert all(seg.program_date_time is not None for seg in parsed.segments)
    assert "#EXT-X-INDEPENDENT-SEGMENTS" in text

    # Decode the packaged files as a player would (local copy of the playlist, no suffix).
    local = channel.directory / "local.m3u8"
    local.write_text(channel.playlist() + "#EXT-X-ENDLIST\n")
    with av.open(str(local)) as container:
        frames = sum(1 for _ in container.decode(video=0))
    assert frames >= 30
    await registry.close()
    assert not channel.directory.exists()


async def test_reconnect_continues_playlist_with_discontinuity(tmp_path: Path) -> None:
    registry = HlsRegistry(settings(tmp_path))
    spec = OutputSpec(8, "hls", options={"dvrWindowSeconds": 600})
    await publish_session(registry, spec)
    channel = registry._channels[8]
    first = m3u8.loads(channel.playlist())
    await publish_session(registry, spec)
    assert registry._channels[8] is channel
    second = m3u8.loads(channel.playlist())
    assert len(second.segments) > len(first.segments)
    boundary = second.segments[len(first.segments)]
    assert boundary.discontinuity
    assert boundary.init_section.uri != first.segments[0].init_section.uri
    uris = [s.uri for s in second.segments]
    assert len(set(uris)) == len(uris)
    await registry.close()


async def test_output_reports_ready_and_window(tmp_path: Path) -> None:
    registry = HlsRegistry(settings(tmp_path))
    output = registry.factory(OutputSpec(9, "hls", options={"dvrWindowSeconds": 30}))
    base = OutputStatus(9, "hls", "live")
    assert output.report(base) == base  # the attempt has not opened its channel
    stream = LiveStream(1, "s", gop_max_bytes=8 << 20, gop_max_seconds=10)
    reader = stream.add_reader(max_bytes=1 << 20, max_seconds=60)
    task = asyncio.create_task(output.run(reader, Link()))
    await asyncio.sleep(0)  # the attempt opens its channel before it first waits for media
    channel = registry.live_channel(9)
    assert channel is not None and not output.report(base).ready
    init = InitSegment(b"init", 1, None, None)
    await channel.add(init, 0)
    for i in range(3):
        await channel.add(Segment(i + 1, b"x" * 10, i * 1000, 1.0, False, 1), 1000.0 + i)
    status = output.report(base)
    assert status.ready and status.window_seconds == pytest.approx(3.0)
    assert status.available_from_ms == 1_000_000
    stream.close()
    await asyncio.wait_for(task, 10)
    assert output.report(base) == base  # the session is over: nothing to play
    await registry.close()


def disk_segments(channel: HlsChannel) -> list[Path]:
    return sorted(channel.directory.glob("*.m4s"))


async def test_window_trims_playlist_and_deletes_after_grace(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    channel = HlsChannel(1, tmp_path, config(window_seconds=10))
    channel.begin_period()
    await feed(channel, 25)
    parsed = m3u8.loads(channel.playlist())
    assert 9.0 <= sum(s.duration for s in parsed.segments) <= 11.0
    assert parsed.media_sequence == 15
    # Retired segments stay readable during the grace, then their files go.
    retired = f"{channel.epoch}-14.m4s"
    assert await channel.read(retired) is not None
    now = hls.time.monotonic()
    monkeypatch.setattr(hls.time, "monotonic", lambda: now + 60)
    await feed(channel, 1, start=1025.0)
    assert await channel.read(retired) is None
    # On disk: the playlist plus the one segment retired just now (still in its grace).
    assert len(disk_segments(channel)) == len(m3u8.loads(channel.playlist()).segments) + 1
    # Only the newest segments stay in memory; the rest is read from disk.
    in_memory = [e for e in channel._entries if e.file.data is not None]
    assert len(in_memory) == 2
    oldest = channel._entries[0].file
    assert oldest.data is None and await channel.read(oldest.name) == bytes(100)


async def test_live_only_keeps_a_few_segments(tmp_path: Path) -> None:
    channel = HlsChannel(1, tmp_path, config(window_seconds=0, live_segments=4))
    channel.begin_period()
    await feed(channel, 12)
    assert channel.segment_count == 4


async def test_discontinuity_sequence_counts_removed_discontinuities(tmp_path: Path) -> None:
    channel = HlsChannel(1, tmp_path, config(window_seconds=5))
    channel.begin_period()
    await feed(channel, 3)
    channel.end_period()
    channel.begin_period()
    await feed(channel, 10, start=1003.0)
    parsed = m3u8.loads(channel.playlist())
    assert parsed.discontinuity_sequence == 1
    assert not any(s.discontinuity for s in parsed.segments)


async def test_low_disk_drops_oldest_dvr_segments_first(tmp_path: Path) -> None:
    channel = HlsChannel(1, tmp_path, config(window_seconds=3600))
    channel.begin_period()
    await feed(channel, 10)
    monkeypatch_free = 1 << 62
    channel.config = config(window_seconds=3600, min_free_bytes=monkeypatch_free)
    await feed(channel, 1, start=1010.0)
    assert channel.segment_count == 3 + 1  # the floor keeps 3, then the new one is added
    assert channel._entries[-1].sequence == 10  # the live edge is intact


async def test_disk_full_keeps_live_edge_in_memory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    channel = HlsChannel(1, tmp_path, config(window_seconds=3600, live_segments=4))
    channel.begin_period()
    await feed(channel, 8)

    def full(path: Path, data: bytes) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(hls, "_write_atomically", full)
    await feed(channel, 3, start=1008.0)
    assert channel.segment_count == 4
    newest = channel._entries[-1].file
    assert newest.path is None and await channel.read(newest.name) == bytes(100)
    assert channel.ready is True


async def test_dvr_expires_after_window_without_a_new_session(tmp_path: Path) -> None:
    registry = HlsRegistry(settings(tmp_path))
    await registry.start()
    spec = OutputSpec(3, "hls", options={"dvrWindowSeconds": 0})
    channel = registry._open(spec)
    await feed(channel, 2)
    registry._release(channel)

    async def expired() -> bool:
        return 3 not in registry._channels

    await poll_until(expired, 5, "the channel to expire")
    assert not channel.directory.exists()
    await registry.close()
