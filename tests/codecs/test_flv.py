"""FLV tag-body header parsing and the FLV file container."""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from simulcast.codecs import flv
from simulcast.codecs.flv import AudioPacketType, FlvError, VideoPacketType
from simulcast.codecs.unit import Kind

DATA = Path(__file__).parent / "data"


def test_legacy_avc_headers() -> None:
    seq = flv.parse_video(b"\x17\x00\x00\x00\x00\x01\x64")
    assert (seq.codec, seq.is_sequence_header, seq.is_keyframe, seq.data_offset) == (
        "avc",
        True,
        False,
        5,
    )
    key = flv.parse_video(b"\x17\x01\x00\x00\x21" + b"\x00\x00\x00\x01\x65")
    assert key.is_keyframe and key.composition_time == 33 and key.data_offset == 5
    inter = flv.parse_video(b"\x27\x01\xff\xff\xfe")
    assert not inter.is_keyframe and inter.composition_time == -2
    assert flv.parse_video(b"\x17\x02\x00\x00\x00").is_end_of_sequence
    assert flv.parse_video(b"\x1c\x01\x00\x00\x00").codec == "hevc"


def test_enhanced_video_headers() -> None:
    seq = flv.parse_video(b"\x90hvc1\x01\x02")
    assert seq.enhanced and seq.codec == "hevc" and seq.is_sequence_header
    assert seq.data_offset == 5
    coded = flv.parse_video(b"\x91hvc1\x00\x00\x28\xaa")
    assert coded.is_keyframe and coded.composition_time == 40 and coded.data_offset == 8
    coded_x = flv.parse_video(b"\x93hvc1\xaa")
    assert coded_x.packet_type == VideoPacketType.CODED_FRAMES
    assert coded_x.composition_time == 0 and coded_x.data_offset == 5
    av1 = flv.parse_video(b"\xa1av01\x12\x00")  # AV1 CodedFrames carry no composition time
    assert av1.codec == "av1" and not av1.is_keyframe and av1.data_offset == 5
    assert flv.parse_video(b"\x92vp09").is_end_of_sequence
    assert flv.parse_video(b"\x94av01\x02").packet_type == VideoPacketType.METADATA


def test_enhanced_video_mod_ex_and_multitrack() -> None:
    # ModEx: size-1=2 (3 bytes of TimestampOffsetNano), then modExType 0 / packet type 1.
    tag = flv.parse_video(b"\x97\x02\x00\x01\x02\x01avc1\x00\x00\x10\xee")
    assert tag.codec == "avc" and tag.composition_time == 16 and tag.data_offset == 13
    # Multitrack ManyTracks, shared FourCC, track 3 of size 4, then another track.
    body = b"\x96\x11av01\x03\x00\x00\x04OBU!\x04\x00\x00\x01X"
    tag = flv.parse_video(body)
    assert (tag.track_id, tag.codec, tag.data_offset, tag.data_end) == (3, "av1", 10, 14)
    assert body[tag.data_offset : tag.data_end] == b"OBU!"


def test_audio_headers() -> None:
    seq = flv.parse_audio(b"\xaf\x00\x12\x10")
    assert seq.codec == "aac" and seq.is_sequence_header and seq.data_offset == 2
    raw = flv.parse_audio(b"\xaf\x01\x21")
    assert raw.packet_type == AudioPacketType.CODED_FRAMES and raw.sound_flags == 0xF
    assert flv.parse_audio(b"\x2f\xff").codec == "mp3"
    opus = flv.parse_audio(b"\x90OpusOpusHead")
    assert opus.enhanced and opus.codec == "opus" and opus.is_sequence_header
    assert opus.data_offset == 5
    assert flv.parse_audio(b"\x91mp4a\x21").packet_type == AudioPacketType.CODED_FRAMES


def test_classify() -> None:
    assert flv.classify(Kind.VIDEO, b"\x17\x00\x00\x00\x00") == (False, True)
    assert flv.classify(Kind.VIDEO, b"\x17\x01\x00\x00\x00") == (True, False)
    assert flv.classify(Kind.AUDIO, b"\xaf\x00\x12\x10") == (False, True)
    assert flv.classify(Kind.AUDIO, b"") == (False, False)  # RTMP "silence" message
    assert flv.classify(Kind.DATA, b"\x02") == (False, False)


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"\x17",
        b"\x17\x01\x00",
        b"\x91hvc",
        b"\x91xxxx",
        b"\x9f",
        b"\x97\xff",
        b"\x17\x05\0\0\0",
    ],
)
def test_malformed_video_raises_flv_error(body: bytes) -> None:
    with pytest.raises(FlvError):
        flv.parse_video(body)


