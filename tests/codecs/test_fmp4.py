"""Golden structure of our fMP4 boxes, read back with a tiny box walker."""

from __future__ import annotations

import struct

from simulcast.codecs.fmp4 import (
    AudioTrack,
    Sample,
    TrackFragment,
    VideoTrack,
    init_segment,
    media_segment,
)

CONTAINERS = {b"moov", b"trak", b"mdia", b"minf", b"stbl", b"mvex", b"moof", b"traf", b"dinf"}


def walk(data: bytes, path: str = "") -> dict[str, list[bytes]]:
    """Map 'moov/trak/tkhd'-style paths to box payloads."""
    found: dict[str, list[bytes]] = {}
    pos = 0
    while pos < len(data):
        size, kind = struct.unpack_from(">I4s", data, pos)
        assert size >= 8 and pos + size <= len(data)
        name = f"{path}/{kind.decode()}".lstrip("/")
        payload = data[pos + 8 : pos + size]
        found.setdefault(name, []).append(payload)
        if kind in CONTAINERS:
            for key, value in walk(payload, name).items():
                found.setdefault(key, []).extend(value)
        pos += size
    assert pos == len(data)
    return found


VIDEO = VideoTrack("avc", b"\x01\x42\xc0\x0d\xff\xe0\x00", 320, 240, "avc1.42c00d")
AUDIO = AudioTrack("aac", b"\x12\x10", 44100, 2, "mp4a.40.2")


def test_init_segment_structure() -> None:
    boxes = walk(init_segment([VIDEO, AUDIO]))
    assert boxes["ftyp"][0] == b"iso6\x00\x00\x00\x00iso6cmfcisom"
    assert len(boxes["moov/trak"]) == 2
    assert [p[4:8] for p in boxes["moov/trak/mdia/hdlr"]] == [b"\x00" * 4, b"\x00" * 4]
    assert [p[8:12] for p in boxes["moov/trak/mdia/hdlr"]] == [b"vide", b"soun"]
    timescales = [struct.unpack_from(">I", p, 12)[0] for p in boxes["moov/trak/mdia/mdhd"]]
    assert timescales == [90000, 44100]
    tkhd = boxes["moov/trak/tkhd"][0]
    assert struct.unpack_from(">II", tkhd, len(tkhd) - 8) == (320 << 16, 240 << 16)
    stsd_video, stsd_audio = boxes["moov/trak/mdia/minf/stbl/stsd"]
    assert stsd_video[12:16] == b"avc1" and VIDEO.config in stsd_video
    assert stsd_audio[12:16] == b"mp4a" and b"esds" in stsd_audio
    assert b"\x05\x80\x80\x80\x02\x12\x10" in stsd_audio  # DecSpecificInfo = the ASC
    trex = [struct.unpack(">I5I", p) for p in boxes["moov/mvex/trex"]]
    assert [t[1] for t in trex] == [1, 2]


def test_opus_sample_entry_converts_opus_head() -> None:
    head = b"OpusHead\x01\x02\x38\x01\x80\xbb\x00\x00\x00\x00\x00"
    track = AudioTrack("opus", head, 48000, 2, "opus")
    stsd = walk(init_segment([track]))["moov/trak/mdia/minf/stbl/stsd"][0]
    assert stsd[12:16] == b"Opus"
    dops = stsd[stsd.index(b"dOps") + 4 :]
    assert dops == struct.pack(">BBHIhB", 0, 2, 312, 48000, 0, 0)


def test_media_segment_offsets_and_samples() -> None:
    video = TrackFragment(
        1,
        2**33,  # needs the 64-bit tfdt
        [Sample(b"key!", 3000, 6000, True), Sample(b"p", 3000, -3000, False)],
    )
    audio = TrackFragment(2, 441, [Sample(b"aac1", 1024), Sample(b"aac22", 1024)])
    data = media_segment(7, [video, audio])
    boxes = walk(data)
    assert struct.unpack(">II", boxes["moof/mfhd"][0]) == (0, 7)
    assert [struct.unpack(">IQ", p)[1] for p in boxes["moof/traf/tfdt"]] == [2**33, 441]
    assert [struct.unpack(">II", p) for p in boxes["moof/traf/tfhd"]] == [
        (0x020000, 1),
        (0x020000, 2),
    ]
    moof_start = 0
    mdat = boxes["mdat"][0]
    runs = []
    for trun in boxes["moof/traf/trun"]:
        version_flags, count, offset = struct.unpack_from(">IIi", trun)
        assert version_flags == 0x01000F01
        entries = [struct.unpack_from(">IIIi", trun, 12 + 16 * i) for i in range(count)]
        runs.append((offset, entries))
    (v_offset, v_entries), (a_offset, a_entries) = runs
    assert v_entries == [(3000, 4, 0x02000000, 6000), (3000, 1, 0x01010000, -3000)]
    assert [e[1] for e in a_entries] == [4, 5]
    assert data[moof_start + v_offset : moof_start + v_offset + 5] == b"key!p"
    assert data[moof_start + a_offset : moof_start + a_offset + 9] == b"aac1aac22"
    assert mdat == b"key!paac1aac22"
