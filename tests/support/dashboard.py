"""Browser helpers for the dashboard tests (Playwright on Debian's Chromium): page checks with
axe, console-error watching, screenshots and an ffmpeg publisher."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import imageio_ffmpeg

from tests.support import REPO, ServerProcess, make_server
from tests.support.background import BackgroundLoop
from tests.support.browser import ARGS, CHROMIUM
from tests.support.rtmp_sink import RtmpSink

WAIT = 30_000  # ms: generous, the machine is shared

USER, PASSWORD = "streamer", "a long passphrase"  # the dashboard account of the browser tests


def watch(page: Any, errors: list[str], name: str) -> Any:
    """Collect the page's console errors; say yes to its confirmation dialogs."""
    page.on("console", lambda m: m.type == "error" and errors.append(f"{name}: {m.text}"))
    page.on("pageerror", lambda e: errors.append(f"{name}: {e}"))
    page.on("dialog", lambda dialog: dialog.accept())
    return page


@contextmanager
def dashboard(data_dir: Path, **settings: str) -> Iterator[tuple[ServerProcess, Any, RtmpSink]]:
    """A module's visit: a running server (``settings``) with the dashboard account, Debian's
    Chromium with a fresh 1100x800 context, and an in-test RTMP sink served by a background
    loop. Yields ``(server, context, sink)``; all closed after."""
    from playwright.sync_api import sync_playwright

    server = make_server(data_dir, **settings)
    server.start()
    try:
        server.create_account(USER, PASSWORD, sats=100_000)
        with BackgroundLoop() as loop, sync_playwright() as p:
            sink = RtmpSink()
            loop.run(sink.start())
            browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            try:
                yield server, browser.new_context(viewport={"width": 1100, "height": 800}), sink
            finally:
                browser.close()
                loop.run(sink.close())
    finally:
        server.stop()


def stop(publisher: subprocess.Popen[bytes] | None) -> None:
    """Stop a publisher that may still run."""
    if publisher is not None and publisher.poll() is None:
        publisher.terminate()
        publisher.wait(10)


def sign_in(page: Any, password: str = PASSWORD) -> None:
    """Submit the sign-in form of the page shown (the dashboard account, ``password``)."""
    page.fill("input[name=username]", USER)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")


def check_page(page: Any, shot: str) -> None:
    """axe-core finds no serious or critical violation; then a screenshot."""
    page.evaluate(AXE)
    result = page.evaluate(
        "async () => (await axe.run(document, {resultTypes: ['violations']})).violations"
        ".filter(v => ['serious', 'critical'].includes(v.impact))"
        ".map(v => ({id: v.id, nodes: v.nodes.map(n => n.target.join(' ')).slice(0, 3)}))"
    )
    assert result == [], json.dumps(result, indent=1)
    screenshot(page, shot, full_page=True)


def screenshot(page: Any, shot: str, full_page: bool = False) -> None:
    """Save a screenshot of the page into :data:`SHOTS`."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / shot), full_page=full_page)


def publish(url: str, seconds: int) -> subprocess.Popen[bytes]:
    """ffmpeg publishing test video and a tone in real time to an RTMP ``url``."""
    return subprocess.Popen(
        [
            imageio_ffmpeg.get_ffmpeg_exe(), "-loglevel", "error", "-re",
            "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=30",
            "-f", "lavfi", "-i", "sine", "-t", str(seconds),
            "-pix_fmt", "yuv420p", "-c:v", "libx264", "-preset", "ultrafast", "-g", "30",
            "-c:a", "aac", "-f", "flv", url,
        ],
        stdin=subprocess.DEVNULL,
    )  # fmt: skip


# A test run leaves the checkout as it found it: screenshots go to a scratch folder unless
# SIMULCAST_TEST_SCREENSHOTS names another, e.g. docs/screenshots to refresh the README's.
SHOTS = Path(
    os.environ.get("SIMULCAST_TEST_SCREENSHOTS")
    or Path(tempfile.gettempdir()) / "simulcast-screenshots"
)


AXE = (REPO / "tests" / "web" / "vendor" / "axe.min.js").read_text()
