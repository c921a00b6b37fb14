"""Low-latency HLS, sans-I/O: parts from the segmenter, LL playlists, blocking-reload decisions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import av
import m3u8
import pytest

from simulcast.codecs.hls import (
    InitSegment,
    LowLatency,
    Part,
    PlaylistPart,
    PlaylistSegment,
    Readiness,
    ReloadRequest,
    Segment,
    Segmenter,
    SegmentEvent,
    awaited_position,
    reload_readiness,
    render_media_playlist,
)
from tests.support.media_units import source_video_frames, units

START = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)


def cut(name: str, target: float, part_target: float | None) -> list[SegmentEvent]:
    segmenter = Segmenter(target, part_target)
    events: list[SegmentEvent] = []
    for unit in units(name):
        events += segmenter.push(unit)
    return events + segmenter.flush()


def grouped(events: list[SegmentEvent]) -> list[tuple[list[Part], Segment]]:
    """Each segment with the parts emitted before it."""
    result: list[tuple[list[Part], Segment]] = []
    parts: list[Part] = []
    for event in events:
        if isinstance(event, Part):
            parts.append(event)
        elif isinstance(event, Segment):
            result.append((parts, event))
            parts = []
    assert not parts, "parts after the last segment"
    return result


@pytest.mark.parametrize("name", ["media_avc_aac.flv", "media_hevc.flv", "media_aac_only.flv"])
def test_parts_make_up_their_segment_exactly(name: str) -> None:
    with_parts = grouped(cut(name, 1.0, 0.5))
    without = [e for e in cut(name, 1.0, None) if isinstance(e, Segment)]
    assert with_parts and len(with_parts) == len(without)
    for index, ((parts, segment), plain) in enumerate(zip(with_parts, without, strict=True)):
        last = index == len(without) - 1  # ended by the flush, its end is an estimate
        assert len(parts) >= (1 if last else 2)
        # The segment is the concatenation of its parts: a player switching from parts to
        # segments (or the other way) sees the same bytes.
        assert segment.data == b"".join(p.data for p in parts)
        assert sum(p.duration_s for p in parts) == pytest.approx(segment.duration_s, abs=0.002)
        # The segment boundaries and durations are those of regular HLS.
        assert segment.start_dts_ms == plain.start_dts_ms
        assert segment.duration_s == pytest.approx(plain.duration_s, abs=0.05 if last else 0)
        assert parts[0].independent and parts[0].start_dts_ms == segment.start_dts_ms
        assert all(p.duration_s <= 0.5 + 0.002 for p in parts[:-1])
        if name != "media_aac_only.flv":
            # Only the first part of a video segment starts on a keyframe.
            assert not any(p.independent for p in parts[1:])


def test_parts_decode_to_every_frame(tmp_path: Path) -> None:
    events = cut("media_avc_aac.flv", 1.0, 0.5)
    init = next(e for e in events if isinstance(e, InitSegment))
    path = tmp_path / "parts.mp4"
    path.write_bytes(init.data + b"".join(e.data for e in events if isinstance(e, Part)))
    with av.open(str(path)) as container:
        frames = sum(1 for _ in container.decode(video=0))
    assert frames == source_video_frames("media_avc_aac.flv")


def test_without_part_target_segments_are_one_fragment() -> None:
    events = cut("media_avc_aac.flv", 1.0, None)
    assert not any(isinstance(e, Part) for e in events)
    for segment in (e for e in events if isinstance(e, Segment)):
        assert segment.data.count(b"moof") == 1


def _ll_segments() -> list[PlaylistSegment]:
    segments = []
    for i in range(6):
        parts = tuple(PlaylistPart(f"s{i}.{p}.m4s", 0.5, independent=p == 0) for p in range(4))
        segments.append(
            PlaylistSegment(
                f"s{i}.m4s", 2.0, program_date_time=START + timedelta(seconds=2 * i), parts=parts
            )
        )
    open_parts = (PlaylistPart("s6.0.m4s", 0.5, True), PlaylistPart("s6.1.m4s", 0.5))
    segments.append(
        PlaylistSegment(
            None, 1.0, program_date_time=START + timedelta(seconds=12), parts=open_parts
        )
    )
    return segments


def test_low_latency_playlist_golden() -> None:
    text = render_media_playlist(
        _ll_segments(),
        2.0,
        10,
        0,
        "init.mp4",
        uri_suffix="?k=1",
        low_latency=LowLatency(0.5, "s6.2.m4s"),
    )
    lines = text.splitlines()
    assert lines[:9] == [
        "#EXTM3U",
        "#EXT-X-VERSION:7",
        "#EXT-X-TARGETDURATION:2",
        "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=1.500,CAN-SKIP-UNTIL=12.0",
        "#EXT-X-PART-INF:PART-TARGET=0.500",
        "#EXT-X-MEDIA-SEQUENCE:10",
        "#EXT-X-DISCONTINUITY-SEQUENCE:0",
        "#EXT-X-INDEPENDENT-SEGMENTS",
        '#EXT-X-MAP:URI="init.mp4?k=1"',
    ]
    # Parts only of segments starting within three target durations (6 s) of the end: the
    # open segment (1 s), s5 (3 s) and s4 (5 s); s3 starts 7 s from the end and is plain.
    part_lines = [ln for ln in lines if ln.startswith("#EXT-X-PART:")]
    assert part_lines[0] == '#EXT-X-PART:DURATION=0.500,URI="s4.0.m4s?k=1",INDEPENDENT=YES'
    assert part_lines[1] == '#EXT-X-PART:DURATION=0.500,URI="s4.1.m4s?k=1"'
    assert len(part_lines) == 2 * 4 + 2
    assert lines[-3:] == [
        '#EXT-X-PART:DURATION=0.500,URI="s6.0.m4s?k=1",INDEPENDENT=YES',
        '#EXT-X-PART:DURATION=0.500,URI="s6.1.m4s?k=1"',
        '#EXT-X-PRELOAD-HINT:TYPE=PART,URI="s6.2.m4s?k=1"',
    ]
    # A player that ignores parts sees the same six segments as regular HLS.
    parsed = m3u8.loads(text)
    assert [s.uri for s in parsed.segments if s.uri] == [f"s{i}.m4s?k=1" for i in range(6)]
    assert parsed.server_control.can_block_reload == "YES"
    assert parsed.part_inf.part_target == 0.5
    assert parsed.preload_hint.uri == "s6.2.m4s?k=1"
    regular = render_media_playlist(
        [s for s in _ll_segments() if s.uri is not None], 2.0, 10, 0, "init.mp4", uri_suffix="?k=1"
    )
    plain_lines = [ln for ln in regular.splitlines() if not ln.startswith("#EXT-X-PART")]
    assert [
        ln for ln in lines if not ln.startswith(("#EXT-X-PART", "#EXT-X-SERVER", "#EXT-X-PRE"))
    ][: len(plain_lines) - 1] == plain_lines[:-1]


def test_part_target_covers_a_longer_part() -> None:
    segments = [PlaylistSegment("a.m4s", 1.0, parts=(PlaylistPart("a.0.m4s", 0.5112),))]
    text = render_media_playlist(segments, 1.0, 0, 0, "i.mp4", low_latency=LowLatency(0.5, None))
    assert "#EXT-X-PART-INF:PART-TARGET=0.511\n" in text
    assert "PART-HOLD-BACK=1.533" in text and "PRELOAD-HINT" not in text


def test_delta_update_skips_segments_older_than_can_skip_until() -> None:
    segments = [
        PlaylistSegment(f"s{i}.m4s", 2.0, discontinuity=i == 1, program_date_time=START)
        for i in range(20)
    ]
    low_latency = LowLatency(0.5, "s20.0.m4s")
    full = render_media_playlist(segments, 2.0, 100, 4, "init.mp4", low_latency=low_latency)
    delta = render_media_playlist(
        segments, 2.0, 100, 4, "init.mp4", low_latency=low_latency, skip=True
    )
    # 40 s of segments, CAN-SKIP-UNTIL 12 s: the 14 segments ending 12 s or more before the end.
    assert "#EXT-X-SKIP:SKIPPED-SEGMENTS=14\n" in delta and "#EXT-X-SKIP" not in full
    assert "#EXT-X-VERSION:9\n" in delta
    assert "#EXT-X-MEDIA-SEQUENCE:100\n#EXT-X-DISCONTINUITY-SEQUENCE:4\n" in delta
    listed = [ln for ln in delta.splitlines() if ln.endswith(".m4s")]
    assert listed == [f"s{i}.m4s" for i in range(14, 20)]
    assert delta.count("#EXT-X-MAP") == 1  # the first listed segment still names its map
    # Without low latency (or a short playlist) nothing is skipped.
    assert "#EXT-X-SKIP" not in render_media_playlist(segments, 2.0, 100, 4, "i.mp4", skip=True)
    assert "#EXT-X-SKIP" not in render_media_playlist(
        segments[:6], 2.0, 100, 4, "i.mp4", low_latency=low_latency, skip=True
    )


@pytest.mark.parametrize(
    ("msn", "part", "expected"),
    [
        (None, None, Readiness.READY),  # a plain reload
        (None, 0, Readiness.BAD),  # _HLS_part without _HLS_msn
        (5, None, Readiness.READY),  # segment 5 is complete (next_msn 10)
        (9, 7, Readiness.READY),  # any part index of a complete segment
        (10, 1, Readiness.READY),  # parts 0 and 1 of the open segment exist
        (10, 2, Readiness.WAIT),  # the preload-hinted part
        (10, None, Readiness.WAIT),  # the open segment's completion
        (11, None, Readiness.WAIT),  # last segment (9) plus two
        (12, None, Readiness.BAD),  # beyond last segment plus two
        (12, 0, Readiness.BAD),
        (10, 7, Readiness.WAIT),  # 6 parts ahead: within the limit (3 s / 0.5 s)
        (10, 8, Readiness.BAD),  # 7 parts ahead
        (11, 5, Readiness.WAIT),
        (11, 6, Readiness.BAD),
    ],
)
def test_reload_readiness(msn: int | None, part: int | None, expected: Readiness) -> None:
    request = ReloadRequest(msn, part)
    assert reload_readiness(request, next_msn=10, open_parts=2, part_target=0.5) is expected


def test_part_past_a_complete_segment_means_the_next_segments_first() -> None:
    # Segment 9 ended with parts 0-3; a client that saw it open asks for part 4 of it.
    request = ReloadRequest(9, 4)
    assert reload_readiness(request, 10, 0, 0.5, previous_parts=4) is Readiness.WAIT
    assert reload_readiness(request, 10, 1, 0.5, previous_parts=4) is Readiness.READY
    assert reload_readiness(ReloadRequest(9, 3), 10, 0, 0.5, previous_parts=4) is Readiness.READY
    assert awaited_position(request, 10, 4) == (10, 1)
    assert awaited_position(ReloadRequest(10, None), 10, 4) == (11, 0)
    assert awaited_position(ReloadRequest(), 10, 4) is None


def test_advance_part_limit_is_three_parts_for_long_parts() -> None:
    # No part of segment 10 yet: part 2 is three parts past the last one (9's), part 3 four.
    assert reload_readiness(ReloadRequest(10, 2), 10, 0, 1.0) is Readiness.WAIT
    assert reload_readiness(ReloadRequest(10, 3), 10, 0, 1.0) is Readiness.BAD
    # No parts at all: a part request can never be satisfied.
    assert reload_readiness(ReloadRequest(10, 0), 10, 0, None) is Readiness.BAD


@pytest.mark.parametrize(
    ("query", "parsed"),
    [
        ((None, None, None), ReloadRequest()),
        (("12", "3", None), ReloadRequest(12, 3)),
        (("12", None, "YES"), ReloadRequest(12, None, True)),
        ((None, None, "v2"), ReloadRequest(None, None, True)),
    ],
)
def test_reload_request_parse(
    query: tuple[str | None, str | None, str | None], parsed: ReloadRequest
) -> None:
    assert ReloadRequest.parse(*query) == parsed


@pytest.mark.parametrize(
    "query", [("-1", None, None), ("1", "x", None), ("9" * 20, None, None), (None, None, "NO")]
)
def test_reload_request_parse_refuses_garbage(query: tuple[str | None, ...]) -> None:
    with pytest.raises(ValueError):
        ReloadRequest.parse(*query)
