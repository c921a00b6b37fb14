"""Codec configuration parsers (AVC/HEVC/AAC/AV1) and the sans-I/O import rule."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from simulcast.codecs import flv
from simulcast.codecs.aac import parse_aac_config
from simulcast.codecs.avc import ConfigError, parse_avc_config, parse_sps
from simulcast.codecs.fmp4 import audio_track, video_track
from simulcast.codecs.hevc import parse_hevc_config

DATA = Path(__file__).parent / "data"


def sequence_header(name: str, type_id: int) -> tuple[str, bytes]:
    for tag_type, _ts, body in flv.iter_tags((DATA / name).read_bytes()):
        if tag_type == type_id:
            tag = flv.parse_video(body) if type_id == 9 else flv.parse_audio(body)
            if tag.is_sequence_header:
                return tag.codec, body[tag.data_offset : tag.data_end]
    raise AssertionError("no sequence header")


def test_avc_config_from_ffmpeg() -> None:
    _, record = sequence_header("media_avc_aac.flv", 9)
    config = parse_avc_config(record)
    assert (config.width, config.height, config.frame_rate) == (320, 240, 30.0)
    assert config.nal_length_size == 4 and len(config.sps) == 1 and len(config.pps) == 1
    assert config.codec_string == "avc1.42c00d"


def test_sps_cropping_1080p() -> None:
    # x264 High profile 1920x1080: 1088 coded lines cropped by 8 (frame_crop_bottom_offset=4).
    sps = bytes.fromhex("6764002aacd940780227e5c04400000303e80000ea6003c60c6580")
    info = parse_sps(sps)
    assert (info.profile_idc, info.level_idc, info.width, info.height) == (100, 42, 1920, 1080)


def test_aac_configs() -> None:
    lc = parse_aac_config(b"\x12\x10")
    assert (lc.object_type, lc.sample_rate, lc.channels, lc.codec_string) == (
        2,
        44100,
        2,
        "mp4a.40.2",
    )
    # Explicit 24-bit frequency (index 15), AAC-LC, 1 channel, padded to 5 bytes.
    explicit = (2 << 35 | 15 << 31 | 37800 << 7 | 1 << 3).to_bytes(5, "big")
    assert parse_aac_config(explicit).sample_rate == 37800
    he = parse_aac_config(bytes.fromhex("2b920800"))  # HE-AAC (SBR), 22.05 kHz core
    assert (he.object_type, he.sample_rate, he.channels) == (5, 22050, 2)
    with pytest.raises(ConfigError):
        parse_aac_config(b"\x17\x80")  # reserved frequency index 14


def test_hevc_and_av1_configs() -> None:
    _, record = sequence_header("media_hevc.flv", 9)
    hevc = parse_hevc_config(record)
    assert (hevc.width, hevc.height, hevc.nal_length_size) == (160, 120, 4)
    assert hevc.codec_string == "hvc1.1.6.L30.90"
    codec, record = sequence_header("media_av1.flv", 9)
    av1 = video_track(codec, record)
    assert (av1.width, av1.height, av1.codec_string) == (160, 120, "av01.0.00M.08")


def test_opus_track() -> None:
    codec, head = sequence_header("media_opus.flv", 8)
    track = audio_track(codec, head)
    assert (track.codec, track.sample_rate, track.channels) == ("opus", 48000, 1)


@given(st.binary(max_size=64))
def test_sps_parser_only_raises_config_error(data: bytes) -> None:
    with contextlib.suppress(ConfigError):
        parse_sps(b"\x67" + data)


@given(st.binary(max_size=96))
def test_config_parsers_only_raise_config_error(data: bytes) -> None:
    for parse in (
        parse_avc_config,
        parse_hevc_config,
        parse_aac_config,
        lambda d: video_track("av1", b"\x81" + d),
    ):
        with contextlib.suppress(ConfigError):
            parse(data)


def test_codec_modules_import_no_io() -> None:
    modules = [
        "simulcast.codecs.flv",
        "simulcast.codecs.avc",
        "simulcast.codecs.hevc",
        "simulcast.codecs.aac",
        "simulcast.codecs.fmp4",
        "simulcast.codecs.hls",
    ]
    code = (
        "import sys\n"
        + "".join(f"import {m}\n" for m in modules)
        + "bad = {'asyncio', 'socket', 'ssl', 'selectors'} & set(sys.modules)\n"
        + "print(','.join(sorted(bad)))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == ""
