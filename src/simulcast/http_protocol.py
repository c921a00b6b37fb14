"""The HTTP server: uvicorn's, with a JSON body on its own 400s and a main loop that ticks
once a second.

uvicorn answers a request it cannot parse (a bad request line or header, conflicting
Content-Length and Transfer-Encoding, bytes that are not ASCII) with a ``text/plain`` 400 before
the app ever sees it. API clients get the API's error shape there too: ``{"error": "..."}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from types import FrameType

import uvicorn

try:  # the parser uvicorn's "auto" picks: httptools when installed, else h11
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as _Base
except ImportError:  # pragma: no cover - httptools is a dependency of uvicorn[standard]
    from uvicorn.protocols.http.h11_impl import H11Protocol as _Base  # type: ignore[assignment]


class JsonErrorHttpProtocol(_Base):
    """uvicorn's HTTP protocol with a JSON body on its own 400 answers."""

    def send_400_response(self, msg: str) -> None:
        """Answer a request that could not be parsed, then close."""
        body = json.dumps({"error": msg}).encode()
        head = (
            b"HTTP/1.1 400 Bad Request\r\n"
            b"content-type: application/json\r\n"
            b"content-length: %d\r\n"
            b"connection: close\r\n\r\n" % len(body)
        )
        self.transport.write(head + body)
        self.transport.close()


class Server(uvicorn.Server):
    """uvicorn's server whose main loop wakes once a second instead of ten times.

    The loop only refreshes the ``Date`` header (one-second resolution) and looks for a
    requested exit; ten wake-ups a second were a visible share of an idle server's CPU
    (issue 18). A signal wakes it at once, so shutting down is no slower.
    """

    _TICK_SECONDS = 1.0

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self._wake: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def main_loop(self) -> None:
        """Tick every second until asked to exit (uvicorn's loop, at a tenth of its pace)."""
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        # on_tick refreshes the headers when its counter is a multiple of 10 (once a second at
        # uvicorn's pace): every tick here is a second apart.
        counter = 0
        should_exit = await self.on_tick(counter)
        while not should_exit:
            counter = (counter + 10) % 864000
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._TICK_SECONDS)
            should_exit = await self.on_tick(counter)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        """Record the signal as uvicorn does, then wake the main loop to act on it now."""
        super().handle_exit(sig, frame)
        if self._loop is not None and self._wake is not None:
            self._loop.call_soon_threadsafe(self._wake.set)
