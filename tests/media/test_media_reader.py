"""Reader and LiveStream: bounds, drop-to-keyframe, config never dropped, priming."""

from __future__ import annotations

import asyncio

import pytest

from simulcast.codecs.unit import MediaUnit
from simulcast.media.reader import ReaderClosed
from simulcast.media.stream import LiveStream
from tests.support.media_units import audio, audio_header, metadata, video, video_header


def make_stream(gop_bytes: int = 10_000_000, gop_seconds: float = 10.0) -> LiveStream:
    return LiveStream(1, "s1", gop_max_bytes=gop_bytes, gop_max_seconds=gop_seconds)


def drain(reader_queue: object) -> list[MediaUnit]:
    from simulcast.media.reader import Reader

    assert isinstance(reader_queue, Reader)
    out: list[MediaUnit] = []
    while len(reader_queue):
        out.append(reader_queue._take())
    return out


def publish_gop(stream: LiveStream, start: int, frames: int = 30, size: int = 100) -> None:
    """One 30 fps GOP with interleaved audio."""
    for i in range(frames):
        ts = start + i * 33
        stream.publish(video(ts, key=i == 0, size=size))
        stream.publish(audio(ts))


def test_new_reader_starts_with_config_then_gop() -> None:
    stream = make_stream()
    for unit in (metadata(), video_header(), audio_header()):
        stream.publish(unit)
    publish_gop(stream, 0)
    publish_gop(stream, 1000)
    stream.publish(video(1990))  # inter frame of the second GOP
    reader = stream.add_reader(max_bytes=1_000_000, max_seconds=4)
    units = drain(reader)
    assert units[0].payload == metadata().payload
    assert units[1].sequence_header and units[1].kind == video_header().kind
    assert units[2].sequence_header and units[2].kind == audio_header().kind
    assert units[3].keyframe and units[3].timestamp == 1000
    assert units[-1].timestamp == 1990
    assert len(units) == 3 + 60 + 1


def test_full_reader_drops_to_next_keyframe_and_keeps_config() -> None:
    stream = make_stream()
    stream.publish(video_header())
    stream.publish(audio_header())
    reader = stream.add_reader(max_bytes=48 * 1024, max_seconds=100)
    publish_gop(stream, 0, size=1000)  # ~31 kB: fits
    stream.publish(video_header(990, tag=b"\x02"))  # a new sequence header mid-stream
    publish_gop(stream, 1000, size=1000)  # overflows half-way through
    assert reader.dropped_frames > 0
    units = drain(reader)
    media = [u for u in units if not u.sequence_header]
    headers = [u for u in units if u.sequence_header]
    # Both original headers and the new one survive, in order.
    assert [h.payload[-1:] for h in headers if h.kind == video_header().kind] == [b"\x01", b"\x02"]
    assert len(headers) == 3
    # Nothing media is left queued from before the overflow; nothing after it until a keyframe.
    assert media == []
    publish_gop(stream, 2000, size=100)
    units = drain(reader)
    assert units[0].keyframe and units[0].timestamp == 2000
    assert len(units) == 60


def test_bound_in_seconds() -> None:
    stream = make_stream()
    reader = stream.add_reader(max_bytes=10_000_000, max_seconds=1.0)
    publish_gop(stream, 0)  # 0..957 ms: fits in one second
    assert reader.dropped_frames == 0
    stream.publish(video(1100))  # span 1.1 s > 1 s: drop to next keyframe
    assert reader.dropped_frames == 61
    assert len(reader) == 0
    stream.publish(audio(1100))
    assert reader.dropped_frames == 62
    stream.publish(video(1200, key=True))
    assert len(reader) == 1


def test_bound_in_bytes_never_exceeded_by_media() -> None:
    stream = make_stream()
    stream.publish(video_header())
    reader = stream.add_reader(max_bytes=5_000, max_seconds=100)
    for gop in range(10):
        publish_gop(stream, gop * 1000, size=300)
        assert reader.queued_bytes <= 5_000
    assert reader.dropped_frames > 0
    assert any(u.sequence_header for u in drain(reader))


def test_audio_only_drops_oldest() -> None:
    stream = make_stream()
    stream.publish(audio_header())
    reader = stream.add_reader(max_bytes=10_000_000, max_seconds=1.0)
    for i in range(100):
        stream.publish(audio(i * 21))
    units = drain(reader)
    assert units[0].sequence_header
    media = [u.timestamp for u in units[1:]]
    assert media[-1] == 99 * 21
    assert media[-1] - media[0] <= 1000
    assert reader.dropped_frames == 100 - len(media)


def test_audio_only_new_reader_starts_anywhere_with_small_cache() -> None:
    stream = make_stream()
    stream.publish(audio_header())
    for i in range(200):
        stream.publish(audio(i * 21))
    units = drain(stream.add_reader(max_bytes=1_000_000, max_seconds=4))
    assert units[0].sequence_header
    assert 0 < len(units) - 1 <= 30  # ~0.5 s of audio


