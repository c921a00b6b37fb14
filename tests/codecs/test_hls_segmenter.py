"""End to end: FLV fixtures -> Segmenter -> fMP4 + playlist, checked by m3u8, PyAV and ffmpeg."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

import av
import m3u8
import pytest

from simulcast.codecs import flv
from simulcast.codecs.hls import (
    InitSegment,
    PlaylistSegment,
    Segment,
    Segmenter,
    SegmentEvent,
    render_media_playlist,
)
from simulcast.codecs.unit import Kind, MediaUnit
from tests.support import ffmpeg_exe
from tests.support.media_units import source_video_frames, units


@dataclass
class Packaged:
    inits: list[InitSegment]
    segments: list[Segment]
    playlist: Path


def package(name: str, out: Path, target: float = 2.0) -> Packaged:
    segmenter = Segmenter(target)
    events: list[SegmentEvent] = []
    for unit in units(name):
        events += segmenter.push(unit)
    events += segmenter.flush()
    inits = [e for e in events if isinstance(e, InitSegment)]
    segments = [e for e in events if isinstance(e, Segment)]
    entries = []
    for init in inits:
        (out / f"init-{init.version}.mp4").write_bytes(init.data)
    for seg in segments:
        (out / f"seg-{seg.sequence}.m4s").write_bytes(seg.data)
        entries.append(
            PlaylistSegment(
                f"seg-{seg.sequence}.m4s",
                seg.duration_s,
                seg.discontinuity,
                f"init-{seg.init_version}.mp4",
            )
        )
    playlist = out / "index.m3u8"
    playlist.write_text(render_media_playlist(entries, target, 1, 0, "init-1.mp4", ended=True))
    return Packaged(inits, segments, playlist)


def decode(init: bytes, segment: bytes, tmp: Path) -> tuple[list[av.VideoFrame], int]:
    path = tmp / "one.mp4"
    path.write_bytes(init + segment)
    with av.open(str(path)) as container:
        video = [f for f in container.decode(video=0)] if container.streams.video else []
    with av.open(str(path)) as container:
        audio = sum(1 for _ in container.decode(audio=0)) if container.streams.audio else 0
    return video, audio


def ffmpeg_check(playlist: Path) -> None:
    result = subprocess.run(
        [ffmpeg_exe(), "-hide_banner", "-v", "error", "-i", str(playlist), "-f", "null", "-"],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "error" not in result.stderr.lower(), result.stderr


@pytest.mark.parametrize(
    ("name", "codecs"),
    [
        ("media_avc_aac.flv", "avc1.42c00d,mp4a.40.2"),
        ("media_hevc.flv", "hvc1.1.6.L30.90"),
        ("media_av1.flv", "av01.0.00M.08"),
    ],
)
def test_video_streams_decode_segment_by_segment(name: str, codecs: str, tmp_path: Path) -> None:
    packaged = package(name, tmp_path, target=1.0)
    assert [i.codecs for i in packaged.inits] == [codecs]
    init = packaged.inits[0].data
    frames = 0
    for segment in packaged.segments:
        video, audio = decode(init, segment.data, tmp_path)
        assert video and video[0].key_frame, "every segment starts with a keyframe"
        pts = [f.pts for f in video if f.pts is not None]
        assert len(pts) == len(video)
        assert pts == sorted(pts)
        if "mp4a" in codecs:
            assert audio > 0
        frames += len(video)
    assert frames == source_video_frames(name)
    ffmpeg_check(packaged.playlist)


def test_avc_aac_segments_and_playlist(tmp_path: Path) -> None:
    packaged = package("media_avc_aac.flv", tmp_path, target=2.0)
    video = packaged.inits[0].video
    assert video is not None and (video.width, video.height) == (320, 240)
    assert [s.sequence for s in packaged.segments] == [1, 2]
    assert packaged.segments[1].start_dts_ms == pytest.approx(2000, abs=50)
    assert sum(s.duration_s for s in packaged.segments) == pytest.approx(4.0, abs=0.1)
    assert all(s.duration_s >= 2.0 for s in packaged.segments[:-1])

    playlist = m3u8.load(str(packaged.playlist))
    assert playlist.target_duration == 3
    assert playlist.is_endlist and playlist.version == 7
    assert [s.uri for s in playlist.segments] == ["seg-1.m4s", "seg-2.m4s"]
    assert playlist.segment_map[0].uri == "init-1.mp4"

    # The whole playlist decodes to exactly the source frame count.
    with av.open(str(packaged.playlist)) as container:
        frames = sum(1 for _ in container.decode(video=0))
    assert frames == source_video_frames("media_avc_aac.flv")
    ffmpeg_check(packaged.playlist)


@pytest.mark.parametrize("name", ["media_aac_only.flv", "media_opus.flv"])
def test_audio_only_streams(name: str, tmp_path: Path) -> None:
    packaged = package(name, tmp_path, target=1.0)
    assert len(packaged.inits) == 1 and packaged.inits[0].video is None
    assert len(packaged.segments) >= 2
    assert all(s.duration_s >= 1.0 for s in packaged.segments[:-1])
    for segment in packaged.segments:
        _, audio = decode(packaged.inits[0].data, segment.data, tmp_path)
        assert audio > 0
    ffmpeg_check(packaged.playlist)


def test_video_only_stream_waits_for_keyframe(tmp_path: Path) -> None:
    all_units = [u for u in units("media_avc_aac.flv") if u.kind == Kind.VIDEO]
    header, frames = all_units[0], all_units[1:]
    segmenter = Segmenter(1.0)
    events = segmenter.push(header)
    # Start mid-GOP: frames before the next keyframe cannot decode and are dropped.
    for unit in frames[5:]:
        events += segmenter.push(unit)
    events += segmenter.flush()
    segments = [e for e in events if isinstance(e, Segment)]
    assert segments[0].start_dts_ms == next(u.timestamp for u in frames[5:] if u.keyframe)
    init = next(e for e in events if isinstance(e, InitSegment))
    assert init.audio is None
    video, _ = decode(init.data, segments[0].data, tmp_path)
    assert video[0].key_frame


def test_sequence_header_change_makes_new_init_and_discontinuity(tmp_path: Path) -> None:
    avc = units("media_avc_aac.flv")
    hevc = units("media_hevc.flv")
    last = avc[-1].timestamp + 40
    shifted = [
        MediaUnit(u.kind, u.timestamp + last, u.payload, u.keyframe, u.sequence_header)
        for u in hevc
    ]
    segmenter = Segmenter(2.0)
    events: list[SegmentEvent] = []
    for unit in avc + shifted:
        events += segmenter.push(unit)
    events += segmenter.flush()
    inits = [e for e in events if isinstance(e, InitSegment)]
    segments = [e for e in events if isinstance(e, Segment)]
    assert [i.version for i in inits] == [1, 2]
    assert inits[1].video is not None and inits[1].video.codec == "hevc"
    # The AAC track keeps its config, so the second init still carries it.
    assert inits[1].audio is not None
    changed = [s for s in segments if s.init_version == 2]
    assert changed[0].discontinuity and not any(s.discontinuity for s in changed[1:])
    video, _ = decode(inits[1].data, changed[0].data, tmp_path)
    assert video[0].key_frame


def test_repeated_identical_sequence_header_is_ignored() -> None:
    avc = units("media_avc_aac.flv")
    segmenter = Segmenter(2.0)
    events: list[SegmentEvent] = []
    for unit in [*avc[:50], avc[0], *avc[50:]]:
        events += segmenter.push(unit)
    assert sum(isinstance(e, InitSegment) for e in events) == 1


def test_equivalent_sequence_header_makes_new_init_without_discontinuity() -> None:
    avc = units("media_avc_aac.flv")
    header = next(u for u in avc if u.kind == Kind.VIDEO and u.sequence_header)
    tag = flv.parse_video(header.payload)
    record = bytearray(header.payload)
    record[tag.data_offset + 5] &= 0x1F  # reserved bits of the SPS count: same parameters
    resent = MediaUnit(Kind.VIDEO, avc[60].timestamp, bytes(record), sequence_header=True)
    segmenter = Segmenter(1.0)
    events: list[SegmentEvent] = []
    for unit in [*avc[:60], resent, *avc[60:]]:
        events += segmenter.push(unit)
    events += segmenter.flush()
    assert [e.version for e in events if isinstance(e, InitSegment)] == [1, 2]
    assert not any(e.discontinuity for e in events if isinstance(e, Segment))
