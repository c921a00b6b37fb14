"""HLS test helpers: a live session published into a real server with self-hosted viewers, and
channel configs and feeders for the packager."""

from __future__ import annotations

import sqlite3
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import imageio_ffmpeg
import m3u8

from simulcast.codecs.hls import InitSegment, Segment
from simulcast.outputs.hls import ChannelConfig, HlsChannel
from tests.support import ServerProcess, wait_for

SEGMENT_SECONDS = 1.0


WINDOW_SECONDS = 10


PUBLISH_SECONDS = 600
"""A shared publish outlasts every test that watches it; the fixture stops it at the end."""


def complete(parsed: m3u8.M3U8) -> list[m3u8.Segment]:
    """The playlist's complete segments. A low-latency playlist ends with the segment still
    being written, known only by its parts; the parser lists it last, without a URI and without
    the init section (it has no EXTINF line to attach one to)."""
    return [s for s in parsed.segments if s.uri is not None]


@dataclass
class Viewer:
    """One self-hosted destination as a viewer sees it."""

    destination_id: int
    pk: str
    token: str

    def url(self, base: str, name: str = "index.m3u8") -> str:
        return f"{base}/hls/{self.token}/{name}"


@dataclass
class Live:
    """The running server, its publish, and the keys to watch it."""

    server: ServerProcess
    sk: str
    stream_key: str
    production: Viewer
    testing: Viewer
    stranger_pk: str
    publisher: subprocess.Popen[bytes] | None = None

    @property
    def base(self) -> str:
        return self.server.base_url

    def status(self, pk: str) -> dict[str, object]:
        response = httpx.get(f"{self.base}/api/public/stream/status", params={"apiKey": pk})
        response.raise_for_status()
        result: dict[str, object] = response.json()
        return result

    def publish(self, seconds: int) -> subprocess.Popen[bytes]:
        """Start an ffmpeg publisher (real time) for ``seconds``."""
        return subprocess.Popen(
            [
                imageio_ffmpeg.get_ffmpeg_exe(),
                "-loglevel",
                "error",
                "-re",
                "-f",
                "lavfi",
                "-i",
                "testsrc2=size=320x240:rate=30",
                "-f",
                "lavfi",
                "-i",
                "sine",
                "-t",
                str(seconds),
                "-pix_fmt",
                "yuv420p",
                "-c:v",
                "libx264",
                "-preset",
                "ultrafast",
                "-g",
                "30",
                "-c:a",
                "aac",
                "-f",
                "flv",
                self.server.rtmp_url(self.stream_key),
            ]
        )

    def ensure_publishing(self) -> None:
        """Publish again, and wait for HLS, when the last publish has ended: the tests that
        share one stream must not depend on which of them ran before (a parallel run splits
        the modules between workers in another order)."""
        if self.publisher is not None and self.publisher.poll() is None:
            return
        self.wait_offline()  # the ended publish's session closes first: a new one replaces it
        self.publisher = self.publish(PUBLISH_SECONDS)
        self.wait_ready()

    def wait_offline(self, within: float = 10.0) -> None:
        """Wait until the stream is no longer live; fail after ``within`` seconds."""
        wait_for(
            lambda: not self.status(self.production.pk)["isLive"], within, "the stream offline"
        )

    def wait_ready(self, within: float = 20.0) -> dict[str, object]:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            status = self.status(self.production.pk)
            if status["hlsReady"]:
                return status
            time.sleep(0.25)
        raise AssertionError("hlsReady never became true:\n" + self.server.log()[-3000:])


def _self_hosted(body: dict[str, object], index: int) -> Viewer:
    dests = body["destinations"]
    assert isinstance(dests, list)
    dest = dests[index]
    return Viewer(dest["id"], dest["apiKey"], dest["playbackToken"])


TESTING_VIEWER = {"type": "self-hosted", "config": {"mode": "testing", "dvrWindowSeconds": 0}}


def create_stream(
    server: ServerProcess, sk: str, label: str, *destinations: object, **fields: object
) -> dict[str, Any]:
    """Create a stream with ``destinations`` (and any other body ``fields``) through the API
    with the ``sk_`` key; the created stream's JSON."""
    response = httpx.post(
        f"{server.base_url}/api/streams",
        headers={"X-API-Key": sk},
        json={"label": label, "destinations": list(destinations), **fields},
    )
    assert response.status_code in (200, 201), response.text
    body: dict[str, Any] = response.json()
    return body


@contextmanager
def live_stream(server: ServerProcess, label: str, production: dict[str, object]) -> Iterator[Live]:
    """Start ``server`` (prepared, not started) and publish a stream to it until its HLS is
    ready: a self-hosted production destination configured by ``production``, a testing one,
    and a second stream whose key plays the stranger. Stops the publisher and the server after.
    """
    server.start()
    state: Live | None = None
    try:
        sk = server.create_account(sats=1_000_000)
        body = create_stream(
            server, sk, label, {"type": "self-hosted", "config": production}, TESTING_VIEWER
        )
        other = create_stream(server, sk, "stranger", {"type": "self-hosted"})
        state = Live(
            server=server,
            sk=sk,
            stream_key=body["streamKey"],
            production=_self_hosted(body, 0),
            testing=_self_hosted(body, 1),
            stranger_pk=_self_hosted(other, 0).pk,
        )
        state.publisher = state.publish(PUBLISH_SECONDS)
        state.wait_ready()
        yield state
    finally:
        if state is not None and state.publisher is not None and state.publisher.poll() is None:
            state.publisher.terminate()
            state.publisher.wait(10)
        server.stop()


def metered_bytes(server: ServerProcess, destination_id: int | str) -> int:
    """The bytes served to one destination that ``server`` has flushed to its SQLite database."""
    with sqlite3.connect(server.data_dir / "simulcast.db") as conn:
        row = conn.execute(
            "SELECT COALESCE(SUM(bytes), 0) FROM bandwidth_buckets WHERE destination_id = ?",
            (destination_id,),
        ).fetchone()
    return int(row[0])


def config(**overrides: object) -> ChannelConfig:
    values: dict[str, object] = {
        "target_duration": 1.0,
        "window_seconds": 10,
        "live_segments": 4,
        "memory_segments": 2,
        "min_free_bytes": 0,
    }
    values.update(overrides)
    return ChannelConfig(**values)  # type: ignore[arg-type]


async def feed(channel: HlsChannel, count: int, start: float = 1000.0, size: int = 100) -> None:
    if not channel._init_name:
        await channel.add(InitSegment(b"init", 1, None, None), 0)
    for i in range(count):
        seq = channel._next_sequence
        await channel.add(Segment(seq, bytes(size), seq * 1000, 1.0, False, 1), start + i)
