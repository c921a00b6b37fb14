"""Runs the v1 dialect's instances on this node: the capacity queue, lifecycle and auto-stop.

The queue is the database: ``QUEUED`` rows, first in first out. Whenever a slot may have freed
(a stop, a launch, a cancel), and on a media node of a fleet every few seconds (the API nodes
queue rows), :meth:`InstanceRunner.pump` starts queued instances while this node has fewer than
``instance_slots`` running, with no client call. Every
transition commits (with its webhook) before or after the engine is told, in the order that
never leaves a running instance unrecorded: a start is recorded, then the engine starts; a stop
stops the engine, then settles billing to the second and records it.

On start, instances a crash left ``RUNNING`` on this node are marked ``STOPPED`` with
``server_restart`` at their last accounted second (nothing is re-queued); queued ones stay
queued in order. A graceful shutdown stops running instances the same way, settled to the second.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from simulcast.control.db.models import V1Instance
from simulcast.control.secretbox import SecretBox, SecretBoxError
from simulcast.control.services import instance_billing, instances, ledger
from simulcast.control.services.configurations import ConfigError
from simulcast.control.services.ledger import INSUFFICIENT_FUNDS
from simulcast.control.timeutil import now_ms
from simulcast.engine import InstanceEngine, InstanceInfo
from simulcast.periodic import Periodic, rescan_interval
from simulcast.settings import Settings

log = logging.getLogger("simulcast.instances")

SERVER_RESTART = "server_restart"
NODE_LOST = "node_lost"
IDLE = "idle"
NO_INPUT = "no_input"
RESTART = "restart"
SOURCE_TYPES = ("inputstream", "videoplayer")
_QUEUE_POLL_S = 5.0
"""How often a media node reads the queue without a kick (rows the API nodes queued)."""
_QUIET_TICK_S = 1.0
"""How often running instances are checked for auto-stop."""


class NotRunning(Exception):
    """The instance is not in a state that allows what was asked."""


class Forward(Protocol):
    """Sends an operation on an instance running on another node to that node (the control
    bus): ``op`` is ``stop``, ``restart``, ``apply`` or ``set_outputs``; ``False`` when no node
    runs it or the node did not do it."""

    async def __call__(self, instance_id: str, op: str, args: Mapping[str, object]) -> bool: ...


@dataclass
class _Quiet:
    """Since when an instance has had nothing coming in, and under which condition."""

    reason: str
    since: float


async def close_left_running(
    session: AsyncSession, *, node_id: str, reason: str
) -> Sequence[V1Instance]:
    """Mark ``STOPPED`` (with ``reason``, webhooks queued) the instances a node left running:
    this node after a crash (``server_restart``), or a lost one (``node_lost``, by a survivor).

    Each stops at its last accounted second, so nothing is charged twice or left uncharged.
    A lost node's instances launched with ``restartOnFailure`` are then queued again (same
    input keys, so publishers reconnect to the same URLs on whichever node claims them).
    """
    left = await instances.running_on(session, node_id=node_id)
    for inst in left:
        ended = (inst.run_started_ms or inst.created_ms) + 1000 * (
            inst.seconds - inst.run_base_seconds
        )
        InstanceRunner._mark_stopped(inst, reason, ended)
        await instances.enqueue_stopped(session, instance=inst)
        if reason == NODE_LOST and inst.restart_on_failure:
            instances.requeue(inst)
    return left


def publishing(info: InstanceInfo) -> bool:
    """Whether any source element of a running instance receives media."""
    return any(e.type in SOURCE_TYPES and e.state.get("live") for e in info.elements)


class InstanceRunner:
    """Starts, stops and watches this node's instances; built by the composition root."""

    def __init__(
        self,
        settings: Settings,
        db: async_sessionmaker[AsyncSession],
        engine: InstanceEngine,
        *,
        box: SecretBox,
        node_id: str,
        on_webhook_enqueued: Callable[[], None] = lambda: None,
        clock: Callable[[], float] = time.monotonic,
        forward: Forward | None = None,
    ) -> None:
        """``forward`` (API nodes) reaches instances that run on media nodes."""
        self._settings = settings
        self._forward = forward
        self._db = db
        self.engine = engine
        self.box = box
        self._node = node_id
        self._notify = on_webhook_enqueued
        self._clock = clock
        self._lock = asyncio.Lock()
        """Serializes lifecycle transitions of this node's instances."""
        self._running: set[str] = set()
        self._quiet: dict[str, _Quiet] = {}
        self._kicked = False
        self._next_poll = 0.0
        self._queue_poll = rescan_interval(settings.role, _QUEUE_POLL_S)
        self.job = Periodic("instance-runner", self._pass, _QUIET_TICK_S)

    # -- lifecycle of the runner ---------------------------------------------------------------

    async def start(self) -> None:
        """Close what a crash left running, then start the queue loop."""
        async with self._db.begin() as session:
            left = await close_left_running(session, node_id=self._node, reason=SERVER_RESTART)
        for inst in left:
            log.warning("instance %s was running at a crash: stopped (server_restart)", inst.id)
        if left:
            self._notify()
        self.job.start()

    async def close(self) -> None:
        """Stop the loop and every running instance (``server_restart``, settled)."""
        await self.job.stop()
        for instance_id in list(self._running):
            await self.stop(instance_id, SERVER_RESTART)

    def kick(self) -> None:
        """A slot may have freed or a request arrived: look at the queue now."""
        self._kicked = True
        self.job.wake()

    def running(self) -> Collection[str]:
        """Ids of the instances running on this node (for the meter)."""
        return frozenset(self._running)

    async def _pass(self) -> float:
        # This node's own requests and freed slots kick the runner, which then reads the queue
        # at once; the timed read is for rows another node queued in a shared database (in one
        # process, only a safety net). Reading the queue every second, then every 5 s, was most
        # of an idle server's CPU (bench/relay.py, issue 18).
        loop = asyncio.get_running_loop()
        kicked, self._kicked = self._kicked, False
        if kicked or loop.time() >= self._next_poll:
            self._next_poll = loop.time() + self._queue_poll
            await self.pump()
        if self._running:
            await self.check_quiet()
        return _QUIET_TICK_S if self._running else max(0.0, self._next_poll - loop.time())

    # -- starting ------------------------------------------------------------------------------

    async def pump(self) -> int:
        """Start queued instances, oldest first, while this node has free slots; how many."""
        started = 0
        while not self.job.stopping:
            async with self._lock:
                outcome = await self._start_next()
            if outcome is None:
                return started
            started += outcome
        return started

    async def _start_next(self) -> int | None:
        """Start (or fail) the first queued instance; ``None`` when nothing could be taken."""
        async with self._db.begin() as session:
            running = await session.scalar(
                select(func.count(V1Instance.seq)).where(
                    V1Instance.status == instances.RUNNING, V1Instance.node_id == self._node
                )
            )
            if int(running or 0) >= self._settings.instance_slots:
                return None
            inst = await instances.next_queued(session)
            if inst is None:
                return None
            try:
                spec = await instances.build_spec(
                    session, settings=self._settings, box=self.box, instance=inst
                )
            except ConfigError as exc:
                instances.stop_queued(inst, instances.START_FAILED, f"{exc.field}: {exc}")
                log.warning("instance %s cannot start: %s", inst.id, exc)
                return 0
            except SecretBoxError:
                # A destination sealed under a key this server no longer has: fail this one
                # instance instead of blocking the queue behind it.
                instances.stop_queued(
                    inst,
                    instances.START_FAILED,
                    "a destination's key cannot be opened; save it again",
                )
                log.error(
                    "instance %s: a destination cannot be opened with this server's key", inst.id
                )
                return 0
            price = instance_billing.first_interval_price(self._settings)
            if price and await ledger.balance(session, account_id=inst.account_id) < price:
                instances.stop_queued(
                    inst,
                    INSUFFICIENT_FUNDS,
                    f"Insufficient funds: starting needs {price} sats in the wallet",
                )
                return 0
            now = now_ms()
            inst.status = instances.RUNNING
            inst.node_id = self._node
            inst.started_ms = inst.started_ms or now
            inst.run_started_ms = now
            inst.run_base_seconds = inst.seconds
            inst.stopped_ms = None
            inst.stop_reason = None
            await instances.enqueue_running(session, instance=inst)
        self._notify()
        try:
            await self.engine.start_instance(spec)
        except Exception as exc:
            log.exception("engine could not start instance %s", inst.id)
            self._running.add(inst.id)
            await self._stop_locked(inst.id, instances.START_FAILED, error=str(exc) or repr(exc))
            return 0
        self._running.add(inst.id)
        log.info("instance %s running", inst.id)
        return 1

    # -- stopping ------------------------------------------------------------------------------

    @staticmethod
    def _mark_stopped(inst: V1Instance, reason: str, at_ms: int) -> None:
        inst.status = instances.STOPPED
        inst.stopped_ms = at_ms
        inst.stop_reason = reason
        inst.run_base_seconds = inst.seconds
        inst.run_started_ms = None

    async def stop(self, instance_id: str, reason: str) -> bool:
        """Stop a running instance (settled to the second); ``False`` if not running."""
        if instance_id not in self._running and self._forward is not None:
            return await self._forward(instance_id, "stop", {"reason": reason})
        async with self._lock:
            stopped = await self._stop_locked(instance_id, reason)
        if stopped:
            self.kick()
        return stopped

    async def _stop_locked(self, instance_id: str, reason: str, error: str | None = None) -> bool:
        if instance_id not in self._running:
            return False
        self._running.discard(instance_id)
        self._quiet.pop(instance_id, None)
        try:
            await self.engine.stop_instance(instance_id, reason)
        except Exception:
            log.exception("engine failed to stop instance %s", instance_id)
        async with self._db.begin() as session:
            inst = await instance_billing.locked(session, instance_id)
            if inst is None or inst.status != instances.RUNNING or inst.node_id != self._node:
                return False  # stopped meanwhile, or running elsewhere now (this node was lost)
            now = now_ms()
            await instance_billing.account(
                session, settings=self._settings, instance=inst, until_ms=now, enforce=False
            )
            self._mark_stopped(inst, reason, now)
            inst.error = error
            await instances.enqueue_stopped(session, instance=inst)
        self._notify()
        log.info("instance %s stopped: %s", instance_id, reason)
        return True

    async def cancel(self, instance_id: str) -> bool:
        """Take a queued instance out of the queue; ``False`` if it was not queued."""
        async with self._lock, self._db.begin() as session:
            inst = await instance_billing.locked(session, instance_id)
            if inst is None or inst.status != instances.QUEUED:
                return False
            instances.stop_queued(inst)
        return True

    async def restart(self, instance_id: str) -> None:
        """Stop a running instance and start it again in its slot (same id, keys, overrides).

        Raises :class:`NotRunning` when it does not run here, and
        :class:`~simulcast.control.services.configurations.ConfigError` when its configuration
        no longer holds (it is then stopped, ``start_failed``).
        """
        if instance_id not in self._running and self._forward is not None:
            if not await self._forward(instance_id, "restart", {}):
                raise NotRunning(instance_id)
            return
        async with self._lock:
            if instance_id not in self._running:
                raise NotRunning(instance_id)
            with contextlib.suppress(Exception):
                await self.engine.stop_instance(instance_id, RESTART)
            self._quiet.pop(instance_id, None)
            try:
                async with self._db.begin() as session:
                    inst = await instance_billing.locked(session, instance_id)
                    if inst is None or inst.status != instances.RUNNING:
                        raise NotRunning(instance_id)
                    now = now_ms()
                    await instance_billing.account(
                        session, settings=self._settings, instance=inst, until_ms=now, enforce=False
                    )
                    inst.run_base_seconds = inst.seconds
                    inst.run_started_ms = now
                    spec = await instances.build_spec(
                        session, settings=self._settings, box=self.box, instance=inst
                    )
                await self.engine.start_instance(spec)
            except NotRunning:
                self._running.discard(instance_id)
                raise
            except Exception as exc:
                await self._stop_locked(instance_id, instances.START_FAILED, error=str(exc))
                self.kick()
                raise
        log.info("instance %s restarted", instance_id)

    # -- running instances ---------------------------------------------------------------------

    async def apply(self, instance_id: str) -> bool:
        """Send a running instance's current overrides and outputs to the engine.

        Raises :class:`~simulcast.control.services.configurations.ConfigError` when they do
        not validate (the caller validated them; this guards against a race with a deletion).
        """
        if instance_id not in self._running and self._forward is not None:
            return await self._forward(instance_id, "apply", {})
        async with self._lock:
            if instance_id not in self._running:
                return False
            async with self._db.begin() as session:
                inst = await instance_billing.locked(session, instance_id)
                if inst is None or inst.status != instances.RUNNING:
                    return False
                spec = await instances.build_spec(
                    session, settings=self._settings, box=self.box, instance=inst
                )
            return await self.engine.update_instance(spec)

    async def set_outputs(self, instance_id: str, live: bool, element_id: str | None) -> bool:
        """Turn a running instance's outputs (or one) LIVE or OFFLINE in the engine."""
        if instance_id not in self._running and self._forward is not None:
            return await self._forward(
                instance_id, "set_outputs", {"live": live, "element_id": element_id}
            )
        if instance_id not in self._running:
            return False
        return await self.engine.set_outputs(instance_id, live, element_id)

    async def check_quiet(self) -> list[str]:
        """Stop running instances nothing has fed for too long (V1.md, auto-stop)."""
        now = self._clock()
        due: list[tuple[str, str]] = []
        for instance_id in list(self._running):
            info = self.engine.instance(instance_id)
            if info is None:
                continue
            if not info.outputs_live:
                reason, limit = IDLE, self._settings.instance_idle_stop_seconds
                quiet = not publishing(info)
            else:
                reason, limit = NO_INPUT, self._settings.instance_no_input_stop_seconds
                quiet = not info.inputs_live
            seen = self._quiet.get(instance_id)
            if not quiet:
                self._quiet.pop(instance_id, None)
            elif seen is None or seen.reason != reason:
                self._quiet[instance_id] = _Quiet(reason, now)
            elif now - seen.since >= limit:
                due.append((instance_id, reason))
        for instance_id, reason in due:
            await self.stop(instance_id, reason)
        return [instance_id for instance_id, _ in due]
