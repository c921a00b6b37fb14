"""Outputs and their supervisor.

An :class:`Output` is one attempt at one sink (connect, send, return or raise when the connection
ends). A :class:`Supervisor` reruns one output instance at a time while the session lives, with
exponential backoff and jitter between attempts, and keeps the visible state and counters that
the control plane sees as :class:`~simulcast.engine.OutputStatus`; each output adds what only it
knows (an HLS playlist's readiness and DVR window) through :meth:`Output.report`, so no output
kind needs a wrapper around the engine. Each attempt reads from a fresh reader, so a reconnect
resumes at a keyframe with the sequence headers.

The sinks themselves (``simulcast.outputs``) implement :class:`Output`; the media engine only
calls the factories it is given.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import deque
from collections.abc import Callable
from typing import Protocol

from simulcast import metrics
from simulcast.engine import OutputSpec, OutputState, OutputStatus
from simulcast.media.reader import Reader
from simulcast.periodic import backoff_delay

log = logging.getLogger("simulcast.outputs")

_BITRATE_WINDOW_S = 5.0
_BITRATE_SAMPLE_S = 0.5


class OutputFailed(Exception):
    """A permanent error (bad URL, unsupported scheme): retrying cannot help."""


class OutputRejected(Exception):
    """The destination answered and refused the stream (e.g. its key). Still retried: the key
    may be fixed on the platform's side, but the status says so (``rejected``)."""


class OutputLink(Protocol):
    """What an output reports to its supervisor while it runs."""

    def connected(self) -> None:
        """The sink accepted the stream (e.g. RTMP ``NetStream.Publish.Start``).

        Call it before reading: the reader is restarted at the stream's current config and GOP
        cache, so the time spent connecting never counts against its bounds.
        """
        ...

    def sent(self, nbytes: int) -> None:
        """``nbytes`` bytes were handed to the transport."""
        ...


class Output(Protocol):
    """One attempt at one sink.

    A sink with nothing to add to its status subclasses this protocol and inherits
    :meth:`report`.
    """

    async def run(self, reader: Reader, link: OutputLink) -> None:
        """Send what ``reader`` yields until the reader closes (return) or the sink fails (raise).

        Raise :class:`OutputFailed` for errors that retrying cannot fix.
        """
        ...

    def report(self, status: OutputStatus) -> OutputStatus:
        """The output's status: ``status`` (state, bytes, bitrate, drops, last error, as the
        supervisor measured them) with the fields only this output knows filled in."""
        return status


OutputFactory = Callable[[OutputSpec], Output]
"""Builds one attempt's output for a spec (called again for every retry)."""

ReaderOpener = Callable[[], Reader]
"""Attaches a fresh, primed reader to the session's stream."""

ReaderCloser = Callable[[Reader], None]
"""Detaches a reader from the session's stream."""


