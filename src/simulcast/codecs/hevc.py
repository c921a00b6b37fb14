"""H.265/HEVC decoder configuration record (ISO/IEC 14496-15 8.3.3.1), minimal.

The ``hvcC`` box carries the record verbatim, so only the codec string fields and the picture
size (from the SPS, cheap up to ``conformance_window``) are decoded.
"""

from __future__ import annotations

from dataclasses import dataclass

from simulcast.codecs.avc import BitReader, ConfigError, unescape_rbsp

__all__ = ["HevcConfig", "parse_hevc_config", "parse_hevc_sps_size"]

_NAL_SPS = 33
_RECORD_HEADER = 23


@dataclass(frozen=True, slots=True)
class HevcConfig:
    """An HEVCDecoderConfigurationRecord; ``width``/``height`` are None without a readable SPS."""

    record: bytes
    profile_space: int
    tier: int
    profile_idc: int
    compatibility_flags: int
    constraint_flags: bytes
    level_idc: int
    nal_length_size: int
    width: int | None
    height: int | None

    @property
    def codec_string(self) -> str:
        """RFC 6381 / ISO 14496-15 E.3 codec string, e.g. ``hvc1.1.6.L93.B0``."""
        space = ("", "A", "B", "C")[self.profile_space]
        # The compatibility flags are written bit-reversed, in hex without leading zeros.
        compat = int(f"{self.compatibility_flags:032b}"[::-1], 2)
        constraints = self.constraint_flags.rstrip(b"\x00")
        parts = [
            "hvc1",
            f"{space}{self.profile_idc}",
            f"{compat:X}",
            f"{'LH'[self.tier]}{self.level_idc}",
        ]
        parts += [f"{b:X}" for b in constraints] or ["0"]
        return ".".join(parts)


def parse_hevc_config(record: bytes) -> HevcConfig:
    """Parse an HEVCDecoderConfigurationRecord; the SPS is decoded only for the picture size."""
    if len(record) < _RECORD_HEADER or record[0] != 1:
        raise ConfigError("not an HEVCDecoderConfigurationRecord")
    width = height = None
    pos = _RECORD_HEADER
    for _ in range(record[22]):
        if pos + 3 > len(record):
            raise ConfigError("HEVC parameter set array truncated")
        nal_type = record[pos] & 0x3F
        count = int.from_bytes(record[pos + 1 : pos + 3], "big")
        pos += 3
        for _ in range(count):
            if pos + 2 > len(record):
                raise ConfigError("HEVC parameter set length truncated")
            size = int.from_bytes(record[pos : pos + 2], "big")
            nalu = record[pos + 2 : pos + 2 + size]
            if len(nalu) != size:
                raise ConfigError("HEVC parameter set truncated")
            if nal_type == _NAL_SPS and width is None:
                width, height = parse_hevc_sps_size(nalu)
            pos += 2 + size
    b1 = record[1]
    return HevcConfig(
        record=record,
        profile_space=b1 >> 6,
        tier=(b1 >> 5) & 1,
        profile_idc=b1 & 0x1F,
        compatibility_flags=int.from_bytes(record[2:6], "big"),
        constraint_flags=record[6:12],
        level_idc=record[12],
        nal_length_size=(record[21] & 0x03) + 1,
        width=width,
        height=height,
    )


def parse_hevc_sps_size(nalu: bytes) -> tuple[int, int]:
    """Return the cropped (width, height) from an HEVC SPS NAL unit (with its 2-byte header)."""
    if len(nalu) < 3 or (nalu[0] >> 1) & 0x3F != _NAL_SPS:
        raise ConfigError("not an HEVC SPS NAL unit")
    r = BitReader(unescape_rbsp(nalu[2:]))
    r.skip(4)  # sps_video_parameter_set_id
    max_sub_layers_minus1 = r.u(3)
    r.skip(1)  # sps_temporal_id_nesting_flag
    r.skip(96)  # general profile_tier_level: 88 bits of profile + general_level_idc
    present = [(r.u(1), r.u(1)) for _ in range(max_sub_layers_minus1)]
    if max_sub_layers_minus1:
        r.skip(2 * (8 - max_sub_layers_minus1))  # reserved_zero_2bits
    for profile_present, level_present in present:
        r.skip(88 * profile_present + 8 * level_present)
    r.ue()  # sps_seq_parameter_set_id
    chroma_format_idc = r.ue()
    separate_colour_plane = r.u(1) if chroma_format_idc == 3 else 0
    width, height = r.ue(), r.ue()
    if r.u(1):  # conformance_window_flag, offsets in chroma sample units
        left, right, top, bottom = r.ue(), r.ue(), r.ue(), r.ue()
        chroma = 0 if separate_colour_plane else chroma_format_idc
        sub_w = 2 if chroma in (1, 2) else 1
        sub_h = 2 if chroma == 1 else 1
        width -= sub_w * (left + right)
        height -= sub_h * (top + bottom)
    if width <= 0 or height <= 0:
        raise ConfigError("HEVC SPS has no picture")
    return width, height
