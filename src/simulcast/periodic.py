"""The one supervision policy of background work: :class:`Periodic` runs a job's pass every
interval (or at once when woken), logs and counts a failing pass and retries it after a growing
backoff, and keeps what ``/healthz`` shows of it (state, last pass, last error).

Every layer's background work runs on it (the control plane's meters and sweeps, the HLS DVR
janitor), and :func:`backoff_delay` is the one backoff of the code base (output reconnects,
webhook retries, failing passes).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal

from simulcast.metrics import BACKGROUND_FAILURES

log = logging.getLogger("simulcast.background")

BACKOFF_MAX_SECONDS = 30.0
"""The longest wait after failing passes of a job that allows it to grow."""

RESCAN_SECONDS = 60.0
"""How often a job that the code creating its work wakes still looks on its own (a safety net)."""

JobState = Literal["idle", "running", "failing", "stopped"]


def rescan_interval(role: str, poll_seconds: float) -> float:
    """The interval of a job whose work is created elsewhere in the code base, which wakes it.

    In one process (role ``all``) every piece of work comes from code that wakes the job, so it
    looks on its own only every :data:`RESCAN_SECONDS`: an idle server runs no query every few
    seconds (such polls were most of an idle server's CPU, issue 18). On a multi-node role work
    queued by another node is seen by polling every ``poll_seconds``.
    """
    return RESCAN_SECONDS if role == "all" else poll_seconds


def backoff_delay(
    attempt: int, minimum: float, maximum: float, rng: Callable[[], float] = random.random
) -> float:
    """Seconds to wait before retry ``attempt`` (1-based).

    The base doubles per attempt from ``minimum`` up to ``maximum``; the delay is drawn from the
    upper half of the base ("equal jitter": spreads retry storms while still growing), then
    clamped to ``[minimum, maximum]``.
    """
    base = min(maximum, minimum * 2.0 ** max(0, attempt - 1))
    return min(maximum, max(minimum, base * (0.5 + 0.5 * rng())))


@dataclass(frozen=True, slots=True)
class JobStatus:
    """What ``/healthz`` shows of one job."""

    name: str
    state: JobState
    last_tick_ms: int | None
    """When the last pass finished (successfully or not); ``None`` before the first."""
    failures: int
    """Failed passes since the start (each logged, counted and retried)."""
    last_error: str | None


Pass = Callable[[], Awaitable[float | None]]
"""One pass of a job; the seconds until the next one (``None``: the job's interval)."""


class Periodic:
    """Runs one named job's pass until :meth:`stop`.

    A pass runs every ``every`` seconds, sooner when :meth:`wake` is called or when the pass
    itself names a shorter delay. A pass that raises is logged and counted
    (``simulcast_background_failures``) and run again after :func:`backoff_delay` from
    ``every`` up to ``backoff_max`` (default: the larger of ``every`` and 30 s; a job whose
    interval must hold, like a lease renewal, passes ``every``). :meth:`stop` lets a pass in
    progress finish: a pass is never cut in the middle of a transaction.
    """

    def __init__(
        self,
        name: str,
        tick: Pass,
        every: float,
        *,
        backoff_max: float | None = None,
    ) -> None:
        self.name = name
        self._tick = tick
        self._every = every
        self._backoff_max = max(every, BACKOFF_MAX_SECONDS) if backoff_max is None else backoff_max
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._state: JobState = "idle"
        self._last_tick_ms: int | None = None
        self._failures = 0
        self._last_error: str | None = None

    @property
    def stopping(self) -> bool:
        """:meth:`stop` was called (a long pass may return early)."""
        return self._stopping.is_set()

    def start(self, *, first_after: float = 0.0) -> None:
        """Start the loop; the first pass runs after ``first_after`` seconds (or a wake)."""
        if self._task is None:
            self._stopping.clear()
            self._task = asyncio.create_task(self._run(first_after), name=self.name)

    def wake(self) -> None:
        """Run the next pass now (or right after the one in progress)."""
        self._wake.set()

    async def stop(self) -> None:
        """Stop after the pass in progress (if any); the job's own teardown is its owner's."""
        self._stopping.set()
        self._wake.set()
        if self._task is not None:
            await self._task
            self._task = None
        self._state = "stopped"

    def status(self) -> JobStatus:
        """The job's state, last pass and failures."""
        return JobStatus(
            self.name, self._state, self._last_tick_ms, self._failures, self._last_error
        )

    async def _run(self, wait: float) -> None:
        consecutive = 0
        while True:
            await self._sleep(wait)
            if self._stopping.is_set():
                return
            self._wake.clear()
            try:
                delay = await self._tick()
            except Exception as exc:
                consecutive += 1
                self._failures += 1
                self._state = "failing"
                self._last_error = f"{type(exc).__name__}: {exc}"
                BACKGROUND_FAILURES.labels(job=self.name).inc()
                wait = backoff_delay(consecutive, self._every, self._backoff_max)
                log.exception(
                    "%s failed (%d in a row); retried in %.1f s", self.name, consecutive, wait
                )
            else:
                consecutive = 0
                self._state = "running"
                wait = self._every if delay is None else delay
            self._last_tick_ms = int(time.time() * 1000)

    async def _sleep(self, seconds: float) -> None:
        if seconds > 0 and not self._wake.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), seconds)
