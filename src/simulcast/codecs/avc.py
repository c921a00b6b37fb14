"""H.264/AVC decoder configuration record and SPS parsing, plus the bit reader HEVC reuses.

Only what packaging needs: profile/level for the ``avc1.PPCCLL`` codec string, SPS/PPS for
``avcC``, the NALU length size, and the picture size and frame rate from the SPS.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "AvcConfig",
    "BitReader",
    "ConfigError",
    "Sps",
    "parse_avc_config",
    "parse_sps",
    "unescape_rbsp",
]


class ConfigError(ValueError):
    """A codec configuration record or parameter set that cannot be parsed."""


class BitReader:
    """MSB-first reader over a byte string with Exp-Golomb support (H.264/H.265 style).

    The whole buffer becomes one integer so each read is a shift and a mask; parameter sets
    are tens of bytes, so this is cheap and keeps the reader free of per-byte bookkeeping.
    """

    __slots__ = ("_bits", "_pos", "_value")

    def __init__(self, data: bytes) -> None:
        self._value = int.from_bytes(data, "big")
        self._bits = len(data) * 8
        self._pos = 0

    def u(self, n: int) -> int:
        """Read an ``n``-bit unsigned integer."""
        end = self._pos + n
        if end > self._bits:
            raise ConfigError("bitstream truncated")
        self._pos = end
        return (self._value >> (self._bits - end)) & ((1 << n) - 1)

    def skip(self, n: int) -> None:
        """Skip ``n`` bits."""
        self.u(n)

    def ue(self) -> int:
        """Read an unsigned Exp-Golomb code."""
        zeros = 0
        while not self.u(1):
            zeros += 1
            if zeros > 31:
                raise ConfigError("Exp-Golomb code too long")
        return (1 << zeros) - 1 + self.u(zeros)

    def se(self) -> int:
        """Read a signed Exp-Golomb code."""
        k = self.ue()
        return (k + 1) // 2 if k & 1 else -(k // 2)


def unescape_rbsp(nalu: bytes) -> bytes:
    """Drop emulation-prevention bytes (00 00 03 -> 00 00) so the bits can be read."""
    return nalu.replace(b"\x00\x00\x03", b"\x00\x00")


@dataclass(frozen=True, slots=True)
class Sps:
    """The parts of an H.264 sequence parameter set packaging needs."""

    profile_idc: int
    level_idc: int
    width: int
    height: int
    frame_rate: float | None


@dataclass(frozen=True, slots=True)
class AvcConfig:
    """An AVCDecoderConfigurationRecord (ISO/IEC 14496-15 5.3.3.1) with its first SPS decoded."""

    record: bytes
    profile: int
    compatibility: int
    level: int
    nal_length_size: int
    sps: tuple[bytes, ...]
    pps: tuple[bytes, ...]
    width: int
    height: int
    frame_rate: float | None

    @property
    def codec_string(self) -> str:
        """RFC 6381 codec string, e.g. ``avc1.64001f``."""
        return f"avc1.{self.profile:02x}{self.compatibility:02x}{self.level:02x}"


# Profiles whose SPS carries chroma format, bit depth and scaling matrices (7.3.2.1.1).
_HIGH_PROFILES = frozenset({100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135})


def _read_nalus(record: bytes, pos: int, count: int) -> tuple[tuple[bytes, ...], int]:
    nalus = []
    for _ in range(count):
        if pos + 2 > len(record):
            raise ConfigError("parameter set length truncated")
        size = int.from_bytes(record[pos : pos + 2], "big")
        pos += 2
        if pos + size > len(record):
            raise ConfigError("parameter set truncated")
        nalus.append(record[pos : pos + size])
        pos += size
    return tuple(nalus), pos


def parse_avc_config(record: bytes) -> AvcConfig:
    """Parse an AVCDecoderConfigurationRecord and the picture size from its first SPS."""
    if len(record) < 7 or record[0] != 1:
        raise ConfigError("not an AVCDecoderConfigurationRecord")
    sps, pos = _read_nalus(record, 6, record[5] & 0x1F)
    if not sps:
        raise ConfigError("AVC configuration without SPS")
    if pos >= len(record):
        raise ConfigError("AVC configuration truncated before PPS count")
    pps, _ = _read_nalus(record, pos + 1, record[pos])
    info = parse_sps(sps[0])
    return AvcConfig(
        record=record,
        profile=record[1],
        compatibility=record[2],
        level=record[3],
        nal_length_size=(record[4] & 0x03) + 1,
        sps=sps,
        pps=pps,
        width=info.width,
        height=info.height,
        frame_rate=info.frame_rate,
    )


def _skip_scaling_list(r: BitReader, size: int) -> None:
    last = next_scale = 8
    for _ in range(size):
        if next_scale:
            next_scale = (last + r.se() + 256) % 256
        last = next_scale or last


def parse_sps(nalu: bytes) -> Sps:
    """Parse an H.264 SPS NAL unit (with its one-byte header) for size and frame rate."""
    if not nalu or nalu[0] & 0x1F != 7:
        raise ConfigError("not an SPS NAL unit")
    r = BitReader(unescape_rbsp(nalu[1:]))
    profile_idc = r.u(8)
    r.skip(8)  # constraint flags
    level_idc = r.u(8)
    r.ue()  # seq_parameter_set_id
    chroma_format_idc = 1
    separate_colour_plane = 0
    if profile_idc in _HIGH_PROFILES:
        chroma_format_idc = r.ue()
        if chroma_format_idc == 3:
            separate_colour_plane = r.u(1)
        r.ue()  # bit_depth_luma_minus8
        r.ue()  # bit_depth_chroma_minus8
        r.skip(1)  # qpprime_y_zero_transform_bypass_flag
        if r.u(1):  # seq_scaling_matrix_present_flag
            for i in range(8 if chroma_format_idc != 3 else 12):
                if r.u(1):
                    _skip_scaling_list(r, 16 if i < 6 else 64)
    r.ue()  # log2_max_frame_num_minus4
    poc_type = r.ue()
    if poc_type == 0:
        r.ue()  # log2_max_pic_order_cnt_lsb_minus4
    elif poc_type == 1:
        r.skip(1)
        r.se()
        r.se()
        for _ in range(r.ue()):
            r.se()
    r.ue()  # max_num_ref_frames
    r.skip(1)  # gaps_in_frame_num_value_allowed_flag
    width_mbs = r.ue() + 1
    height_map_units = r.ue() + 1
    frame_mbs_only = r.u(1)
    if not frame_mbs_only:
        r.skip(1)  # mb_adaptive_frame_field_flag
    r.skip(1)  # direct_8x8_inference_flag
    crop_left = crop_right = crop_top = crop_bottom = 0
    if r.u(1):
        crop_left, crop_right, crop_top, crop_bottom = r.ue(), r.ue(), r.ue(), r.ue()
    # Cropping is in chroma sample units (7.4.2.1.1, CropUnitX/CropUnitY).
    if separate_colour_plane or chroma_format_idc == 0:
        crop_x, crop_y = 1, 2 - frame_mbs_only
    else:
        crop_x = 1 if chroma_format_idc == 3 else 2
        crop_y = (2 if chroma_format_idc == 1 else 1) * (2 - frame_mbs_only)
    width = width_mbs * 16 - crop_x * (crop_left + crop_right)
    height = (2 - frame_mbs_only) * height_map_units * 16 - crop_y * (crop_top + crop_bottom)
    if width <= 0 or height <= 0:
        raise ConfigError("SPS cropping leaves no picture")
    frame_rate = _vui_frame_rate(r) if r.u(1) else None
    return Sps(profile_idc, level_idc, width, height, frame_rate)


def _vui_frame_rate(r: BitReader) -> float | None:
    """Read the VUI up to the timing info; a truncated VUI just means "unknown"."""
    try:
        if r.u(1) and r.u(8) == 255:  # aspect_ratio_info_present_flag, aspect_ratio_idc
            r.skip(32)  # sar_width, sar_height
        if r.u(1):  # overscan_info_present_flag
            r.skip(1)
        if r.u(1):  # video_signal_type_present_flag
            r.skip(4)
            if r.u(1):  # colour_description_present_flag
                r.skip(24)
        if r.u(1):  # chroma_loc_info_present_flag
            r.ue()
            r.ue()
        if not r.u(1):  # timing_info_present_flag
            return None
        num_units_in_tick, time_scale = r.u(32), r.u(32)
    except ConfigError:
        return None
    if not num_units_in_tick or not time_scale:
        return None
    # One frame is two fields, i.e. two ticks (E.2.1).
    return time_scale / (2 * num_units_in_tick)