def _parses_in_bounds_or_raises_flv_error(
    parse: Callable[[bytes], flv.VideoTag | flv.AudioTag], body: bytes
) -> None:
    """``parse`` either raises ``FlvError`` or returns a tag whose data lies inside ``body``."""
    try:
        tag = parse(body)
    except FlvError:
        return
    assert 0 <= tag.data_offset <= tag.data_end <= len(body)


@given(st.binary(max_size=40))
def test_parse_video_only_raises_flv_error(body: bytes) -> None:
    _parses_in_bounds_or_raises_flv_error(flv.parse_video, body)


@given(st.binary(max_size=40))
def test_parse_audio_only_raises_flv_error(body: bytes) -> None:
    _parses_in_bounds_or_raises_flv_error(flv.parse_audio, body)


@given(st.sampled_from([b"\x91", b"\x96", b"\x97", b"\x95", b"\x90"]), st.binary(max_size=30))
def test_enhanced_prefixes_only_raise_flv_error(prefix: bytes, rest: bytes) -> None:
    for parse in (flv.parse_video, flv.parse_audio):
        with contextlib.suppress(FlvError):
            parse(prefix + rest)


def test_file_round_trip() -> None:
    tags = [(18, 0, b"meta"), (9, 0, b"\x17\x00\x00\x00\x00"), (8, 0x1_00_00_00 + 5, b"\xaf\x01")]
    data = flv.write_header(has_audio=True, has_video=True) + b"".join(
        flv.write_tag(*tag) for tag in tags
    )
    assert data[:13] == b"FLV\x01\x05\x00\x00\x00\x09\x00\x00\x00\x00"
    assert list(flv.iter_tags(data)) == tags
    with pytest.raises(FlvError):
        list(flv.iter_tags(data[:-6]))
    with pytest.raises(FlvError):
        list(flv.iter_tags(b"FLX\x01\x05\x00\x00\x00\x09"))


def test_ffmpeg_fixture_tags() -> None:
    counts: Counter[tuple[str, str, bool]] = Counter()
    for type_id, _ts, body in flv.iter_tags((DATA / "media_avc_aac.flv").read_bytes()):
        if type_id == Kind.VIDEO:
            video = flv.parse_video(body)
            counts["video", video.packet_type.name, video.is_keyframe] += 1
        elif type_id == Kind.AUDIO:
            counts["audio", flv.parse_audio(body).packet_type.name, False] += 1
    assert counts["video", "SEQUENCE_START", False] == 1
    assert counts["video", "CODED_FRAMES", True] == 4  # 4 s at -g 30 -r 30
    assert counts["video", "CODED_FRAMES", False] == 116
    assert counts["audio", "SEQUENCE_START", False] == 1


@pytest.mark.parametrize(("name", "codec"), [("media_av1.flv", "av1"), ("media_hevc.flv", "hevc")])
def test_ffmpeg_enhanced_fixtures(name: str, codec: str) -> None:
    tags = [flv.parse_video(b) for t, _, b in flv.iter_tags((DATA / name).read_bytes()) if t == 9]
    assert all(tag.enhanced and tag.codec == codec for tag in tags)
    assert tags[0].is_sequence_header
    assert sum(tag.is_keyframe for tag in tags) == 2


def test_classify_reads_common_headers_as_the_parsers_do() -> None:
    """Every first byte of a video and an audio body, with every packet type the fast paths
    tell apart, at short lengths: the classification (or the error) is the parsers' own."""

    def parsed(kind: Kind, payload: bytes) -> tuple[bool, bool] | str:
        try:
            if kind == Kind.VIDEO:
                tag = flv.parse_video(payload)
                return tag.is_keyframe, tag.is_sequence_header
            return False, flv.parse_audio(payload).is_sequence_header
        except flv.FlvError:
            return "error"

    def classified(kind: Kind, payload: bytes) -> tuple[bool, bool] | str:
        try:
            return flv.classify(kind, payload)
        except flv.FlvError:
            return "error"

    for kind in (Kind.VIDEO, Kind.AUDIO):
        for b0 in range(256):
            for b1 in (0, 1, 2, 3, 4, 0x80, 0xFF):
                for length in (1, 2, 4, 5, 9):
                    payload = (bytes((b0, b1)) + b"avc1\x00\x00\x00")[:length]
                    assert classified(kind, payload) == parsed(kind, payload), (kind, payload)
