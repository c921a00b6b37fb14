"""Testing mode over HTTP: the playlist counts against the shared budget; its segments, fetched
with the playlist's signed token, need no key and do not count. A token opens only its own
destination and cannot be forged."""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import imageio_ffmpeg
import pytest

from tests.support import ServerProcess, make_server
from tests.support.hls import TESTING_VIEWER, create_stream

pytestmark = pytest.mark.media


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    proc = make_server(tmp_path, hls_testing_segment_seconds="1")
    proc.start()
    yield proc
    proc.stop()


def test_segments_through_a_served_playlist_are_free_and_bound(server: ServerProcess) -> None:
    sk = server.create_account(sats=10_000)
    created = create_stream(server, sk, "tokens", TESTING_VIEWER, TESTING_VIEWER)
    (a, b) = created["destinations"]
    publisher = subprocess.Popen(
        [
            imageio_ffmpeg.get_ffmpeg_exe(), "-loglevel", "error", "-re",
            "-f", "lavfi", "-i", "testsrc2=size=160x120:rate=15", "-t", "40",
            "-pix_fmt", "yuv420p", "-c:v", "libx264", "-preset", "ultrafast", "-g", "15",
            "-f", "flv", server.rtmp_url(created["streamKey"]),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        status_url = f"{server.base_url}/api/public/stream/status"
        deadline = time.monotonic() + 30
        while not httpx.get(status_url, params={"apiKey": a["apiKey"]}).json()["hlsReady"]:
            assert time.monotonic() < deadline, server.log()[-2000:]
            time.sleep(0.3)
        base_a = f"{server.base_url}/hls/{a['playbackToken']}"
        base_b = f"{server.base_url}/hls/{b['playbackToken']}"
        first = httpx.get(f"{base_a}/index.m3u8", params={"apiKey": a["apiKey"]})
        assert first.status_code == 200
        remaining = int(first.headers["X-RateLimit-Remaining"])
        uris = [ln for ln in first.text.splitlines() if ln and not ln.startswith("#")]
        uris += re.findall(r'URI="([^"]+)"', first.text)
        assert uris and all(f"apiKey={a['apiKey']}&st=" in u for u in uris), first.text

        # Segments with only the token: served, not counted.
        for uri in uris:
            name, _, query = uri.partition("?")
            token = dict(p.split("=", 1) for p in query.split("&"))["st"]
            segment = httpx.get(f"{base_a}/{name}", params={"st": token})
            assert segment.status_code == 200 and segment.content
            assert "X-RateLimit-Remaining" not in segment.headers
        second = httpx.get(f"{base_a}/index.m3u8", params={"apiKey": a["apiKey"]})
        assert int(second.headers["X-RateLimit-Remaining"]) == remaining - 1

        # The token opens only its own destination, and cannot be altered.
        expires, signature = token.split(".")
        # (B is live too; the token is checked before any file is looked up.)
        assert httpx.get(f"{base_b}/{name}", params={"st": token}).status_code == 401
        forged = f"{int(expires) + 86400}.{signature}"
        assert httpx.get(f"{base_a}/{name}", params={"st": forged}).status_code == 401
        # Without a token a segment is an ordinary request: a key is needed, and it counts.
        assert httpx.get(f"{base_a}/{name}").status_code == 401
        keyed = httpx.get(f"{base_a}/{name}", params={"apiKey": a["apiKey"]})
        assert keyed.status_code == 200
        assert int(keyed.headers["X-RateLimit-Remaining"]) == remaining - 2
    finally:
        publisher.kill()
        publisher.wait()
