"""SRT publishing helpers: an ffmpeg SRT caller and the ingest's SRT counters from ``/metrics``."""

from __future__ import annotations

import asyncio
from pathlib import Path

from simulcast import metrics
from tests.support.media import FFMPEG, X264, Processes


def srt_counter(event: str) -> float:
    """The value of the SRT packet counter for ``event``."""
    return metrics.SRT_PACKETS.labels(event)._value.get()


async def publish_srt(
    procs: Processes,
    port: int,
    stream_id: str,
    seconds: float,
    log: Path,
    latency_ms: int = 120,
    *,
    options: str = "",
    audio_codec: str = "aac",
) -> asyncio.subprocess.Process:
    """ffmpeg publishing test video + a tone as MPEG-TS over SRT (caller mode); ``options``
    are more ``srt://`` URL options (``&passphrase=...``)."""
    url = f"srt://127.0.0.1:{port}?streamid={stream_id}&latency={latency_ms * 1000}&pkt_size=1316"
    return await procs.start(
        FFMPEG, "-hide_banner", "-nostats", "-re",
        "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=30",
        "-f", "lavfi", "-i", "sine=frequency=440",
        "-pix_fmt", "yuv420p", *X264, "-c:a", audio_codec, "-t", str(seconds),
        "-f", "mpegts", url + options,
        log=log,
    )  # fmt: skip


PASSPHRASE = "correct horse battery"


ROTATE_KEYS = "&kmrefreshrate=128&kmpreannounce=32"  # libsrt: a new key every 128 packets