def test_gop_cache_overflow_starts_next_reader_at_next_keyframe() -> None:
    stream = make_stream(gop_bytes=2_000)
    stream.publish(video_header())
    publish_gop(stream, 0, size=200)  # 30 * 220 bytes > 2 kB: not cacheable
    assert stream.gop == ()
    reader = stream.add_reader(max_bytes=1_000_000, max_seconds=4)
    assert [u.sequence_header for u in drain(reader)] == [True]
    stream.publish(video(1000, key=True))
    assert drain(reader)[0].keyframe


def test_resync_restarts_from_gop_without_counting_drops() -> None:
    stream = make_stream()
    stream.publish(video_header())
    reader = stream.add_reader(max_bytes=1_000_000, max_seconds=4)
    publish_gop(stream, 0)
    publish_gop(stream, 1000)
    reader.resync()
    units = drain(reader)
    assert units[0].sequence_header and units[1].keyframe and units[1].timestamp == 1000
    assert reader.dropped_frames == 0


async def test_async_get_and_close() -> None:
    stream = make_stream()
    reader = stream.add_reader(max_bytes=1_000_000, max_seconds=4)
    getter = asyncio.create_task(reader.get_batch())
    await asyncio.sleep(0)
    assert not getter.done()
    stream.publish(video(0, key=True))
    stream.publish(video(33))
    assert [u.timestamp for u in await getter] in ([0], [0, 33])
    stream.close()
    with pytest.raises(ReaderClosed):
        while True:
            await reader.get()


async def test_batches_yield_what_is_queued_then_end_when_closed() -> None:
    stream = make_stream()
    reader = stream.add_reader(max_bytes=1_000_000, max_seconds=4)
    stream.publish(video(0, key=True))
    stream.publish(video(33))
    stream.close()
    seen = [u.timestamp async for batch in reader.batches() for u in batch]
    assert seen == [0, 33]


class Intake:
    """A sink that takes units while ``accepting`` and counts batch ends."""

    def __init__(self) -> None:
        self.accepting = True
        self.offered: list[int] = []
        self.taken: list[int] = []
        self.flushes = 0

    def offer(self, unit: MediaUnit) -> bool:
        self.offered.append(unit.timestamp)
        if self.accepting:
            self.taken.append(unit.timestamp)
        return self.accepting

    def flush(self) -> None:
        self.flushes += 1


def test_sink_takes_units_while_the_queue_is_empty_and_order_survives_refusals() -> None:
    stream = make_stream()
    stream.publish(video_header())
    reader = stream.add_reader(max_bytes=1_000_000, max_seconds=4)
    sink = Intake()
    reader.set_sink(sink)
    stream.publish(video(10, key=True))  # queue still holds the header: queued behind it
    assert sink.offered == [] and len(reader) == 2
    drain(reader)
    stream.publish(video(20))
    stream.publish(audio(25))
    assert sink.taken == [20, 25] and len(reader) == 0  # caught up: no queueing, no wake-up
    stream.flush()
    assert sink.flushes == 1  # the batch ends: the sink writes once

    sink.accepting = False  # the consumer's socket backs up: units queue, in order
    stream.publish(video(30))
    sink.accepting = True
    stream.publish(video(40))  # must not overtake 30
    assert sink.taken == [20, 25]
    assert [u.timestamp for u in drain(reader)] == [30, 40]
    stream.publish(video(50))
    assert sink.taken == [20, 25, 50]
    reader.set_sink(None)
    stream.publish(video(60))
    stream.flush()
    assert sink.taken == [20, 25, 50] and sink.flushes == 1 and len(reader) == 1


def test_sink_is_not_offered_frames_while_skipping_to_a_keyframe() -> None:
    stream = make_stream()
    stream.publish(video_header())
    reader = stream.add_reader(max_bytes=3_000, max_seconds=100)
    drain(reader)
    sink = Intake()
    sink.accepting = False
    reader.set_sink(sink)
    stream.publish(video(0, key=True, size=2_000))
    stream.publish(video(33, size=2_000))  # overflows: queue dropped, skipping to a keyframe
    assert reader.dropped_frames == 2 and len(reader) == 0
    stream.publish(video(66, size=100))  # empty queue, but still skipping: dropped, not offered
    assert sink.offered == [0] and reader.dropped_frames == 3  # 33 was behind 0 in the queue
    stream.publish(video(99, key=True, size=100))
    assert sink.offered == [0] and [u.timestamp for u in drain(reader)] == [99]
    stream.publish(video(132))
    assert sink.offered == [0, 132]  # caught up again
    reader.close()
    stream.publish(video(165))
    assert sink.offered == [0, 132]  # a closed reader offers nothing
