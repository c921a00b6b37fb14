"""hls.js in headless Chromium keeps playing through a publisher gap (disconnect protection).

A real server and a real ffmpeg publisher; the self-hosted production destination (1 s
segments) is played by hls.js from another origin. The publisher is SIGKILLed (no unpublish)
for ~6 s and restarted: the slate fills the gap as ordinary segments, so ``currentTime`` keeps
advancing the whole time and hls.js reports no fatal error.
"""

from __future__ import annotations

import itertools
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

from tests.support import make_server
from tests.support.browser import ARGS, CHROMIUM, PAGES, require_chromium, static_site
from tests.support.hls import SEGMENT_SECONDS, Live, live_stream

pytestmark = pytest.mark.media

GAP_SECONDS = 6.0

playwright_api = require_chromium()


@pytest.fixture(scope="module")
def protected(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    """Its own server and publish (the test kills the publisher; the shared ``live`` stays)."""
    server = make_server(
        tmp_path_factory.mktemp("hls-protection"), hls_segment_seconds=str(SEGMENT_SECONDS)
    )
    with live_stream(server, "HLS protection", {"mode": "production"}) as state:
        yield state


@pytest.fixture(scope="module")
def site(web_players: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The hls.js page on its own origin (every request to Simulcast is cross-origin)."""
    root = tmp_path_factory.mktemp("protection-site")
    (root / "node_modules").symlink_to(web_players)
    shutil.copy(PAGES / "hlsjs.html", root)
    with static_site(root) as url:
        yield url


def test_hlsjs_keeps_playing_through_a_killed_publisher(protected: Live, site: str) -> None:
    hls_url = str(protected.status(protected.production.pk)["hlsUrl"])
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page()
            page.goto(f"{site}/hlsjs.html?src={quote(hls_url, safe='')}")
            page.wait_for_function(
                "document.getElementById('video').currentTime > 1.5", timeout=15_000
            )

            def now() -> float:
                return float(page.evaluate("document.getElementById('video').currentTime"))

            samples: list[tuple[float, float]] = []  # (wall clock, currentTime)

            def watch(seconds: float) -> None:
                end = time.monotonic() + seconds
                while time.monotonic() < end:
                    samples.append((time.monotonic(), now()))
                    time.sleep(0.2)

            watch(1.0)
            publisher = protected.publisher
            assert publisher is not None and publisher.poll() is None
            publisher.kill()  # SIGKILL: no unpublish, no FIN from a clean close
            publisher.wait(5)
            watch(GAP_SECONDS)
            protected.publisher = protected.publish(30)
            watch(5.0)
            errors = page.evaluate("window.playerErrors")
        finally:
            browser.close()

    advanced = samples[-1][1] - samples[0][1]
    # Longest wall-clock stretch during which currentTime did not move.
    stalled, since = 0.0, samples[0][0]
    for (_, before), (at, after) in itertools.pairwise(samples):
        if after > before:
            since = at
        stalled = max(stalled, at - since)
    print(
        f"\nhls.js through a {GAP_SECONDS:.0f} s gap: advanced {advanced:.1f} s, "
        f"longest stall {stalled:.1f} s"
    )
    assert errors == [], errors
    assert "publisher lost" in protected.server.log(), "the gap was not protected"
    assert advanced >= 8.0, samples
    assert stalled <= 3.0, samples
    assert protected.publisher.poll() is None, "the restarted publisher was refused"
