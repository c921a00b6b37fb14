"""Watches pushes for ``destination.failed``: one report per destination and session.

A push is reported when it has been trying for ``fail_after`` seconds without going live (since
the session started or since it was last live), or at once when the destination refused it
(``OutputStatus.rejected``, e.g. a wrong stream key) or it failed for good. The push itself keeps
retrying; this only decides when to tell the customer. Only state changes arrive as events, so a
push stuck connecting is caught by a timer, not by polling.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from simulcast.engine import OutputStateChanged, OutputStatus


@dataclass(frozen=True, slots=True)
class FailedPush:
    """What a ``destination.failed`` report is about."""

    session_id: str
    stream_id: int
    destination_id: int
    last_error: str | None


Report = Callable[[FailedPush], Coroutine[Any, Any, None]]


class PushFailureWatch:
    """Per (session, destination): a timer while a push is not live, and whether it was reported."""

    def __init__(self, fail_after: float, report: Report) -> None:
        self._fail_after = fail_after
        self._report = report
        self._timers: dict[tuple[str, int], asyncio.TimerHandle] = {}
        self._latest: dict[tuple[str, int], OutputStateChanged] = {}
        self._reported: set[tuple[str, int]] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    def observe(self, event: OutputStateChanged) -> None:
        """Take an output's new state into account (pushes only; other outputs are ignored)."""
        status = event.status
        if status.kind != "rtmp":
            return
        key = (event.session_id, status.destination_id)
        if key in self._reported:
            return
        if status.state in ("live", "stopped"):
            self._cancel(key)
            self._latest.pop(key, None)
            return
        self._latest[key] = event
        if status.rejected or status.state == "failed":
            self._fire(key)
        elif key not in self._timers:
            loop = asyncio.get_running_loop()
            self._timers[key] = loop.call_later(self._fail_after, self._fire, key)

    def forget(self, session_id: str) -> None:
        """A session ended: drop its timers and what was reported for it."""
        for key in [k for k in self._latest if k[0] == session_id]:
            self._cancel(key)
            self._latest.pop(key, None)
        self._reported = {k for k in self._reported if k[0] != session_id}

    async def close(self) -> None:
        """Cancel every timer and wait for reports under way."""
        for key in list(self._timers):
            self._cancel(key)
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def _cancel(self, key: tuple[str, int]) -> None:
        timer = self._timers.pop(key, None)
        if timer is not None:
            timer.cancel()

    def _fire(self, key: tuple[str, int]) -> None:
        self._cancel(key)
        event = self._latest.get(key)
        if event is None or key in self._reported:
            return
        self._reported.add(key)
        status: OutputStatus = event.status
        failed = FailedPush(event.session_id, event.stream_id, key[1], status.last_error)
        task = asyncio.create_task(self._report(failed), name=f"destination-failed-{key[1]}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
