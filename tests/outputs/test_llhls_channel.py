"""A low-latency channel in process: parts from real media, blocking waits and preload hints."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import m3u8

from simulcast.codecs.hls import Part, ReloadRequest, Segment, Segmenter, SegmentEvent
from simulcast.outputs.hls import ChannelConfig, HlsChannel
from tests.support.media_units import units


def events(repeat: int = 1) -> list[SegmentEvent]:
    """The fixture's events (about 3.5 s of media), ``repeat`` times in a row."""
    segmenter = Segmenter(1.0, 0.5)
    result: list[SegmentEvent] = []
    for loop in range(repeat):
        for unit in units("media_avc_aac.flv"):
            result += segmenter.push(
                dataclasses.replace(unit, timestamp=unit.timestamp + loop * 4000)
            )
    return result


def channel(tmp_path: Path, window: int = 60) -> HlsChannel:
    config = ChannelConfig(1.0, window, 6, 4, 0, part_target=0.5)
    made = HlsChannel(1, tmp_path, config)
    made.begin_period()
    return made


async def test_a_thousand_waiters_wake_on_the_part_and_not_before(tmp_path: Path) -> None:
    ch = channel(tmp_path)
    pending = events()
    # Up to the first part of the second segment.
    while not any(isinstance(e, Segment) for e in pending[:1]):
        await ch.add(pending.pop(0), 0.0)
    await ch.add(pending.pop(0), 0.0)  # segment 0 complete
    first_part = next(i for i, e in enumerate(pending) if isinstance(e, Part))
    for event in pending[:first_part]:
        await ch.add(event, 0.0)
    pending = pending[first_part:]
    request = ReloadRequest(1, 0)  # the first part of segment 1
    waiters = [asyncio.create_task(ch.wait_for(request, 30)) for _ in range(1000)]
    await asyncio.sleep(0.05)
    assert not any(w.done() for w in waiters)
    await ch.add(pending.pop(0), 1.0)
    assert all(await asyncio.gather(*waiters))
    text = ch.playlist()
    assert "#EXT-X-PRELOAD-HINT:TYPE=PART" in text and f"{ch.epoch}-1.0.m4s" in text
    # Answered at once from now on; a part not yet there waits and times out.
    assert await ch.wait_for(request, 0.01)
    assert not await ch.wait_for(ReloadRequest(1, 1), 0.05)
    await ch.close()


async def test_preload_hint_request_blocks_until_the_part_exists(tmp_path: Path) -> None:
    ch = channel(tmp_path)
    pending = events()
    while not isinstance(pending[0], Part):
        await ch.add(pending.pop(0), 0.0)
    hint = m3u8.loads(ch.playlist()).preload_hint.uri
    assert hint == f"{ch.epoch}-0.0.m4s"
    reader = asyncio.create_task(ch.read(hint))
    await asyncio.sleep(0.05)
    assert not reader.done()
    part = pending.pop(0)
    assert isinstance(part, Part)
    await ch.add(part, 0.0)
    assert await reader == part.data
    # Only the hinted part waits: a name further ahead is simply not there.
    assert await asyncio.wait_for(ch.read(f"{ch.epoch}-0.5.m4s"), 1) is None
    await ch.close()


async def test_end_of_stream_releases_waiters(tmp_path: Path) -> None:
    ch = channel(tmp_path)
    waiter = asyncio.create_task(ch.wait_for(ReloadRequest(0, 0), 30))
    reader = asyncio.create_task(ch.read(f"{ch.epoch}-0.0.m4s"))
    await asyncio.sleep(0.05)
    ch.end_period()
    assert await asyncio.wait_for(waiter, 1) is False
    assert await asyncio.wait_for(reader, 1) is None
    await ch.close()


async def test_parts_are_listed_near_the_edge_and_dropped_later(tmp_path: Path) -> None:
    ch = channel(tmp_path)
    part_names: list[list[str]] = [[]]
    for event in events(repeat=2):
        await ch.add(event, 0.0)
        if isinstance(event, Part):
            part_names[-1].append(f"{ch.epoch}-{len(part_names) - 1}.{len(part_names[-1])}.m4s")
        elif isinstance(event, Segment):
            part_names.append([])
    complete = part_names[:-1]
    assert len(complete) >= 7
    parsed = m3u8.loads(ch.playlist())
    listed = {p.uri for s in parsed.segments for p in s.parts}
    # Parts of the segments starting in the last three target durations (2 s: the fixture's
    # first segment is 1.02 s long), not older ones.
    assert set(complete[-1]) <= listed and not set(complete[0]) & listed
    assert set(part_names[-1]) <= listed
    # Parts stay fetchable a little longer than listed, then are gone.
    assert await ch.read(complete[-1][0]) is not None
    assert await ch.read(complete[-5][0]) is not None
    assert await ch.read(complete[0][0]) is None
    # Regular segments are all still there, as without low latency.
    assert [s.uri for s in parsed.segments if s.uri] == [
        f"{ch.epoch}-{i}.m4s" for i in range(len(complete))
    ]
    await ch.close()
