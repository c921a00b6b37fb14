"""The one home of a node's background work: every long-lived component (meters, sweeps,
dispatchers, the media engine itself) is added here, in start order, by the composition root;
:meth:`Background.start` starts them in that order and :meth:`Background.stop` stops them in
reverse. Each component's periodic jobs run on :class:`~simulcast.periodic.Periodic` (one
supervision policy: log, count, retry with backoff), and :meth:`Background.status` is what
``/healthz`` shows of them.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from simulcast.periodic import JobStatus, Periodic

log = logging.getLogger("simulcast.background")


@dataclass(frozen=True, slots=True)
class Component:
    """One named component: how it starts and stops, and the jobs it runs meanwhile."""

    name: str
    start: Callable[[], Awaitable[None]] | None = None
    stop: Callable[[], Awaitable[None]] | None = None
    jobs: Sequence[Periodic] = field(default_factory=tuple)


class Background:
    """A node's components, started in the order they were added and stopped in reverse."""

    def __init__(self) -> None:
        self._components: list[Component] = []
        self._started: list[Component] = []

    def add(
        self,
        name: str,
        *,
        start: Callable[[], Awaitable[None]] | None = None,
        stop: Callable[[], Awaitable[None]] | None = None,
        jobs: Sequence[Periodic] = (),
    ) -> None:
        """Add a component (before :meth:`start`); ``jobs`` are shown in :meth:`status`."""
        self._components.append(Component(name, start, stop, tuple(jobs)))

    async def start(self) -> None:
        """Start every component in order (a failing start stops those already started)."""
        for component in self._components:
            try:
                if component.start is not None:
                    await component.start()
            except BaseException:
                await self.stop()
                raise
            self._started.append(component)

    async def stop(self) -> None:
        """Stop the started components in reverse order; one failing stop does not keep the
        others running."""
        while self._started:
            component = self._started.pop()
            if component.stop is None:
                continue
            try:
                await component.stop()
            except Exception:
                log.exception("stopping %s failed", component.name)

    def status(self) -> list[JobStatus]:
        """Every job's state and last pass, in start order."""
        return [job.status() for component in self._components for job in component.jobs]
