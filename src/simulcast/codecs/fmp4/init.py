"""CMAF initialization segment: ftyp + moov (one trak per track, mvex/trex)."""

from __future__ import annotations

import struct
from collections.abc import Sequence

from simulcast.codecs.fmp4.boxes import UNITY_MATRIX, box, full_box
from simulcast.codecs.fmp4.tracks import AudioTrack, Track, VideoTrack

_FTYP = box(b"ftyp", b"iso6", b"\x00\x00\x00\x00", b"iso6", b"cmfc", b"isom")
_LANGUAGE_UND = 0x55C4  # "und" packed as three 5-bit letters
_DINF = box(b"dinf", full_box(b"dref", 0, 0, b"\x00\x00\x00\x01", full_box(b"url ", 0, 1)))
_EMPTY_TABLES = b"".join(
    (
        full_box(b"stts", 0, 0, b"\x00\x00\x00\x00"),
        full_box(b"stsc", 0, 0, b"\x00\x00\x00\x00"),
        full_box(b"stsz", 0, 0, b"\x00\x00\x00\x00\x00\x00\x00\x00"),
        full_box(b"stco", 0, 0, b"\x00\x00\x00\x00"),
    )
)
_VIDEO_CONFIG_BOX = {
    "avc": (b"avc1", b"avcC"),
    "hevc": (b"hvc1", b"hvcC"),
    "av1": (b"av01", b"av1C"),
}


def init_segment(tracks: Sequence[Track]) -> bytes:
    """Return ftyp + moov for ``tracks`` (track ids must be unique and non-zero)."""
    mvhd = full_box(
        b"mvhd",
        0,
        0,
        struct.pack(">IIII", 0, 0, 1000, 0),  # times, timescale, duration
        struct.pack(">IH10x", 0x10000, 0x100),  # rate, volume
        UNITY_MATRIX,
        bytes(24),  # pre_defined
        struct.pack(">I", max(t.track_id for t in tracks) + 1),
    )
    traks = [_trak(track) for track in tracks]
    trexs = [full_box(b"trex", 0, 0, struct.pack(">5I", t.track_id, 1, 0, 0, 0)) for t in tracks]
    return _FTYP + box(b"moov", mvhd, *traks, box(b"mvex", *trexs))


def _trak(track: Track) -> bytes:
    video = isinstance(track, VideoTrack)
    width, height = (track.width, track.height) if isinstance(track, VideoTrack) else (0, 0)
    tkhd = full_box(
        b"tkhd",
        0,
        3,  # enabled | in movie
        struct.pack(">IIIII", 0, 0, track.track_id, 0, 0),
        struct.pack(">8xhhH2x", 0, 0, 0 if video else 0x100),  # layer, group, volume
        UNITY_MATRIX,
        struct.pack(">II", width << 16, height << 16),
    )
    mdhd = full_box(
        b"mdhd", 0, 0, struct.pack(">IIIIHH", 0, 0, track.timescale, 0, _LANGUAGE_UND, 0)
    )
    handler, name = (b"vide", b"VideoHandler\x00") if video else (b"soun", b"SoundHandler\x00")
    hdlr = full_box(b"hdlr", 0, 0, bytes(4), handler, bytes(12), name)
    media_header = full_box(b"vmhd", 0, 1, bytes(8)) if video else full_box(b"smhd", 0, 0, bytes(4))
    entry = _video_entry(track) if isinstance(track, VideoTrack) else _audio_entry(track)
    stbl = box(b"stbl", full_box(b"stsd", 0, 0, b"\x00\x00\x00\x01", entry), _EMPTY_TABLES)
    minf = box(b"minf", media_header, _DINF, stbl)
    return box(b"trak", tkhd, box(b"mdia", mdhd, hdlr, minf))


def _video_entry(track: VideoTrack) -> bytes:
    entry_type, config_type = _VIDEO_CONFIG_BOX[track.codec]
    return box(
        entry_type,
        bytes(6),
        struct.pack(">H16xHH", 1, track.width, track.height),  # data_reference_index, size
        struct.pack(">IIIH", 0x480000, 0x480000, 0, 1),  # 72 dpi, reserved, frame_count
        bytes(32),  # compressorname
        struct.pack(">Hh", 0x18, -1),  # depth, pre_defined
        box(config_type, track.config),
    )


def _audio_entry(track: AudioTrack) -> bytes:
    if track.codec == "opus":
        entry_type, config = b"Opus", _dops(track.config)
    else:
        entry_type, config = b"mp4a", _esds(track.config, track.track_id)
    # The 16.16 samplerate field cannot hold rates >= 65536; 0 is what muxers write then.
    rate = track.sample_rate << 16 if track.sample_rate < 0x10000 else 0
    return box(
        entry_type,
        bytes(6),
        struct.pack(">H8xHH4xI", 1, track.channels, 16, rate),
        config,
    )


def _descriptor(tag: int, *payload: bytes) -> bytes:
    body = b"".join(payload)
    size = len(body)
    # Four-byte "expandable" size, the form every demuxer accepts.
    length = bytes(
        (
            0x80 | (size >> 21) & 0x7F,
            0x80 | (size >> 14) & 0x7F,
            0x80 | (size >> 7) & 0x7F,
            size & 0x7F,
        )
    )
    return bytes((tag,)) + length + body


def _esds(audio_specific_config: bytes, es_id: int) -> bytes:
    decoder_config = _descriptor(
        0x04,
        struct.pack(">BB3sII", 0x40, 0x15, bytes(3), 0, 0),  # MPEG-4 audio, AudioStream
        _descriptor(0x05, audio_specific_config),
    )
    es = _descriptor(0x03, struct.pack(">HB", es_id, 0), decoder_config, _descriptor(0x06, b"\x02"))
    return full_box(b"esds", 0, 0, es)


def _dops(opus_head: bytes) -> bytes:
    """Convert an OpusHead (little-endian, RFC 7845) into a dOps box (big-endian)."""
    channels, pre_skip, input_rate, gain, family = struct.unpack_from("<BHIhB", opus_head, 9)
    body = struct.pack(">BBHIhB", 0, channels, pre_skip, input_rate, gain, family)
    # Mapping family != 0 appends stream count, coupled count and the channel mapping.
    return box(b"dOps", body, opus_head[19 : 21 + channels] if family else b"")