class Supervisor:
    """Runs one output for one session: retries forever, exposes state and counters."""

    def __init__(
        self,
        spec: OutputSpec,
        factory: OutputFactory,
        *,
        open_reader: ReaderOpener,
        close_reader: ReaderCloser,
        retry_min_seconds: float,
        retry_max_seconds: float,
        on_change: Callable[[OutputStatus], None],
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.spec = spec
        self._factory = factory
        self._open_reader = open_reader
        self._close_reader = close_reader
        self._retry_min = retry_min_seconds
        self._retry_max = retry_max_seconds
        self._on_change = on_change
        self._rng = rng
        self._task: asyncio.Task[None] | None = None
        self._output: Output | None = None  # the latest attempt's, which reports its fields
        self._reader: Reader | None = None
        self._state: OutputState = "connecting"
        self._attempt = 0
        self._next_try_at_ms: int | None = None
        self._last_error: str | None = None
        self._rejected = False
        self._bytes_sent = 0
        self._bytes_counted = 0  # of _bytes_sent, what the Prometheus counter has
        self._dropped_before = 0  # drops of readers of previous attempts
        self._reconnects = 0
        self._went_live = False
        self._ever_live = False
        self._samples: deque[tuple[float, int]] = deque()
        self._bytes_metric = metrics.BYTES_OUT.labels(spec.kind)

    @property
    def state(self) -> OutputState:
        """The current state."""
        return self._state

    def status(self) -> OutputStatus:
        """A snapshot of state and counters, as the output reports them."""
        status = OutputStatus(
            destination_id=self.spec.destination_id,
            kind=self.spec.kind,
            state=self._state,
            attempt=self._attempt,
            next_try_at_ms=self._next_try_at_ms,
            last_error=self._last_error,
            bytes_sent=self._bytes_sent,
            bitrate_kbps=round(self._bitrate_kbps(), 1),
            dropped_frames=self._dropped_frames(),
            reconnects=self._reconnects,
            rejected=self._rejected,
        )
        return self._output.report(status) if self._output is not None else status

    def start(self) -> None:
        """Start the retry loop as a task."""
        if self._task is None:
            self._task = asyncio.create_task(
                self._loop(), name=f"output-{self.spec.kind}-{self.spec.destination_id}"
            )

    async def stop(self, grace: float = 0.0) -> None:
        """End the output and report ``stopped``.

        With ``grace`` > 0 the running attempt first gets that many seconds to send what its
        reader still holds (the stream was closed, so the attempt ends on its own), which lets
        destinations receive the tail of a stream that ended normally; then it is cancelled.
        """
        if self._task is not None:
            if grace > 0 and self._state == "live":
                await asyncio.wait({self._task}, timeout=grace)
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._release_reader()
        if self._state != "stopped":
            self._set_state("stopped")

    # -- OutputLink --------------------------------------------------------------------------

    def connected(self) -> None:
        """Called by the output when the sink accepted the stream."""
        if self._went_live:
            return
        self._went_live = True
        if self._ever_live:
            self._reconnects += 1
            metrics.RECONNECTS.labels(self.spec.kind).inc()
        self._ever_live = True
        self._attempt = 0
        self._last_error = None  # live again: the last failure is history
        self._next_try_at_ms = None
        self._rejected = False
        if self._reader is not None:
            self._reader.resync()
        self._set_state("live")

    def sent(self, nbytes: int) -> None:
        """Called by the output for every write."""
        self._bytes_sent += nbytes
        now = time.monotonic()
        if not self._samples or now - self._samples[-1][0] >= _BITRATE_SAMPLE_S:
            self._samples.append((now, self._bytes_sent))
            self._prune_samples(now)
            self._count_bytes()

    def _count_bytes(self) -> None:
        # The Prometheus counter (a lock per increment) moves with the bitrate samples and on
        # every state change, not on every write of every destination.
        self._bytes_metric.inc(self._bytes_sent - self._bytes_counted)
        self._bytes_counted = self._bytes_sent

    # -- internals ---------------------------------------------------------------------------

    async def _loop(self) -> None:
        while True:
            self._went_live = False
            self._set_state("connecting")
            reader = self._reader = self._open_reader()
            if reader.closed:  # the stream ended while we were waiting to retry
                self._release_reader()
                return
            try:
                self._output = self._factory(self.spec)
                await self._output.run(reader, self)
                error = "connection closed"
                self._rejected = False
                if reader.closed:
                    return  # the stream ended: nothing to retry
            except OutputFailed as exc:
                self._last_error = str(exc) or type(exc).__name__
                log.warning("output %s failed: %s", self.spec.destination_id, self._last_error)
                self._release_reader()
                self._set_state("failed")
                return
            except Exception as exc:
                error = str(exc) or type(exc).__name__
                self._rejected = isinstance(exc, OutputRejected)
            finally:
                self._release_reader()
            self._last_error = error
            self._attempt += 1
            delay = backoff_delay(self._attempt, self._retry_min, self._retry_max, self._rng)
            self._next_try_at_ms = int((time.time() + delay) * 1000)
            log.info(
                "output %s: %s; retry %d in %.1fs",
                self.spec.destination_id,
                error,
                self._attempt,
                delay,
            )
            self._set_state("retrying")
            await asyncio.sleep(delay)

    def _release_reader(self) -> None:
        if self._reader is not None:
            self._dropped_before += self._reader.dropped_frames
            metrics.DROPPED_FRAMES.labels(self.spec.kind).inc(self._reader.dropped_frames)
            self._close_reader(self._reader)
            self._reader = None

    def _dropped_frames(self) -> int:
        current = self._reader.dropped_frames if self._reader is not None else 0
        return self._dropped_before + current

    def _bitrate_kbps(self) -> float:
        if self._state != "live" or not self._samples:
            return 0.0
        now = time.monotonic()
        self._prune_samples(now)
        start_t, start_bytes = self._samples[0]
        # At least a second, so the first few writes of a connection don't read as a spike.
        elapsed = max(now - start_t, 1.0)
        return (self._bytes_sent - start_bytes) * 8 / elapsed / 1000

    def _prune_samples(self, now: float) -> None:
        # Keep exactly one sample at or before the window start, so the window is always full.
        while len(self._samples) > 1 and now - self._samples[1][0] >= _BITRATE_WINDOW_S:
            self._samples.popleft()

    def _set_state(self, state: OutputState) -> None:
        self._count_bytes()
        self._state = state
        if state != "live":
            self._samples.clear()
        self._on_change(self.status())
