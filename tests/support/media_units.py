"""Builders of synthetic media units for the media-plane unit tests."""

from __future__ import annotations

from pathlib import Path

from simulcast.codecs import flv
from simulcast.codecs.unit import Kind, MediaUnit

DATA = Path(__file__).parents[1] / "codecs" / "data"  # recorded FLV fixtures

METADATA_PAYLOAD = b"\x02\x00\x0aonMetaData\x08\x00\x00\x00\x00\x00\x00\x09"


def video(ts: int, *, key: bool = False, size: int = 100) -> MediaUnit:
    """An AVC coded frame (keyframe or inter frame) of ``size`` bytes."""
    head = b"\x17\x01\x00\x00\x00" if key else b"\x27\x01\x00\x00\x00"
    return MediaUnit(Kind.VIDEO, ts, head + bytes(max(0, size - 5)), keyframe=key)


def audio(ts: int, *, size: int = 20) -> MediaUnit:
    """An AAC raw frame of ``size`` bytes."""
    return MediaUnit(Kind.AUDIO, ts, b"\xaf\x01" + bytes(max(0, size - 2)))


def video_header(ts: int = 0, tag: bytes = b"\x01") -> MediaUnit:
    """An AVC sequence header."""
    return MediaUnit(Kind.VIDEO, ts, b"\x17\x00\x00\x00\x00" + tag, sequence_header=True)


def audio_header(ts: int = 0) -> MediaUnit:
    """An AAC sequence header."""
    return MediaUnit(Kind.AUDIO, ts, b"\xaf\x00\x12\x10", sequence_header=True)


def metadata(ts: int = 0) -> MediaUnit:
    """An onMetaData data unit."""
    return MediaUnit(Kind.DATA, ts, METADATA_PAYLOAD)


def units(name: str) -> list[MediaUnit]:
    """The audio/video tags of a fixture as MediaUnits, as the ingest side would build them."""
    result = []
    for type_id, timestamp, body in flv.iter_tags((DATA / name).read_bytes()):
        if type_id in (Kind.AUDIO, Kind.VIDEO):
            keyframe, sequence_header = flv.classify(Kind(type_id), body)
            result.append(MediaUnit(Kind(type_id), timestamp, body, keyframe, sequence_header))
    return result


def source_video_frames(name: str) -> int:
    return sum(
        1
        for u in units(name)
        if u.kind == Kind.VIDEO
        and flv.parse_video(u.payload).packet_type == flv.VideoPacketType.CODED_FRAMES
    )
