"""The recording file itself: one fMP4 across configuration changes, and its check after a
crash (trim the partial fragment, measure the duration). Real captured FLV fixtures, decoded
with PyAV."""

from __future__ import annotations

from pathlib import Path

import av

from simulcast.codecs import flv
from simulcast.codecs.avc import parse_avc_config
from simulcast.codecs.fmp4.recording import TrackGate, in_band_parameter_sets
from simulcast.codecs.hls import InitSegment, Segment, Segmenter
from simulcast.codecs.unit import Kind, MediaUnit
from simulcast.control.archiver import check_recording
from tests.support.media_units import source_video_frames, units


def record(stream: list[MediaUnit], path: Path, fragment: float = 1.0) -> list[Segment]:
    """What the recorder writes for ``stream``: the file, and its fragments."""
    gate, segmenter = TrackGate(), Segmenter(fragment)
    events = []
    for unit in stream:
        admitted = gate.admit(unit)
        if admitted is not None:
            events += segmenter.push(admitted)
    events += segmenter.flush()
    assert sum(isinstance(e, InitSegment) for e in events) == 1, "one moov per file"
    path.write_bytes(b"".join(e.data for e in events))
    return [e for e in events if isinstance(e, Segment)]


def decoded_frames(path: Path) -> int:
    """Video frames PyAV decodes from a file (the decoder drained at the end)."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = sum(len(packet.decode()) for packet in container.demux(stream) if packet.size)
        return frames + len(stream.codec_context.decode(None))


def shifted(stream: list[MediaUnit], by: int) -> list[MediaUnit]:
    return [
        MediaUnit(u.kind, u.timestamp + by, u.payload, u.keyframe, u.sequence_header)
        for u in stream
    ]


def test_changed_avc_header_is_carried_in_band_in_one_file(tmp_path: Path) -> None:
    avc = units("media_avc_aac.flv")
    header = next(u for u in avc if u.kind == Kind.VIDEO and u.sequence_header)
    tag = flv.parse_video(header.payload)
    record_bytes = bytearray(header.payload)
    record_bytes[tag.data_offset + 5] &= 0x1F  # other bytes, same parameters (as a slate's)
    changed = MediaUnit(Kind.VIDEO, 0, bytes(record_bytes), sequence_header=True)
    second = shifted(avc, avc[-1].timestamp + 33)
    stream = [*avc, changed, *[u for u in second if not u.sequence_header]]

    gate = TrackGate()
    admitted = [gate.admit(u) for u in stream]
    assert admitted[len(avc)] is None, "the new header never reaches the segmenter"
    key = next(a for a in admitted[len(avc) + 1 :] if a is not None and a.kind == Kind.VIDEO)
    assert key.keyframe
    config = parse_avc_config(bytes(record_bytes[tag.data_offset :]))
    key_tag = flv.parse_video(key.payload)
    in_band = in_band_parameter_sets(config.record, config.nal_length_size)
    assert key.payload[key_tag.data_offset :].startswith(in_band)
    assert in_band[config.nal_length_size] & 0x1F == 7  # an SPS NAL unit leads

    path = tmp_path / "one.mp4"
    record(stream, path)
    assert decoded_frames(path) == 2 * source_video_frames("media_avc_aac.flv")


def test_a_codec_change_is_dropped_not_mixed_into_the_track(tmp_path: Path) -> None:
    avc = units("media_avc_aac.flv")
    hevc = shifted(units("media_hevc.flv"), avc[-1].timestamp + 40)
    path = tmp_path / "avc.mp4"
    record([*avc, *hevc], path)
    assert decoded_frames(path) == source_video_frames("media_avc_aac.flv")
    with av.open(str(path)) as container:
        assert container.streams.video[0].codec_context.name == "h264"


def test_check_trims_a_partial_fragment_and_measures_the_duration(tmp_path: Path) -> None:
    avc = units("media_avc_aac.flv")
    path = tmp_path / "rec.mp4"
    segments = record(avc, path)
    complete = path.read_bytes()
    expected = sum(s.duration_s for s in segments)

    check = check_recording(path)
    assert check.size == len(complete) and check.fragments == len(segments)
    assert abs(check.duration_seconds - expected) < 0.05

    # A process killed mid-write leaves part of the next fragment.
    path.write_bytes(complete + segments[-1].data[: len(segments[-1].data) // 2])
    check = check_recording(path)
    assert check.size == len(complete) == path.stat().st_size
    assert decoded_frames(path) == source_video_frames("media_avc_aac.flv")
    # A kill between the moof and its mdat: the moof goes too.
    moof_only = segments[-1].data[: segments[-1].data.index(b"mdat") - 4]
    path.write_bytes(complete + moof_only)
    assert check_recording(path).size == len(complete)


def test_nothing_recorded_is_an_empty_recording(tmp_path: Path) -> None:
    assert check_recording(tmp_path / "missing.mp4").size == 0
    (tmp_path / "header-only.mp4").write_bytes(b"\x00\x00\x00\x08ftyp")
    assert check_recording(tmp_path / "header-only.mp4").size == 0
