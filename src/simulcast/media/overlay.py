"""``htmloverlay``: a web page rendered by the node's Chromium, composited over the video.

The page (viewport = the input's picture size, transparent background) is screencast by Chromium
(DevTools ``Page.startScreencast``): Chromium sends a PNG only when the page has painted
something new, at most ``fps`` a second (a frame is acknowledged, which lets the next one come,
only after that period). Each frame is decoded once (OpenCV) into a raw BGRA file, replaced
atomically; the element's ffmpeg worker reads that file as a looping raw image input at ``fps``
(ffmpeg's image demuxer reopens it for every frame: a copy, no PNG decoding) and overlays it on
its upstream video. So a still page costs the browser nothing after its first paint, a new
``url`` or ``visible`` shows within the page's own paint time plus a frame period, and a page
that fails, hangs or crashes only leaves the overlay transparent (the error is in the element's
state) while the video flows on; a page that stops answering is found by a probe every
:data:`_PROBE_S`.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ipaddress
import logging
import os
import shutil
import tempfile
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from simulcast.engine import ElementSpec
from simulcast.media.elements import Element, GraphContext
from simulcast.media.ffmpeg_worker import INPUT
from simulcast.media.overlay_browser import OverlayBrowser
from simulcast.media.processing import FilterElement, encode_tail

if TYPE_CHECKING:
    from playwright.async_api import Page

log = logging.getLogger("simulcast.overlay")

DEFAULT_FPS = 30
"""The page's frame rate when neither ``fps`` nor the input's own rate is known."""

_LOAD_TIMEOUT_MS = 10_000
_PROBE_S = 2.0  # how often a shown page is asked to answer (finds a hung or crashed page)
_PROBE_TIMEOUT_S = 5.0


def decode_png(png: bytes) -> bytes:
    """A PNG's pixels as raw BGRA (what the compositor reads)."""
    import cv2  # an overlay's (not the relay's) dependency
    import numpy as np

    picture = cv2.imdecode(np.frombuffer(png, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    if picture is None or picture.ndim != 3 or picture.shape[2] != 4:
        raise ValueError("the page's frame is not an RGBA PNG")
    return bytes(picture.tobytes())


async def refuse_private(url: str) -> None:
    """Raise ``ValueError`` when ``url``'s host is (or resolves to) a loopback, private,
    link-local or reserved address."""
    host = urlsplit(url).hostname or ""
    try:
        addresses = [ipaddress.ip_address(host)]
    except ValueError:
        infos = await asyncio.get_running_loop().getaddrinfo(host, None)
        addresses = [ipaddress.ip_address(str(i[4][0]).split("%", 1)[0]) for i in infos]
    for ip in addresses:
        if not ip.is_global or ip.is_multicast:
            raise ValueError(
                f"overlay host {host!r} is a private or reserved address ({ip}); set "
                "SIMULCAST_OVERLAYS_ALLOW_PRIVATE=true to allow it"
            )


class HtmlOverlayElement(FilterElement):
    """Renders ``url`` over its input while ``visible``; see the module docstring."""

    def __init__(
        self,
        spec: ElementSpec,
        ctx: GraphContext,
        upstream: Element,
        browser: Callable[[], OverlayBrowser],
    ) -> None:
        super().__init__(spec, ctx, upstream)
        self._browser = browser
        self._live = False
        self._dir = tempfile.mkdtemp(prefix="simulcast-overlay-")
        self._image = os.path.join(self._dir, "overlay.bgra")
        self.page_error: str | None = None
        self._frame_error: str | None = None
        """The error of an unusable frame while no frame had been usable (cleared by one)."""
        self._size: tuple[int, int] | None = None
        self._input_fps: float | None = None
        self._page: Page | None = None
        self._changed = asyncio.Event()
        self._frame: bytes | None = None  # the newest screencast PNG, not yet shown
        self._frame_ready = asyncio.Event()
        self._ack: Callable[[], Awaitable[None]] | None = None
        self._pixels: bytes | None = None  # the page's last frame, decoded
        self._showing = False
        self.frames = 0
        self._tasks = [
            asyncio.create_task(self._render(), name=f"overlay-{spec.id}"),
            asyncio.create_task(self._show_frames(), name=f"overlay-frames-{spec.id}"),
        ]
        self.worker = self._filter_worker(self._args, live_edge=True)

    @property
    def fps(self) -> float:
        """Page frames a second: ``fps``, else the input's frame rate, else :data:`DEFAULT_FPS`."""
        wanted = self.spec.settings.get("fps") or self._input_fps or DEFAULT_FPS
        return min(max(float(str(wanted)), 1.0), 60.0)

    def _args(self) -> list[str]:
        assert self._size is not None
        graph = (
            "[0:v]setpts=PTS-STARTPTS[m];[1:v]setpts=PTS-STARTPTS,format=rgba[o];"
            "[m][o]overlay=0:0:eof_action=pass:format=auto,format=yuv420p[v]"
        )
        return [
            self._ctx.ffmpeg, "-hide_banner", "-nostats", "-loglevel", "error",
            # low_delay: no frame-threaded decoding, whose frames of delay a change would wait
            "-fflags", "+nobuffer", "-flags", "low_delay", "-analyzeduration", "1000000",
            "-f", "flv", "-i", INPUT,
            # Read in real time with no initial burst: a frame is read when it is used.
            "-re", "-readrate_initial_burst", "0",
            "-f", "image2", "-loop", "1", "-framerate", f"{self.fps:g}",
            "-pixel_format", "bgra", "-video_size", f"{self._size[0]}x{self._size[1]}",
            "-c:v", "rawvideo", "-i", self._image,
            "-filter_complex", graph, "-map", "[v]", "-map", "0:a?",
            "-af", "asetpts=PTS-STARTPTS",
            *encode_tail({}),
        ]  # fmt: skip

    def update(self, spec: ElementSpec, destinations: Mapping[str, str]) -> None:
        """A new ``url`` or ``visible``: the renderer picks it up at once; a new ``fps``
        restarts the compositor."""
        fps = self.fps
        super().update(spec, destinations)
        self._changed.set()
        if self.fps != fps and self.worker is not None and self._size is not None:
            self.worker.restart()

    async def _render(self) -> None:
        while (config := self._input_config()) is None:  # noqa: ASYNC110 -- set by the upstream
            await asyncio.sleep(0.2)
        size = self._size = config.width, config.height
        self._input_fps = config.frame_rate
        self._clear()
        assert self.worker is not None
        self.worker.start()
        page: Page | None = None
        loaded: str | None = None
        while True:
            self._changed.clear()
            url = str(self.spec.settings.get("url") or "")
            visible = bool(self.spec.settings.get("visible", True))
            try:
                if page is None or page.is_closed():
                    page, loaded = await self._browser().page(*size), None
                    self._page = page  # closed by close()
                    await self._screencast(page, size)
                if visible and url and url != loaded:
                    loaded = None
                    if not self._ctx.overlays_allow_private:
                        await refuse_private(url)
                    await page.goto(url, timeout=_LOAD_TIMEOUT_MS)
                    loaded, self.page_error = url, None
                self._show(bool(visible and loaded))
                if not self._changed.is_set() and loaded:
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(_PROBE_S):
                            await self._changed.wait()
                    if not self._changed.is_set():
                        async with asyncio.timeout(_PROBE_TIMEOUT_S):
                            await page.evaluate("0")  # a hung or crashed page raises here
                    continue
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the page, not the video, failed
                message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                self.page_error = message or "the page stopped answering"
                log.warning("%s: %s", self.id, self.page_error)
                self._show(False)
                if page is not None:
                    with contextlib.suppress(Exception):
                        await page.close()
                page, loaded = None, None
                await asyncio.sleep(1.0)
                continue
            await self._changed.wait()

    async def _screencast(self, page: Page, size: tuple[int, int]) -> None:
        """Have Chromium push the page's frames (transparent background) as it paints."""
        cdp = await page.context.new_cdp_session(page)
        await cdp.send(
            "Emulation.setDefaultBackgroundColorOverride",
            {"color": {"r": 0, "g": 0, "b": 0, "a": 0}},
        )

        def on_frame(event: dict[str, Any]) -> None:
            session = event["sessionId"]

            async def ack() -> None:
                with contextlib.suppress(Exception):  # the page went away meanwhile
                    await cdp.send("Page.screencastFrameAck", {"sessionId": session})

            self._frame, self._ack = base64.b64decode(event["data"]), ack
            self._frame_ready.set()

        cdp.on("Page.screencastFrame", on_frame)
        await cdp.send(
            "Page.startScreencast",
            {"format": "png", "maxWidth": size[0], "maxHeight": size[1], "everyNthFrame": 1},
        )

    async def _show_frames(self) -> None:
        """Decode each new frame once and show it; acknowledge it (so Chromium may send the
        next) only a frame period later: the page is captured at most ``fps`` times a second."""
        while True:
            await self._frame_ready.wait()
            self._frame_ready.clear()
            png, ack, self._frame, self._ack = self._frame, self._ack, None, None
            if png is None:
                continue
            try:
                self._pixels = await asyncio.to_thread(decode_png, png)
            except (ValueError, ImportError) as exc:
                # Chromium now and then sends a frame without alpha (seen once in a whole
                # suite): it is skipped, the last good frame stays; only a page that never sent
                # a usable frame shows the error.
                log.info("%s: frame skipped: %s", self.id, exc)
                if self.frames == 0:
                    self.page_error = self._frame_error = str(exc)
            else:
                if self._frame_error is not None and self.page_error == self._frame_error:
                    self.page_error = self._frame_error = None
                if self._showing:
                    self._write(self._pixels)
                self.frames += 1
            await asyncio.sleep(1 / self.fps)
            if ack is not None:
                await ack()

    def _show(self, showing: bool) -> None:
        """Show the page's last frame (and those to come), or nothing."""
        if showing != self._showing:
            self._showing = showing
            if showing and self._pixels is not None:
                self._write(self._pixels)
            elif not showing:
                self._clear()

    def _clear(self) -> None:
        assert self._size is not None
        self._write(bytes(self._size[0] * self._size[1] * 4))  # transparent

    def _write(self, pixels: bytes) -> None:
        tmp = self._image + ".tmp"
        with open(tmp, "wb") as f:
            f.write(pixels)
        os.replace(tmp, self._image)  # ffmpeg never reads half a file

    def state(self) -> dict[str, object]:
        """The page, whether it shows, its error, and the compositor's figures."""
        return {
            "live": self.live,
            "url": self.spec.settings.get("url"),
            "visible": bool(self.spec.settings.get("visible", True)),
            "width": self._size[0] if self._size else None,
            "height": self._size[1] if self._size else None,
            "fps": self.fps,
            "pageFrames": self.frames,
            "pageError": self.page_error,
            "processing": self.figures(),
        }

    async def close(self) -> None:
        """Stop rendering and compositing, remove the image."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._page is not None:
            with contextlib.suppress(Exception):  # the browser may be gone already
                await self._page.close()
        await super().close()
        shutil.rmtree(self._dir, ignore_errors=True)
