"""The node's one headless Chromium (Debian ``chromium``, driven by Playwright) for overlays.

Pages are opened on demand, one per ``htmloverlay`` element. A browser that crashes or cannot
start is started again on the next request, no sooner than a backoff (1 s doubling to 30 s)
after the last failure, so a broken install costs one attempt per backoff, not a loop.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from playwright.async_api import Browser, Page, Playwright

log = logging.getLogger("simulcast.overlay")

CHROMIUM = "/usr/bin/chromium"
ARGS = ("--no-sandbox", "--disable-gpu", "--disable-background-networking")
_BACKOFF_MIN_S = 1.0
_BACKOFF_MAX_S = 30.0


class OverlayBrowser:
    """Starts Chromium lazily; :meth:`page` opens a page with a transparent background."""

    def __init__(self, executable: str = CHROMIUM) -> None:
        self._executable = executable
        self._playwright: Playwright | None = None
        self._browser: Browser | None = None
        self._lock = asyncio.Lock()
        self._retry_at = 0.0
        self._backoff = _BACKOFF_MIN_S
        self.restarts = 0

    async def page(self, width: int, height: int) -> Page:
        """A new page of ``width`` x ``height`` CSS pixels; raises when no browser can run."""
        browser = await self._ensure()
        page = await browser.new_page(viewport={"width": width, "height": height})
        return page

    async def _ensure(self) -> Browser:
        async with self._lock:
            if self._browser is not None and self._browser.is_connected():
                return self._browser
            wait = self._retry_at - time.monotonic()
            if wait > 0:
                raise RuntimeError(f"browser restarting in {wait:.0f} s")
            from playwright.async_api import async_playwright

            try:
                if self._playwright is None:
                    self._playwright = await async_playwright().start()
                self._browser = await self._playwright.chromium.launch(
                    executable_path=self._executable, args=list(ARGS), headless=True
                )
            except Exception:
                self._retry_at = time.monotonic() + self._backoff
                self._backoff = min(self._backoff * 2, _BACKOFF_MAX_S)
                raise
            self.restarts += 1
            self._backoff = _BACKOFF_MIN_S
            log.info("overlay browser started (%s)", self._executable)
            return self._browser

    async def close(self) -> None:
        """Close the browser and Playwright."""
        browser, self._browser = self._browser, None
        playwright, self._playwright = self._playwright, None
        if browser is not None:
            try:
                await browser.close()
            except Exception:  # already gone
                log.debug("browser close failed", exc_info=True)
        if playwright is not None:
            await playwright.stop()
