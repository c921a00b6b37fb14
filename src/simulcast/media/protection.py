"""Disconnect protection of one session: the slate player and the grace timer.

When the publisher is lost, :meth:`Protection.begin` starts two tasks: one plays the slate
into the session (paced by the wall clock, a little ahead of it, timestamps continuing the
session's) and one ends the session when the grace period runs out. :meth:`Protection.end`
(the publisher, or another device, took over) cancels both. The slate for the session's
parameters is encoded in the background as soon as they are known (:meth:`learned`); a
publisher lost before then gets its slate as soon as the encode finishes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

from simulcast.media.slate import SlateParams
from simulcast.media.slate_encoder import SlateEncoder
from simulcast.media.switcher import Switcher

log = logging.getLogger("simulcast.protection")

_LEAD_S = 0.15  # the slate runs this far ahead of the wall clock, absorbing scheduling jitter


class Protection:
    """The protected state of one session (inactive until :meth:`begin`)."""

    def __init__(
        self,
        switcher: Switcher,
        slates: SlateEncoder,
        grace_seconds: float,
        on_timeout: Callable[[], Awaitable[None]],
    ) -> None:
        self._switcher = switcher
        self._slates = slates
        self.grace_seconds = grace_seconds
        self._on_timeout = on_timeout
        self._params: SlateParams | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.since: float | None = None
        """Wall clock (unix seconds) when the publisher was lost; ``None`` when not protecting."""

    @property
    def enabled(self) -> bool:
        """Whether the session is protected at all."""
        return self.grace_seconds > 0

    @property
    def active(self) -> bool:
        """Whether the session is waiting for its publisher right now."""
        return self.since is not None

    @property
    def ends_at_ms(self) -> int | None:
        """When the grace period ends (unix ms), while protecting."""
        if self.since is None:
            return None
        return int((self.since + self.grace_seconds) * 1000)

    def learned(self, params: SlateParams) -> None:
        """The live parameters are known: encode their slate in the background."""
        self._params = params
        if self.enabled:
            self._slates.prepare(params)

    def begin(self) -> None:
        """The publisher is lost: play the slate and start the grace timer."""
        if self.since is not None:
            return
        self.since = time.time()
        self._tasks = [
            asyncio.create_task(self._play(), name="slate"),
            asyncio.create_task(self._expire(), name="protection-grace"),
        ]

    async def end(self) -> float:
        """Stop protecting (resumed or session over); the seconds the slate was on."""
        since, self.since = self.since, None
        tasks, self._tasks = self._tasks, []
        current = asyncio.current_task()
        for task in tasks:
            if task is not current:
                task.cancel()
        for task in tasks:
            if task is not current:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        return time.time() - since if since is not None else 0.0

    async def _expire(self) -> None:
        await asyncio.sleep(self.grace_seconds)
        await self._on_timeout()

    async def _play(self) -> None:
        if self._params is None:
            log.warning("stream %s: no slate (stream parameters unknown)", self._stream_id)
            return
        slate = await self._slates.get(self._params)
        if slate is None:
            return
        loop = asyncio.get_running_loop()
        base = self._switcher.next_timestamp()
        stream = self._switcher.stream
        for unit in slate.headers(base):
            self._switcher.publish_slate(unit)
        start = loop.time()
        try:
            for unit in slate.units(base):
                delay = start + (unit.timestamp - base) / 1000 - _LEAD_S - loop.time()
                if delay > 0:
                    stream.flush()  # what is due now goes out before we wait
                    await asyncio.sleep(delay)
                self._switcher.publish_slate(unit)
        finally:
            stream.flush()

    @property
    def _stream_id(self) -> int:
        return self._switcher.stream.stream_id
