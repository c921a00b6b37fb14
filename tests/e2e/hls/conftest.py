"""One real server and one live ffmpeg publish shared by the HLS end-to-end and browser tests.

The stream has two self-hosted destinations: ``production`` with a 10 s DVR window and
``testing`` (live only), so every test watches the same session from a different angle. A second
stream's ``pk_`` key plays the stranger. Segments are 1 s to keep the suite short.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import make_server
from tests.support.hls import SEGMENT_SECONDS, WINDOW_SECONDS, Live, live_stream

WEB = Path(__file__).parent / "web"


@pytest.fixture(scope="session")
def live_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    """A server with a live stream whose HLS is ready, shared by every test of the session."""
    server = make_server(
        tmp_path_factory.mktemp("hls-server"),
        hls_segment_seconds=str(SEGMENT_SECONDS),
        bandwidth_flush_seconds="1",  # the metering test waits for flushes
    )
    with live_stream(
        server, "HLS e2e", {"mode": "production", "dvrWindowSeconds": WINDOW_SECONDS}
    ) as state:
        yield state


@pytest.fixture
def live(live_session: Live) -> Live:
    """The shared live stream, published again if a test before this one ended its publish."""
    live_session.ensure_publishing()
    return live_session


@pytest.fixture(scope="session")
def web_players() -> Path:
    """hls.js and video.js from npm, installed once into ``tests/e2e/hls/web/node_modules``."""
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
