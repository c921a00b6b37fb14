"""The node's minute meter: a background job (:class:`~simulcast.periodic.Periodic`) that meters
this node's live sessions and running v1 instances as their minutes and seconds complete, and
stops what may not go on (:mod:`~simulcast.control.services.meter` charges,
:mod:`~simulcast.control.services.limits` decides).

With a :class:`Funding` (Lightning auto top-up), every metered account (of a session or a v1
instance) is kept funded in the background, and a session or instance about to stop for want of
funds first waits for that top-up.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Collection, Mapping
from typing import Protocol, TypeVar

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from simulcast.control.db.models import LiveSession
from simulcast.control.services import instance_billing
from simulcast.control.services.ledger import INSUFFICIENT_FUNDS
from simulcast.control.services.meter import MeterResult, charge_closed_hours, meter_session
from simulcast.engine import SessionInfo
from simulcast.periodic import Periodic
from simulcast.settings import Settings

log = logging.getLogger("simulcast.meter")

RECHECK_MAX_SECONDS = 5.0
"""The longest a session whose minute in progress costs sats goes unchecked (a lowered
``max_sats``, a drained wallet), and the longest wait after a failing pass."""


class Funding(Protocol):
    """Keeps live accounts funded (Lightning auto top-up); the meter asks, never waits on it
    except to rescue a session it would otherwise stop for want of funds."""

    def keep_funded(self, account_id: int) -> None:
        """Start a top-up in the background if the account's balance is low."""
        ...

    async def rescue(self, account_id: int) -> bool:
        """Top the account up now; whether its balance grew."""
        ...


class Metered(Protocol):
    """What metering a session or an instance decided, for the account it charged."""

    @property
    def account_id(self) -> int: ...

    @property
    def stop_reason(self) -> str | None: ...


MeteredT = TypeVar("MeteredT", bound=Metered)


class MeteredEngine(Protocol):
    """The part of :class:`simulcast.engine.Engine` the meter uses."""

    def sessions(self) -> Mapping[int, SessionInfo]:
        """Live sessions on this node, by stream id."""
        ...

    async def stop(self, stream_id: int, reason: str) -> bool:
        """End a stream's live session."""
        ...


class MeteredInstances(Protocol):
    """The part of the instance runner the meter uses (v1 dialect instances, per second)."""

    def running(self) -> Collection[str]:
        """Ids of the instances running on this node."""
        ...

    async def stop(self, instance_id: str, reason: str) -> bool:
        """Stop an instance (its final seconds are settled by the stop)."""
        ...


class _NotRunning(Exception):
    """An instance the runner still lists is no longer RUNNING in the database: not charged."""


