"""Shared pieces of the headless-Chromium tests: the browser's flags and a static page server on
its own origin (so every request the pages make to Simulcast is cross-origin)."""

from __future__ import annotations

import functools
import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
PAGES = Path(__file__).parent / "pages"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--autoplay-policy=no-user-gesture-required",
]
HAVE_CHROMIUM = Path(CHROMIUM).exists()


def require_chromium() -> ModuleType:
    """Skip the calling test module unless Debian's chromium and Playwright are installed;
    Playwright's sync API."""
    if not HAVE_CHROMIUM:
        pytest.skip(
            "Debian chromium is not installed (.ci/run installs it)", allow_module_level=True
        )
    return pytest.importorskip("playwright.sync_api")


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@contextmanager
def static_site(root: Path) -> Iterator[str]:
    """Serve ``root`` on a free loopback port; yields its base URL."""
    server = ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(root))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
