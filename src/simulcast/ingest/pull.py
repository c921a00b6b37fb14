"""What every pull shares: a background task that connects, feeds the input and, when the
source drops, connects again with the push backoff, keeping why the last connection ended.

The RTMP and SRT pulls differ only in one connection (:meth:`ReconnectingPull._connect`), in
which errors end the pull for good (a URL that cannot work) and in how a URL is shown in logs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

from simulcast.media.sources import PullTarget
from simulcast.periodic import backoff_delay

log = logging.getLogger("simulcast.pull")


@dataclass(frozen=True, slots=True)
class PullTiming:
    """How long a pull waits to connect, for a silent source, and between attempts."""

    connect_timeout: float
    stall_seconds: float
    retry_min_seconds: float
    retry_max_seconds: float


class ReconnectingPull(ABC):
    """Pulls ``url`` into ``target`` until stopped, connecting again when the source drops."""

    label: ClassVar[str]
    """How logs and the task name call this kind of pull."""
    fatal: ClassVar[tuple[type[Exception], ...]]
    """Errors that no retry can mend: the pull stops with them as its ``last_error``."""
    retried: ClassVar[tuple[type[Exception], ...]] = (OSError, TimeoutError)
    """Errors after which the pull connects again."""

    def __init__(self, url: str, target: PullTarget, timing: PullTiming) -> None:
        self.url = url
        self._target = target
        self._connect_timeout = timing.connect_timeout
        self._stall = timing.stall_seconds
        self._retry = (timing.retry_min_seconds, timing.retry_max_seconds)
        self._task: asyncio.Task[None] | None = None
        self.last_error: str | None = None

    def start(self) -> None:
        """Start pulling in the background."""
        name = f"{self.label.lower().replace(' ', '-')}-{id(self):x}"
        self._task = asyncio.create_task(self._loop(), name=name)

    async def stop(self) -> None:
        """Stop pulling (the input loses this publisher)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    @abstractmethod
    async def _connect(self) -> bool:
        """One connection, until it ends; ``True`` if it got far enough to reset the backoff."""

    @abstractmethod
    def _masked(self) -> str:
        """The URL without its secrets, for logs."""

    def _describe(self, exc: Exception) -> str:
        """``last_error`` for a retried error."""
        return str(exc) or type(exc).__name__

    async def _loop(self) -> None:
        where = f"{self.label} {self._masked()}"
        attempt = 0
        while True:
            try:
                if await self._connect():
                    attempt = 0
                self.last_error = "source ended the stream"
            except self.fatal as exc:
                self.last_error = str(exc)
                log.warning("%s: %s", where, exc)
                return
            except self.retried as exc:
                self.last_error = self._describe(exc)
            attempt += 1
            delay = backoff_delay(attempt, *self._retry)
            log.info("%s: %s; retry in %.1fs", where, self.last_error, delay)
            await asyncio.sleep(delay)
