"""Track descriptions for fMP4, built from FLV sequence-header payloads.

Video uses a 90 kHz timescale (RTMP milliseconds map exactly, x90) and audio its sample rate
(so AAC frames are exactly 1024 ticks long); Opus always runs at 48 kHz in MP4.
"""

from __future__ import annotations

from dataclasses import dataclass

from simulcast.codecs.aac import parse_aac_config
from simulcast.codecs.avc import BitReader, ConfigError, parse_avc_config
from simulcast.codecs.hevc import parse_hevc_config

__all__ = ["AudioTrack", "Track", "VideoTrack", "audio_track", "video_track"]

VIDEO_TIMESCALE = 90_000
OPUS_RATE = 48_000


@dataclass(frozen=True, slots=True)
class VideoTrack:
    """A video track: ``config`` is the decoder configuration record, carried verbatim."""

    codec: str  # "avc", "hevc" or "av1"
    config: bytes
    width: int
    height: int
    codec_string: str
    frame_rate: float | None = None
    track_id: int = 1
    timescale: int = VIDEO_TIMESCALE


@dataclass(frozen=True, slots=True)
class AudioTrack:
    """An audio track: ``config`` is the AudioSpecificConfig (AAC) or OpusHead (Opus)."""

    codec: str  # "aac" or "opus"
    config: bytes
    sample_rate: int
    channels: int
    codec_string: str
    track_id: int = 2

    @property
    def timescale(self) -> int:
        """Ticks per second: the sample rate."""
        return self.sample_rate

    @property
    def frame_duration(self) -> int:
        """Typical samples per frame, the duration used when no later timestamp is known."""
        return 1024 if self.codec == "aac" else OPUS_RATE // 50  # Opus: 20 ms frames


Track = VideoTrack | AudioTrack


def video_track(codec: str, config: bytes, track_id: int = 1) -> VideoTrack:
    """Describe a video track from an FLV sequence header's codec data.

    Raises :class:`ConfigError` for a malformed record or an unsupported codec.
    """
    if codec == "avc":
        # Samples are copied with their NALU length prefixes untouched; avcC/hvcC announce the
        # same length size, so no conversion is needed whatever it is.
        avc = parse_avc_config(config)
        return VideoTrack(
            codec, config, avc.width, avc.height, avc.codec_string, avc.frame_rate, track_id
        )
    if codec == "hevc":
        hevc = parse_hevc_config(config)
        return VideoTrack(
            codec, config, hevc.width or 0, hevc.height or 0, hevc.codec_string, None, track_id
        )
    if codec == "av1":
        width, height, codec_string = _av1_info(config)
        return VideoTrack(codec, config, width, height, codec_string, None, track_id)
    raise ConfigError(f"unsupported video codec for fMP4: {codec}")


def audio_track(codec: str, config: bytes, track_id: int = 2) -> AudioTrack:
    """Describe an audio track from an FLV sequence header's codec data."""
    if codec == "aac":
        aac = parse_aac_config(config)
        return AudioTrack(codec, config, aac.sample_rate, aac.channels, aac.codec_string, track_id)
    if codec == "opus":
        if len(config) < 19 or not config.startswith(b"OpusHead"):
            raise ConfigError("not an OpusHead")
        return AudioTrack(codec, config, OPUS_RATE, config[9], "opus", track_id)
    raise ConfigError(f"unsupported audio codec for fMP4: {codec}")


def _leb128(data: bytes, pos: int) -> tuple[int, int]:
    value = 0
    for i in range(8):
        if pos >= len(data):
            raise ConfigError("leb128 truncated")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << (7 * i)
        if not byte & 0x80:
            return value, pos
    raise ConfigError("leb128 too long")


def _av1_info(config: bytes) -> tuple[int, int, str]:
    """Return (width, height, codec string) from an AV1CodecConfigurationRecord."""
    if len(config) < 4 or config[0] != 0x81:
        raise ConfigError("not an AV1CodecConfigurationRecord")
    profile, level, tier = config[1] >> 5, config[1] & 0x1F, config[2] >> 7
    high_bitdepth, twelve_bit = (config[2] >> 6) & 1, (config[2] >> 5) & 1
    depth = 12 if twelve_bit else 10 if high_bitdepth else 8
    codec_string = f"av01.{profile}.{level:02d}{'MH'[tier]}.{depth:02d}"
    pos = 4
    while pos < len(config):  # configOBUs: find the sequence header OBU
        header = config[pos]
        obu_type, has_ext, has_size = (header >> 3) & 0x0F, (header >> 2) & 1, (header >> 1) & 1
        pos += 1 + has_ext
        size, pos = _leb128(config, pos) if has_size else (len(config) - pos, pos)
        if obu_type == 1:
            width, height = _av1_sequence_size(config[pos : pos + size])
            return width, height, codec_string
        pos += size
    return 0, 0, codec_string


def _av1_sequence_size(obu: bytes) -> tuple[int, int]:
    """Read max_frame_width/height from an AV1 sequence header OBU (AV1 spec 5.5.1)."""
    r = BitReader(obu)
    r.skip(4)  # seq_profile, still_picture
    if r.u(1):  # reduced_still_picture_header
        r.skip(5)
    else:
        decoder_model_info = initial_display_delay = 0
        delay_length = 0
        if r.u(1):  # timing_info_present_flag
            r.skip(64)
            if r.u(1):  # equal_picture_interval: uvlc num_ticks_per_picture_minus_1
                zeros = 0
                while not r.u(1):
                    zeros += 1
                    if zeros >= 32:
                        raise ConfigError("uvlc too long")
                r.skip(zeros)
            decoder_model_info = r.u(1)
            if decoder_model_info:
                delay_length = r.u(5) + 1
                r.skip(32 + 5 + 5)
        initial_display_delay = r.u(1)
        for _ in range(r.u(5) + 1):  # operating points
            r.skip(12)
            if r.u(5) > 7:
                r.skip(1)
            if decoder_model_info and r.u(1):
                r.skip(2 * delay_length + 1)
            if initial_display_delay and r.u(1):
                r.skip(4)
    width_bits, height_bits = r.u(4) + 1, r.u(4) + 1
    return r.u(width_bits) + 1, r.u(height_bits) + 1
