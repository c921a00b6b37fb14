"""Real players in headless Chromium, from another origin: hls.js and the seed's video.js page.

hls.js and video.js come from npm (``tests/e2e/hls/web``); pages are served by a small static server
on another port, so every request to Simulcast is cross-origin (CORS exercised).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

from tests.support.browser import ARGS, CHROMIUM, PAGES, require_chromium, static_site
from tests.support.hls import Live

pytestmark = pytest.mark.media

playwright_api = require_chromium()


@pytest.fixture(scope="module")
def site(
    live_session: Live, web_players: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """The test pages on their own origin; the seed page gets only its base URL and key set."""
    root = tmp_path_factory.mktemp("site")
    (root / "node_modules").symlink_to(web_players)
    shutil.copy(PAGES / "hlsjs.html", root)
    seed = (PAGES / "seed.html").read_text()
    base, key = live_session.base, live_session.production.pk
    seed = seed.replace("__BASE_URL__", base).replace("__API_KEY__", key)
    (root / "seed.html").write_text(seed)
    with static_site(root) as url:
        yield url


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    with playwright_api.sync_playwright() as p:
        instance = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield instance
        finally:
            instance.close()


def test_hlsjs_plays_live_and_seeks_back_in_dvr(live: Live, site: str, browser: object) -> None:
    hls_url = str(live.status(live.production.pk)["hlsUrl"])
    page = browser.new_page()  # type: ignore[attr-defined]
    page.goto(f"{site}/hlsjs.html?src={quote(hls_url, safe='')}")
    page.wait_for_function("document.getElementById('video').currentTime > 0.5", timeout=15_000)
    start = page.evaluate("document.getElementById('video').currentTime")
    page.wait_for_function(
        f"document.getElementById('video').currentTime >= {start + 5}", timeout=15_000
    )
    assert page.evaluate("window.playerErrors") == []

    # Seek back to the oldest part of the DVR window and check that it plays from there.
    target = page.evaluate(
        """() => { const v = document.getElementById('video');
                   const t = v.seekable.start(0) + 1; v.currentTime = t; return t; }"""
    )
    live_edge = page.evaluate("document.getElementById('video').seekable.end(0)")
    assert live_edge - target >= 4, (target, live_edge)
    page.wait_for_function(
        f"""() => {{ const v = document.getElementById('video');
                     return !v.seeking && v.currentTime >= {target + 2}
                            && v.currentTime < {live_edge - 1}; }}""",
        timeout=15_000,
    )
    assert page.evaluate("window.playerErrors") == []
    page.close()


def test_seed_example_page_plays_with_video_js(live: Live, site: str, browser: object) -> None:
    page = browser.new_page()  # type: ignore[attr-defined]
    page.goto(f"{site}/seed.html")
    page.wait_for_function(
        "document.getElementById('status').textContent.includes('LIVE')", timeout=10_000
    )
    page.wait_for_function(
        "document.getElementById('cost').textContent.includes('Current cost')", timeout=10_000
    )
    # A viewer presses play (the seed's page does not autoplay).
    page.wait_for_selector(".vjs-big-play-button", state="visible", timeout=10_000)
    page.click(".vjs-big-play-button")
    page.wait_for_function(
        "document.querySelector('#video video, video#video_html5_api').currentTime > 1.5",
        timeout=15_000,
    )
    assert "LIVE: HLS e2e" in page.text_content("#status")
    page.close()
