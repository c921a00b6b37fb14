"""AAC AudioSpecificConfig (ISO/IEC 14496-3 1.6.2.1): object type, sample rate, channels."""

from __future__ import annotations

from dataclasses import dataclass

from simulcast.codecs.avc import BitReader, ConfigError

__all__ = ["AacConfig", "parse_aac_config"]

SAMPLE_RATES = (
    96000,
    88200,
    64000,
    48000,
    44100,
    32000,
    24000,
    22050,
    16000,
    12000,
    11025,
    8000,
    7350,
)
_EXPLICIT_RATE = 15
_SBR = 5
_PS = 29


@dataclass(frozen=True, slots=True)
class AacConfig:
    """A decoded AudioSpecificConfig; ``record`` is the raw bytes for ``esds``.

    ``object_type`` is the signaled one (2 = AAC-LC, 5 = HE-AAC, 29 = HE-AACv2) and
    ``sample_rate`` the core (pre-SBR) rate, which is what the MP4 sample entry carries.
    """

    record: bytes
    object_type: int
    sample_rate: int
    channels: int

    @property
    def codec_string(self) -> str:
        """RFC 6381 codec string, e.g. ``mp4a.40.2``."""
        return f"mp4a.40.{self.object_type}"


def _object_type(r: BitReader) -> int:
    object_type = r.u(5)
    return 32 + r.u(6) if object_type == 31 else object_type


def _sample_rate(r: BitReader) -> int:
    index = r.u(4)
    if index == _EXPLICIT_RATE:
        return r.u(24)
    if index >= len(SAMPLE_RATES):
        raise ConfigError(f"reserved AAC sampling frequency index {index}")
    return SAMPLE_RATES[index]


def parse_aac_config(record: bytes) -> AacConfig:
    """Parse an AudioSpecificConfig (the AAC sequence header payload)."""
    r = BitReader(record)
    object_type = _object_type(r)
    sample_rate = _sample_rate(r)
    channels = r.u(4)
    if object_type == 0 or sample_rate == 0:
        raise ConfigError("invalid AudioSpecificConfig")
    if object_type in (_SBR, _PS):
        _sample_rate(r)  # extensionSamplingFrequency: the SBR output rate
        _object_type(r)  # the core object type under SBR
    return AacConfig(record, object_type, sample_rate, channels)
