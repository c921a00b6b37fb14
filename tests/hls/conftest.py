"""One real server and one live ffmpeg publish shared by the HLS end-to-end and browser tests.

The stream has two self-hosted destinations: ``production`` with a 10 s DVR window and
``testing`` (live only), so every test watches the same session from a different angle. A second
stream's ``pk_`` key plays the stranger. Segments are 1 s to keep the suite short.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import imageio_ffmpeg
import pytest

from tests.support import ServerProcess, make_server

WEB = Path(__file__).parent / "web"
SEGMENT_SECONDS = 1.0
WINDOW_SECONDS = 10
PUBLISH_SECONDS = 60


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


@pytest.fixture(scope="session")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    """A server with a live stream whose HLS is ready."""
    server = make_server(
        tmp_path_factory.mktemp("hls-server"), hls_segment_seconds=str(SEGMENT_SECONDS)
    )
    server.start()
    publisher: subprocess.Popen[bytes] | None = None
    try:
        sk = server.create_account(sats=1_000_000)
        api = httpx.Client(base_url=server.base_url, headers={"Authorization": f"Bearer {sk}"})
        created = api.post(
            "/api/streams",
            json={
                "label": "HLS e2e",
                "destinations": [
                    {
                        "type": "self-hosted",
                        "config": {"mode": "production", "dvrWindowSeconds": WINDOW_SECONDS},
                    },
                    {"type": "self-hosted", "config": {"mode": "testing", "dvrWindowSeconds": 0}},
                ],
            },
        )
        assert created.status_code in (200, 201), created.text
        other = api.post(
            "/api/streams",
            json={"label": "stranger", "destinations": [{"type": "self-hosted"}]},
        )
        assert other.status_code in (200, 201), other.text
        body = created.json()
        state = Live(
            server=server,
            sk=sk,
            stream_key=body["streamKey"],
            production=_self_hosted(body, 0),
            testing=_self_hosted(body, 1),
            stranger_pk=_self_hosted(other.json(), 0).pk,
        )
        publisher = state.publisher = state.publish(PUBLISH_SECONDS)
        state.wait_ready()
        yield state
    finally:
        if publisher is not None and publisher.poll() is None:
            publisher.terminate()
            publisher.wait(10)
        server.stop()


@pytest.fixture(scope="session")
def web_players() -> Path:
    """hls.js and video.js from npm, installed once into ``tests/hls/web/node_modules``."""
    if not (WEB / "node_modules" / "hls.js" / "dist" / "hls.min.js").exists():
        npm = shutil.which("npm")
        if npm is None:
            pytest.skip("npm is not installed (needed to install hls.js and video.js)")
        subprocess.run(
            [npm, "ci" if (WEB / "package-lock.json").exists() else "install", "--no-audit"],
            cwd=WEB,
            check=True,
            capture_output=True,
            timeout=300,
        )
    return WEB / "node_modules"
