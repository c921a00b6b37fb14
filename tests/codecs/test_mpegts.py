"""The MPEG-TS demuxer on transport streams ffmpeg writes (H.264, H.265, AAC, Opus)."""

from __future__ import annotations

import itertools
import random
import subprocess
from pathlib import Path

import imageio_ffmpeg
import pytest

from simulcast.codecs import flv
from simulcast.codecs.aac import parse_aac_config
from simulcast.codecs.avc import parse_avc_config
from simulcast.codecs.hevc import parse_hevc_config
from simulcast.codecs.mpegts import PACKET_SIZE, TsDemuxer, TsError
from simulcast.codecs.unit import Kind, MediaUnit

FRAMES = 60


def make_ts(path: Path, video: list[str], audio: tuple[str, ...] = ("aac", "2")) -> bytes:
    subprocess.run(
        [
            imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y",
            "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=30",
            "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
            "-pix_fmt", "yuv420p", *video, "-g", "30", "-c:a", audio[0], "-ac", audio[1],
            "-frames:v", str(FRAMES), "-t", "2", "-f", "mpegts", str(path),
        ],
        check=True,
    )  # fmt: skip
    return path.read_bytes()


@pytest.fixture(scope="module")
def h264_ts(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return make_ts(tmp_path_factory.mktemp("ts") / "a.ts", ["-c:v", "libx264", "-bf", "2"])


def demux_all(data: bytes, chunks: list[int] | None = None) -> list[MediaUnit]:
    demuxer = TsDemuxer()
    units: list[MediaUnit] = []
    pos = 0
    for size in chunks or [len(data)]:
        units += demuxer.feed(data[pos : pos + size])
        pos += size
    units += demuxer.feed(data[pos:])
    return units + demuxer.flush()


def test_h264_and_aac_become_flv_units(h264_ts: bytes) -> None:
    units = demux_all(h264_ts)
    video = [u for u in units if u.kind == Kind.VIDEO]
    audio = [u for u in units if u.kind == Kind.AUDIO]
    assert video[0].sequence_header and audio[0].sequence_header
    # Both configurations come before any media (outputs build their tracks from them).
    first_media = next(i for i, u in enumerate(units) if not u.sequence_header)
    assert {u.kind for u in units[:first_media]} == {Kind.VIDEO, Kind.AUDIO}
    avc = parse_avc_config(video[0].payload[5:])
    assert (avc.width, avc.height) == (320, 240)
    aac = parse_aac_config(audio[0].payload[2:])
    assert (aac.object_type, aac.sample_rate, aac.channels) == (2, 48000, 2)
    frames = [u for u in video if not u.sequence_header]
    assert len(frames) == FRAMES
    assert frames[0].keyframe and sum(u.keyframe for u in frames) == 2
    assert frames[0].timestamp == 0
    dts = [u.timestamp for u in frames]
    assert dts == sorted(dts) and dts[-1] == pytest.approx(1967, abs=40)
    tags = [flv.parse_video(u.payload) for u in frames]
    assert any(t.composition_time > 0 for t in tags)  # B-frames: PTS after DTS
    # Classified as the RTMP ingest would classify the same bodies.
    assert all(flv.classify(Kind.VIDEO, u.payload) == (u.keyframe, False) for u in frames)
    assert 90 <= len(audio) - 1 <= 96  # 2 s of 1024-sample frames at 48 kHz


def test_any_split_gives_the_same_units(h264_ts: bytes) -> None:
    rng = random.Random(3)
    chunks = [rng.randint(1, 3000) for _ in range(len(h264_ts) // 1500)]
    assert demux_all(h264_ts, chunks) == demux_all(h264_ts)


def test_a_lost_packet_drops_its_pes_only(h264_ts: bytes) -> None:
    packets = [h264_ts[i : i + PACKET_SIZE] for i in range(0, len(h264_ts), PACKET_SIZE)]
    damaged = b"".join(packets[:40] + packets[47:])  # one SRT datagram's worth (7 packets)
    demuxer = TsDemuxer()
    units = demuxer.feed(damaged) + demuxer.flush()
    assert demuxer.discontinuities >= 1
    frames = [u for u in units if u.kind == Kind.VIDEO and not u.sequence_header]
    assert FRAMES - 3 <= len(frames) < FRAMES


def test_h265_becomes_enhanced_rtmp(tmp_path: Path) -> None:
    data = make_ts(tmp_path / "h.ts", ["-c:v", "libx265", "-x265-params", "log-level=error"])
    units = demux_all(data)
    video = [u for u in units if u.kind == Kind.VIDEO]
    header = flv.parse_video(video[0].payload)
    assert video[0].sequence_header and header.codec == "hevc" and header.is_sequence_header
    config = parse_hevc_config(video[0].payload[header.data_offset :])
    assert (config.width, config.height) == (320, 240)
    assert config.codec_string.startswith("hvc1.1.")
    frames = [u for u in video if not u.sequence_header]
    assert len(frames) == FRAMES and frames[0].keyframe


def test_garbage_is_not_a_transport_stream() -> None:
    with pytest.raises(TsError):
        TsDemuxer().feed(bytes(PACKET_SIZE * 2))
    with pytest.raises(TsError):
        TsDemuxer().feed(random.Random(1).randbytes(PACKET_SIZE * 7))


@pytest.mark.parametrize(("channels", "family"), [("2", b"\x00"), ("6", b"\x01\x04\x02")])
def test_opus_becomes_enhanced_rtmp_opus(tmp_path: Path, channels: str, family: bytes) -> None:
    data = make_ts(tmp_path / "o.ts", ["-c:v", "libx264"], ("libopus", channels))
    audio = [u for u in demux_all(data) if u.kind == Kind.AUDIO]
    header = flv.parse_audio(audio[0].payload)
    assert audio[0].sequence_header and header.codec == "opus" and header.enhanced
    head = audio[0].payload[header.data_offset :]
    assert head.startswith(b"OpusHead") and head[9] == int(channels)
    assert head[18:21] == family  # 5.1: mapping family 1, 4 streams, 2 coupled (RFC 7845)
    frames = audio[1:]
    assert all(flv.parse_audio(u.payload).codec == "opus" for u in frames)
    assert 98 <= len(frames) <= 101  # 2 s of 20 ms packets
    steps = {b.timestamp - a.timestamp for a, b in itertools.pairwise(frames)}
    assert steps <= {19, 20, 21}, steps


def test_runs_of_packets_give_what_single_packets_give(h264_ts: bytes) -> None:
    # A continuation packet lost, or sent twice, in the middle of a PES: runs of packets are
    # appended at once, and must stop exactly where packet-by-packet demuxing sees the change.
    packets = [h264_ts[i : i + PACKET_SIZE] for i in range(0, len(h264_ts), PACKET_SIZE)]
    middles = [i for i, p in enumerate(packets) if p[1] & 0x1F == 0x01 and not p[1] & 0x40]
    lost, twice = middles[200], middles[400]
    damaged = b"".join(p * 2 if i == twice else p for i, p in enumerate(packets) if i != lost)
    whole, single = TsDemuxer(), TsDemuxer()
    units = whole.feed(damaged) + whole.flush()
    one_by_one = [
        u
        for i in range(0, len(damaged), PACKET_SIZE)
        for u in single.feed(damaged[i : i + PACKET_SIZE])
    ]
    assert units == one_by_one + single.flush()
    assert whole.discontinuities == single.discontinuities == 1


def test_a_pes_without_end_is_bounded(h264_ts: bytes) -> None:
    packets = [h264_ts[i : i + PACKET_SIZE] for i in range(0, len(h264_ts), PACKET_SIZE)]
    start = next(i for i, p in enumerate(packets) if p[1] & 0x1F == 0x01 and p[1] & 0x40)
    head = packets[start]
    pid_high, pid_low, cc = head[1] & 0x1F, head[2], head[3] & 0x0F
    endless = [
        bytes([0x47, pid_high, pid_low, 0x10 | (cc + i) & 0x0F]) + b"\xff" * (PACKET_SIZE - 4)
        for i in range(1, 8 * 1024 * 1024 // (PACKET_SIZE - 4) + 2)
    ]
    demuxer = TsDemuxer()
    demuxer.feed(b"".join(packets[: start + 1]))
    with pytest.raises(TsError, match="8 MiB"):
        demuxer.feed(b"".join(endless))