class MinuteMeter:
    """Runs the meter for this node: started and stopped by the composition root.

    Ticks are much shorter than a billing minute (at most 1 s), so a minute is charged, and a
    stop decided at its boundary lands, within a tick of that boundary. Between boundaries a
    session whose minute in progress costs sats is re-checked every ``recheck_seconds`` (at
    most 5 s): the look-ahead that stops it when ``max_sats`` was lowered or the wallet drained
    by another session. A session whose minute is free has nothing such a recheck could find,
    so it is looked at again at its boundary, or at once when its set of destinations changes
    (a paid one may have joined); a ``max_duration_minutes`` lowered mid-minute applies at the
    boundary. A tick with nothing due costs no query at all: metering every session every
    second, then every 5 s, was a fifth, then a tenth, of a relay's CPU with many streams
    (bench/relay.py). Closed bandwidth hours are charged every
    ``bandwidth_every_seconds``. Running v1 instances (``instances``) are charged per second
    every ``instance_billing_seconds`` (:mod:`~simulcast.control.services.instance_billing`).
    """

    def __init__(
        self,
        settings: Settings,
        sessionmaker: async_sessionmaker[AsyncSession],
        engine: MeteredEngine,
        *,
        node_id: str,
        clock: Callable[[], float] = time.time,
        tick_seconds: float | None = None,
        recheck_seconds: float | None = None,
        bandwidth_every_seconds: float = 60.0,
        funding: Funding | None = None,
        instances: MeteredInstances | None = None,
    ) -> None:
        self._settings = settings
        self._db = sessionmaker
        self._engine = engine
        self._node_id = node_id
        self._clock = clock
        self._tick = tick_seconds or min(1.0, settings.billing_minute_seconds / 10)
        recheck = recheck_seconds or min(RECHECK_MAX_SECONDS, settings.billing_minute_seconds / 10)
        self._recheck_ms = int(recheck * 1000)
        self._bandwidth_every_ms = int(bandwidth_every_seconds * 1000)
        self._next_bandwidth_ms = 0
        self._due_ms: dict[str, int] = {}
        """Per live session id: when it must be metered next (absent: at once)."""
        self._destinations: dict[str, frozenset[int]] = {}
        """Per live session id: the destinations it had at the last tick."""
        self._instances = instances
        self._instance_every_ms = int(settings.instance_billing_seconds * 1000)
        self._instance_due_ms: dict[str, int] = {}
        """Per running instance id: when it must be charged next (absent: at once)."""
        self._funding = funding
        # A failing pass (the database unreachable: PostgreSQL restarting) is retried within
        # the longest recheck, not after the default backoff's 30 s: once the database is back,
        # a session that cannot pay its minute in progress must stop about when it would have.
        self.job = Periodic(
            "billing-meter", self._pass, self._tick, backoff_max=RECHECK_MAX_SECONDS
        )

    async def start(self) -> None:
        """Tick until :meth:`stop`; a failing tick is logged and retried."""
        self.job.start()

    async def stop(self) -> None:
        """Stop after the tick in progress."""
        await self.job.stop()

    async def _pass(self) -> None:
        await self.tick()

    async def tick(self) -> list[MeterResult]:
        """Meter this node's live sessions that are due (each in its own transaction)."""
        now = int(self._clock() * 1000)
        sessions = self._engine.sessions().values()
        live = {info.session_id: frozenset(info.outputs) for info in sessions}
        changed = {sid for sid, dests in live.items() if self._destinations.get(sid) != dests}
        self._destinations = live
        self._due_ms = {
            sid: due for sid, due in self._due_ms.items() if sid in live and sid not in changed
        }
        due = [sid for sid in live if self._due_ms.get(sid, 0) <= now]
        results = await self._meter_sessions(due, now) if due else []
        if self._instances is not None:
            await self._meter_instances(self._instances, now)
        if now >= self._next_bandwidth_ms:
            self._next_bandwidth_ms = now + self._bandwidth_every_ms
            async with self._db.begin() as session:
                await charge_closed_hours(session, settings=self._settings, now_ms=now)
        return results

    async def _meter_sessions(self, session_ids: list[str], now: int) -> list[MeterResult]:
        async with self._db.begin() as session:
            rows = (
                await session.execute(
                    select(LiveSession.id, LiveSession.session_id)
                    .where(LiveSession.ended_ms.is_(None), LiveSession.node_id == self._node_id)
                    .where(LiveSession.session_id.in_(session_ids))
                )
            ).all()
        results: list[MeterResult] = []
        for pk, session_id in rows:
            try:
                result = await self._funded(self._meter_one(pk, now))
            except Exception:
                log.exception("metering session %s failed; retried next tick", pk)
                continue
            results.append(result)
            if result.stop_reason is not None:
                # Not marked done: re-taken (and the stop re-sent) every tick while still live.
                log.info("stopping stream %s: %s", result.stream_id, result.stop_reason)
                await self._engine.stop(result.stream_id, result.stop_reason)
            else:
                due = result.next_minute_ends_ms
                if result.next_minute_sats:
                    due = min(due, now + self._recheck_ms)
                self._due_ms[session_id] = due
        return results

    def _meter_one(self, pk: int, now: int) -> Callable[[], Awaitable[MeterResult]]:
        """Metering one session, in its own transaction (to run, and run again, by
        :meth:`_funded`)."""

        async def meter() -> MeterResult:
            async with self._db.begin() as session:
                return await meter_session(
                    session, settings=self._settings, session_pk=pk, now_ms=now
                )

        return meter

    async def _funded(self, meter: Callable[[], Awaitable[MeteredT]]) -> MeteredT:
        """Meter a session or an instance; with funding, before stopping it for want of funds
        let an automatic top-up land and meter again, then keep its account topped up."""
        result = await meter()
        if self._funding is None:
            return result
        if result.stop_reason == INSUFFICIENT_FUNDS and await self._funding.rescue(
            result.account_id
        ):
            result = await meter()
        self._funding.keep_funded(result.account_id)
        return result

    def _meter_instance(
        self, instance_id: str, now: int
    ) -> Callable[[], Awaitable[instance_billing.InstanceCharge]]:
        """Charging one running instance, in its own transaction (to run, and run again, by
        :meth:`_funded`); :class:`_NotRunning` when the runner's view is ahead of its row."""

        async def meter() -> instance_billing.InstanceCharge:
            async with self._db.begin() as session:
                row = await instance_billing.locked(session, instance_id)
                if row is None or row.status != "RUNNING" or row.node_id != self._node_id:
                    raise _NotRunning(instance_id)  # or running elsewhere: not this meter's
                return await instance_billing.account(
                    session, settings=self._settings, instance=row, until_ms=now, enforce=True
                )

        return meter

    async def _meter_instances(
        self, runner: MeteredInstances, now: int
    ) -> list[instance_billing.InstanceCharge]:
        """Charge running instances that are due, each in its own transaction; stop those
        whose wallet cannot pay (the decision commits before the stop)."""
        running = set(runner.running())
        self._instance_due_ms = {i: due for i, due in self._instance_due_ms.items() if i in running}
        results = []
        for instance_id in sorted(running):
            if self._instance_due_ms.get(instance_id, 0) > now:
                continue
            try:
                result = await self._funded(self._meter_instance(instance_id, now))
            except _NotRunning:
                continue
            except Exception:
                log.exception("metering instance %s failed; retried next tick", instance_id)
                continue
            results.append(result)
            if result.stop_reason is not None:
                log.info("stopping instance %s: %s", instance_id, result.stop_reason)
                await runner.stop(instance_id, result.stop_reason)
            else:
                self._instance_due_ms[instance_id] = now + self._instance_every_ms
        return results
