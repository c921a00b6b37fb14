"""FLV tag bodies (legacy and Enhanced RTMP) and the FLV file container, sans-I/O.

``parse_video``/``parse_audio`` read only the tag-body *header* (a handful of bytes) because they
run for every frame on the hot path; the codec data after ``data_offset`` is left untouched.
Enhanced RTMP follows veovera's "enhanced-rtmp v2" (ExVideoTagHeader/ExAudioTagHeader with
FourCC, ModEx and Multitrack). For a multitrack message the *first* track is described;
``data_end`` bounds that track's data.

Every malformed or truncated input raises :class:`FlvError`, never ``IndexError``.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Iterator
from dataclasses import dataclass

from simulcast.codecs.unit import Kind

__all__ = [
    "AudioPacketType",
    "AudioTag",
    "FlvError",
    "VideoPacketType",
    "VideoTag",
    "classify",
    "iter_tags",
    "parse_audio",
    "parse_video",
    "write_header",
    "write_tag",
]


class FlvError(ValueError):
    """A tag body or FLV file that cannot be parsed (the peer's fault, not ours)."""


class VideoPacketType(enum.IntEnum):
    """What a video tag carries, normalized over legacy AVCPacketType and Enhanced RTMP.

    Enhanced ``CodedFramesX`` (3) is reported as ``CODED_FRAMES`` with composition time 0, and
    a command frame (frame type 5, no video data) as ``COMMAND``.
    """

    SEQUENCE_START = 0
    CODED_FRAMES = 1
    SEQUENCE_END = 2
    METADATA = 4
    MPEG2TS_SEQUENCE_START = 5
    COMMAND = 16


class AudioPacketType(enum.IntEnum):
    """What an audio tag carries, normalized over legacy AACPacketType and Enhanced RTMP."""

    SEQUENCE_START = 0
    CODED_FRAMES = 1
    SEQUENCE_END = 2
    MULTICHANNEL_CONFIG = 4


@dataclass(frozen=True, slots=True)
class VideoTag:
    """The header of a video tag body.

    ``codec`` is one of ``"avc" "hevc" "av1" "vp9" "vp8" "vvc"`` or a legacy name
    (``"h263" "screen" "vp6" "vp6a" "screen2"``); empty for a command frame. The codec data
    (decoder configuration record, length-prefixed NALUs, OBUs, ...) is
    ``payload[data_offset:data_end]``. ``composition_time`` is the PTS - DTS offset in ms.
    """

    codec: str
    frame_type: int
    packet_type: VideoPacketType
    composition_time: int
    data_offset: int
    data_end: int
    enhanced: bool
    track_id: int = 0

    @property
    def is_keyframe(self) -> bool:
        """True for coded frames that start a GOP (sequence headers are not keyframes)."""
        return self.frame_type == _KEY_FRAME and self.packet_type == VideoPacketType.CODED_FRAMES

    @property
    def is_sequence_header(self) -> bool:
        """True for a decoder configuration record (SequenceStart / AVC sequence header)."""
        return self.packet_type == VideoPacketType.SEQUENCE_START

    @property
    def is_end_of_sequence(self) -> bool:
        """True for SequenceEnd / AVC end of sequence."""
        return self.packet_type == VideoPacketType.SEQUENCE_END


@dataclass(frozen=True, slots=True)
class AudioTag:
    """The header of an audio tag body.

    ``codec`` is one of ``"aac" "mp3" "opus" "flac" "ac3" "eac3" "pcm" "adpcm" "pcm_le"
    "nellymoser" "g711a" "g711u" "speex" "native"``. ``sound_flags`` holds the legacy
    rate/size/type nibble (0 for Enhanced RTMP). The codec data (AudioSpecificConfig, raw AAC
    frame, Opus packet, ...) is ``payload[data_offset:data_end]``.
    """

    codec: str
    sound_format: int
    packet_type: AudioPacketType
    data_offset: int
    data_end: int
    enhanced: bool
    sound_flags: int = 0
    track_id: int = 0

    @property
    def is_sequence_header(self) -> bool:
        """True for a codec configuration (AAC AudioSpecificConfig, SequenceStart)."""
        return self.packet_type == AudioPacketType.SEQUENCE_START


_KEY_FRAME = 1
_COMMAND_FRAME = 5
_VIDEO, _AUDIO = Kind.VIDEO, Kind.AUDIO  # read once per message: a module constant is cheaper

_LEGACY_VIDEO_CODECS = {2: "h263", 3: "screen", 4: "vp6", 5: "vp6a", 6: "screen2"}
# Codec ids with the AVC-style header (packet type + SI24 composition time). 12 is the
# widespread pre-Enhanced-RTMP HEVC extension (Chinese CDNs, some OBS forks).
_AVC_STYLE_CODECS = {7: "avc", 12: "hevc"}
_VIDEO_FOURCCS = {
    b"avc1": "avc",
    b"hvc1": "hevc",
    b"av01": "av1",
    b"vp09": "vp9",
    b"vp08": "vp8",
    b"vvc1": "vvc",
}
# Only the NALU-based codecs put a composition time in front of CodedFrames.
_CTS_CODECS = frozenset({"avc", "hevc", "vvc"})

_EX_CODED_FRAMES_X = 3
_EX_VIDEO_MULTITRACK = 6
_EX_AUDIO_MULTITRACK = 5
_EX_MOD_EX = 7
_ENHANCED_VIDEO_TYPES = {
    0: VideoPacketType.SEQUENCE_START,
    1: VideoPacketType.CODED_FRAMES,
    2: VideoPacketType.SEQUENCE_END,
    _EX_CODED_FRAMES_X: VideoPacketType.CODED_FRAMES,
    4: VideoPacketType.METADATA,
    5: VideoPacketType.MPEG2TS_SEQUENCE_START,
}
_ENHANCED_AUDIO_TYPES = {
    0: AudioPacketType.SEQUENCE_START,
    1: AudioPacketType.CODED_FRAMES,
    2: AudioPacketType.SEQUENCE_END,
    4: AudioPacketType.MULTICHANNEL_CONFIG,
}

_LEGACY_AUDIO_CODECS = {
    0: "pcm",
    1: "adpcm",
    2: "mp3",
    3: "pcm_le",
    4: "nellymoser",
    5: "nellymoser",
    6: "nellymoser",
    7: "g711a",
    8: "g711u",
    10: "aac",
    11: "speex",
    14: "mp3",
    15: "native",
}
_SOUND_FORMAT_AAC = 10
_SOUND_FORMAT_EX_HEADER = 9
_AUDIO_FOURCCS = {
    b"mp4a": "aac",
    b"Opus": "opus",
    b"fLaC": "flac",
    b"ac-3": "ac3",
    b"ec-3": "eac3",
    b".mp3": "mp3",
}

_MULTITRACK_ONE_TRACK = 0
_MULTITRACK_MANY_CODECS = 2


def _need(payload: bytes, end: int) -> None:
    if len(payload) < end:
        raise FlvError(f"tag body truncated: need {end} bytes, have {len(payload)}")


def _enhanced_packet_type(payload: bytes) -> tuple[int, int]:
    """The position after an Enhanced RTMP tag's first byte and its ModEx blocks, and the
    packet type nibble that follows them."""
    raw_type = payload[0] & 0x0F
    pos = 1
    while raw_type == _EX_MOD_EX:
        pos, raw_type = _skip_mod_ex(payload, pos)
    return pos, raw_type


def _skip_mod_ex(payload: bytes, pos: int) -> tuple[int, int]:
    """Skip one ModEx block at ``pos``; return the new position and the next packet type.

    The only ModEx defined so far (TimestampOffsetNano) is sub-millisecond and we keep
    millisecond timestamps, so its data is skipped rather than interpreted.
    """
    _need(payload, pos + 1)
    size = payload[pos] + 1
    pos += 1
    if size == 256:
        _need(payload, pos + 2)
        size = int.from_bytes(payload[pos : pos + 2], "big") + 1
        pos += 2
    pos += size
    _need(payload, pos + 1)
    return pos + 1, payload[pos] & 0x0F


def _read_tracks(
    payload: bytes, pos: int, raw_type: int, multitrack_type: int, table: dict[bytes, str]
) -> tuple[str, int, int, int, int]:
    """Read the FourCC (and multitrack framing) at ``pos`` of a tag whose packet type nibble
    is ``raw_type`` (``multitrack_type`` when the framing is there).

    Returns (codec, packet type nibble, track id, position, data end): a multitrack tag's
    packet type is the one inside its framing.
    """
    end = len(payload)
    if raw_type != multitrack_type:
        _need(payload, pos + 4)
        return _fourcc(payload, pos, table), raw_type, 0, pos + 4, end
    _need(payload, pos + 1)
    mt_type, packet_type = payload[pos] >> 4, payload[pos] & 0x0F
    pos += 1
    if mt_type > _MULTITRACK_MANY_CODECS:
        raise FlvError(f"unknown multitrack type {mt_type}")
    # The first track's FourCC comes either once for all tracks or in front of each track;
    # both sit at the same position for the first track.
    _need(payload, pos + 5)
    codec = _fourcc(payload, pos, table)
    track_id = payload[pos + 4]
    pos += 5
    if mt_type != _MULTITRACK_ONE_TRACK:
        _need(payload, pos + 3)
        end = pos + 3 + int.from_bytes(payload[pos : pos + 3], "big")
        pos += 3
        if end > len(payload):
            raise FlvError("multitrack track size exceeds the tag body")
    return codec, packet_type, track_id, pos, end


def _fourcc(payload: bytes, pos: int, table: dict[bytes, str]) -> str:
    fourcc = payload[pos : pos + 4]
    try:
        return table[fourcc]
    except KeyError:
        raise FlvError(f"unknown FourCC {fourcc!r}") from None


def parse_video(payload: bytes) -> VideoTag:
    """Parse the header of a video tag body (legacy or Enhanced RTMP)."""
    if not payload:
        raise FlvError("empty video tag body")
    b0 = payload[0]
    if not b0 & 0x80:
        return _parse_legacy_video(payload, b0)
    frame_type = (b0 >> 4) & 0x07
    pos, raw_type = _enhanced_packet_type(payload)
    if frame_type == _COMMAND_FRAME and raw_type != 4:
        _need(payload, pos + 1)
        return VideoTag("", frame_type, VideoPacketType.COMMAND, 0, pos + 1, pos + 1, True)
    codec, raw_type, track_id, pos, end = _read_tracks(
        payload, pos, raw_type, _EX_VIDEO_MULTITRACK, _VIDEO_FOURCCS
    )
    packet_type = _ENHANCED_VIDEO_TYPES.get(raw_type)
    if packet_type is None:
        raise FlvError(f"unknown enhanced video packet type {raw_type}")
    cts = 0
    if raw_type == VideoPacketType.CODED_FRAMES and codec in _CTS_CODECS:
        _need(payload, pos + 3)
        cts = _si24(payload, pos)
        pos += 3
    if pos > end:
        raise FlvError("video tag header runs past the track data")
    return VideoTag(codec, frame_type, packet_type, cts, pos, end, True, track_id)


def _parse_legacy_video(payload: bytes, b0: int) -> VideoTag:
    frame_type, codec_id = b0 >> 4, b0 & 0x0F
    end = len(payload)
    if frame_type == _COMMAND_FRAME:
        _need(payload, 2)
        return VideoTag("", frame_type, VideoPacketType.COMMAND, 0, 2, 2, False)
    codec = _AVC_STYLE_CODECS.get(codec_id)
    if codec is None:
        legacy = _LEGACY_VIDEO_CODECS.get(codec_id)
        if legacy is None:
            raise FlvError(f"unknown video codec id {codec_id}")
        return VideoTag(legacy, frame_type, VideoPacketType.CODED_FRAMES, 0, 1, end, False)
    _need(payload, 5)
    avc_type = payload[1]
    if avc_type > 2:
        raise FlvError(f"unknown AVCPacketType {avc_type}")
    return VideoTag(codec, frame_type, VideoPacketType(avc_type), _si24(payload, 2), 5, end, False)


def _si24(payload: bytes, pos: int) -> int:
    return int.from_bytes(payload[pos : pos + 3], "big", signed=True)


def parse_audio(payload: bytes) -> AudioTag:
    """Parse the header of an audio tag body (legacy or Enhanced RTMP).

    An empty body is RTMP's "audio silence" message; it has no header, so it raises
    :class:`FlvError` here (``classify`` treats it as a plain, non-config unit).
    """
    if not payload:
        raise FlvError("empty audio tag body")
    b0 = payload[0]
    sound_format = b0 >> 4
    if sound_format != _SOUND_FORMAT_EX_HEADER:
        codec = _LEGACY_AUDIO_CODECS.get(sound_format)
        if codec is None:
            raise FlvError(f"unknown sound format {sound_format}")
        if sound_format != _SOUND_FORMAT_AAC:
            return AudioTag(
                codec, sound_format, AudioPacketType.CODED_FRAMES, 1, len(payload), False, b0 & 15
            )
        _need(payload, 2)
        aac_type = payload[1]
        if aac_type > 1:
            raise FlvError(f"unknown AACPacketType {aac_type}")
        return AudioTag(
            codec, sound_format, AudioPacketType(aac_type), 2, len(payload), False, b0 & 15
        )
    pos, raw_type = _enhanced_packet_type(payload)
    codec, raw_type, track_id, pos, end = _read_tracks(
        payload, pos, raw_type, _EX_AUDIO_MULTITRACK, _AUDIO_FOURCCS
    )
    packet_type = _ENHANCED_AUDIO_TYPES.get(raw_type)
    if packet_type is None:
        raise FlvError(f"unknown enhanced audio packet type {raw_type}")
    return AudioTag(codec, sound_format, packet_type, pos, end, True, 0, track_id)


def classify(kind: Kind, payload: bytes) -> tuple[bool, bool]:
    """Return ``(keyframe, sequence_header)`` for an RTMP message body, to build a MediaUnit.

    Data messages and the empty audio "silence" message are neither. Raises :class:`FlvError`
    for a malformed audio/video body.
    """
    if kind is _VIDEO:
        # A legacy AVC-style body (nearly every frame relayed) is read in place: the answer of
        # parse_video without building its tag, once per message on the relay's hot path.
        if len(payload) >= 5:
            # AVCPacketType: 0 sequence header, 1 NALUs, 2 end of sequence.
            b0, packet_type = payload[0], payload[1]
            legacy = b0 < 0x80 and b0 >> 4 != _COMMAND_FRAME and b0 & 0x0F in _AVC_STYLE_CODECS
            if legacy and packet_type <= 2:
                return b0 >> 4 == _KEY_FRAME and packet_type == 1, packet_type == 0
        tag = parse_video(payload)
        return tag.is_keyframe, tag.is_sequence_header
    if kind is _AUDIO and payload:
        # Likewise AAC, the audio of nearly every stream.
        if len(payload) >= 2 and payload[0] >> 4 == _SOUND_FORMAT_AAC and payload[1] <= 1:
            return False, payload[1] == 0
        return False, parse_audio(payload).is_sequence_header
    return False, False


# --- FLV file container -------------------------------------------------------------------

_FILE_HEADER = struct.Struct(">3sBBI")
_TAG_HEADER_SIZE = 11
_FLAG_AUDIO = 0x04
_FLAG_VIDEO = 0x01


def write_header(*, has_audio: bool = True, has_video: bool = True) -> bytes:
    """Return the 9-byte FLV file header followed by PreviousTagSize0 (0)."""
    flags = (_FLAG_AUDIO if has_audio else 0) | (_FLAG_VIDEO if has_video else 0)
    return _FILE_HEADER.pack(b"FLV", 1, flags, 9) + b"\x00\x00\x00\x00"


def write_tag(type_id: int, timestamp: int, body: bytes) -> bytes:
    """Return one FLV tag (header, body, PreviousTagSize); ``timestamp`` in ms (32-bit)."""
    size = len(body)
    if size >= 1 << 24:
        raise FlvError("FLV tag body larger than 16 MiB")
    ts = timestamp & 0xFFFFFFFF
    header = bytes(
        (
            type_id & 0x1F,
            size >> 16,
            (size >> 8) & 0xFF,
            size & 0xFF,
            (ts >> 16) & 0xFF,
            (ts >> 8) & 0xFF,
            ts & 0xFF,
            ts >> 24,
            0,
            0,
            0,
        )
    )
    return b"".join((header, body, (size + _TAG_HEADER_SIZE).to_bytes(4, "big")))


def iter_tags(data: bytes) -> Iterator[tuple[int, int, bytes]]:
    """Yield ``(type_id, timestamp_ms, body)`` for each tag of an FLV file held in memory."""
    if len(data) < 9:
        raise FlvError("FLV file header truncated")
    signature, version, _flags, header_size = _FILE_HEADER.unpack_from(data)
    if signature != b"FLV" or version != 1 or header_size < 9:
        raise FlvError("not an FLV file")
    pos = header_size + 4  # skip PreviousTagSize0
    total = len(data)
    while pos < total:
        if pos + _TAG_HEADER_SIZE > total:
            raise FlvError(f"FLV tag header truncated at offset {pos}")
        type_byte = data[pos]
        size = int.from_bytes(data[pos + 1 : pos + 4], "big")
        timestamp = int.from_bytes(data[pos + 4 : pos + 7], "big") | (data[pos + 7] << 24)
        start = pos + _TAG_HEADER_SIZE
        if start + size > total:
            raise FlvError(f"FLV tag body truncated at offset {pos}")
        yield type_byte & 0x1F, timestamp, data[start : start + size]
        pos = start + size + 4


class FlvDemuxer:
    """Incremental FLV file parser: :meth:`feed` bytes as they arrive (a pipe), get whole tags.

    The counterpart of :func:`iter_tags` for a stream that is never complete: an encoder
    writing FLV to its stdout.
    """

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._header_done = False

    def feed(self, data: bytes) -> list[tuple[int, int, bytes]]:
        """Return the ``(type_id, timestamp_ms, body)`` of every tag completed by ``data``."""
        buf = self._buffer
        buf += data
        pos = 0
        if not self._header_done:
            if len(buf) < 9:
                return []
            signature, version, _flags, header_size = _FILE_HEADER.unpack_from(buf)
            if signature != b"FLV" or version != 1 or header_size < 9:
                raise FlvError("not an FLV stream")
            if len(buf) < header_size + 4:
                return []
            pos = header_size + 4
            self._header_done = True
        tags = []
        total = len(buf)
        while pos + _TAG_HEADER_SIZE <= total:
            size = int.from_bytes(buf[pos + 1 : pos + 4], "big")
            end = pos + _TAG_HEADER_SIZE + size + 4
            if end > total:
                break
            timestamp = int.from_bytes(buf[pos + 4 : pos + 7], "big") | (buf[pos + 7] << 24)
            start = pos + _TAG_HEADER_SIZE
            tags.append((buf[pos] & 0x1F, timestamp, bytes(buf[start : start + size])))
            pos = end
        del buf[:pos]
        return tags
