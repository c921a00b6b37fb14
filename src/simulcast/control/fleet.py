"""The fleet of media nodes: each one's heartbeat lease, and the sweep that buries lost ones.

A media node upserts its ``nodes`` row every third of the lease (``node_lease_seconds``), which
pushes ``lease_expires_ms`` ahead. Any API node sweeps: a row whose lease has run out is locked
(``FOR UPDATE SKIP LOCKED``, so one sweeper wins), marked lost, and in the same transaction its
open sessions are closed at their last metered minute and its running instances stopped at their
last accounted second, both with reason ``node_lost`` and their webhooks queued. Exactly once:
the sessions and instances are selected by ``ended``/``RUNNING`` under the same lock.

Fencing: what a media node publishes must be what the database says it owns, or a platform
gets the same stream twice. Three checks, each stopping what the node no longer owns:

- a node that could not renew its lease for a whole lease (cut off from PostgreSQL, or frozen
  and thawed: ``SIGSTOP``/``SIGCONT``, a VM paused) stops everything at once, on its own clock,
  before asking the database anything: by then a survivor may have buried it;
- a node that was declared lost while it was only cut off learns it from its next heartbeat and
  stops everything (its sessions were closed ``node_lost``, its instances re-queued);
- at every heartbeat, the node's live sessions and running instances are checked against their
  rows: one whose row was closed, or moved to another node (a stream shift whose hand-over
  command did not arrive, an instance claimed again elsewhere), is stopped.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field

from sqlalchemy import ColumnElement, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import InstrumentedAttribute

from simulcast.control.db.models import LiveSession, Node, V1Instance
from simulcast.control.instance_runner import NODE_LOST, close_left_running
from simulcast.control.services import billing
from simulcast.control.timeutil import now_ms
from simulcast.metrics import FLEET_NODES
from simulcast.periodic import Periodic
from simulcast.settings import Settings

log = logging.getLogger("simulcast.fleet")


@dataclass(frozen=True, slots=True)
class Lost:
    """What a sweep closed for one lost node."""

    node_id: str
    sessions: Sequence[str]
    instances: Sequence[str]


@dataclass(frozen=True, slots=True)
class Owned:
    """What a media node publishes: live sessions (session id -> stream id) and instances."""

    sessions: Mapping[str, int] = field(default_factory=dict)
    instances: Collection[str] = ()

    def __bool__(self) -> bool:
        return bool(self.sessions or self.instances)


async def _matching(
    session: AsyncSession,
    column: InstrumentedAttribute[str],
    ids: Collection[str],
    *conditions: ColumnElement[bool],
) -> set[str]:
    """Those of ``ids`` (values of ``column``) whose rows meet ``conditions``."""
    if not ids:
        return set()
    return set(await session.scalars(select(column).where(column.in_(list(ids)), *conditions)))


async def disowned(session: AsyncSession, *, node_id: str, owned: Owned) -> Owned:
    """The part of ``owned`` whose rows say ``node_id`` no longer owns it (closed, stopped, or
    moved to another node)."""
    kept_sessions = await _matching(
        session,
        LiveSession.session_id,
        owned.sessions,
        LiveSession.node_id == node_id,
        LiveSession.ended_ms.is_(None),
    )
    kept_instances = await _matching(
        session,
        V1Instance.id,
        owned.instances,
        V1Instance.node_id == node_id,
        V1Instance.status == "RUNNING",
    )
    return Owned(
        {sid: stream for sid, stream in owned.sessions.items() if sid not in kept_sessions},
        [i for i in owned.instances if i not in kept_instances],
    )


async def list_nodes(session: AsyncSession) -> Sequence[Node]:
    """Every registered node, by id."""
    return (await session.scalars(select(Node).order_by(Node.id))).all()


def advertised_rtmp_url(settings: Settings) -> str:
    """The RTMP base URL publishers reach this node at."""
    if settings.advertised_rtmp_url:
        return settings.advertised_rtmp_url.rstrip("/")
    host = "127.0.0.1" if settings.rtmp_host in ("0.0.0.0", "::") else settings.rtmp_host
    return f"rtmp://{host}:{settings.rtmp_port}"


class Heartbeat:
    """Keeps this media node's lease and fences it (see the module's docstring).

    ``owned`` tells what the node publishes now (its ``load`` is that count); ``release`` stops
    the given part of it locally (the rows are not this node's to write any more).
    """

    def __init__(
        self,
        settings: Settings,
        db: async_sessionmaker[AsyncSession],
        *,
        node_id: str,
        owned: Callable[[], Owned] = Owned,
        release: Callable[[Owned], Awaitable[None]],
    ) -> None:
        self._settings = settings
        self._db = db
        self._node = node_id
        self._owned = owned
        self._release = release
        self._lease_ms = int(settings.node_lease_seconds * 1000)
        self._renewed = time.monotonic()
        """When the lease was last renewed (monotonic: it counts while the process is frozen)."""
        self._started_ms = now_ms()
        # A failed renewal is retried at the same pace: a growing backoff would let the lease lapse.
        every = self._lease_ms / 3000
        self.job = Periodic("node-heartbeat", self._renew, every, backoff_max=every)

    async def beat(self) -> bool:
        """Renew the lease (registering the node); ``False`` when the fleet had declared this
        node lost (its row is then taken back as a fresh registration)."""
        asked = time.monotonic()  # the lease runs from the request, not from its answer
        now = now_ms()
        owned = self._owned()
        values = {
            "rtmp_url": advertised_rtmp_url(self._settings),
            "hls_url": (self._settings.advertised_hls_url or self._settings.base_url()).rstrip("/"),
            "slots": self._settings.instance_slots,
            "load": len(owned.sessions) + len(owned.instances),
            "heartbeat_ms": now,
            "lease_expires_ms": now + self._lease_ms,
        }
        async with self._db.begin() as session:
            row = await session.get(Node, self._node, with_for_update=True)
            if row is None:
                session.add(Node(id=self._node, started_ms=self._started_ms, **values))
                return True
            was_lost = row.lost_ms is not None
            await session.execute(
                update(Node)
                .where(Node.id == self._node)
                .values(lost_ms=None, started_ms=self._started_ms, **values)
            )
        self._renewed = asked
        return not was_lost

    async def fence(self) -> Owned:
        """One round of fencing (what :meth:`start`'s loop does every third of the lease):
        stop everything when the lease ran out or the node was declared lost, else stop what
        the rows say is no longer this node's. What it released."""
        expired_s = time.monotonic() - self._renewed
        if expired_s * 1000 > self._lease_ms and (owned := self._owned()):
            log.error(
                "lease not renewed for %.1f s (longer than the lease): stopping %d sessions "
                "and %d instances, a survivor may own them now",
                expired_s,
                len(owned.sessions),
                len(owned.instances),
            )
            await self._release(owned)
        if not await self.beat():
            owned = self._owned()
            log.error("this node was declared lost: stopping its live sessions and instances")
            await self._release(owned)
            return owned
        async with self._db() as session:
            gone = await disowned(session, node_id=self._node, owned=self._owned())
        if gone:
            log.warning(
                "no longer the owner of sessions %s and instances %s: stopping them here",
                sorted(gone.sessions),
                sorted(gone.instances),
            )
            await self._release(gone)
        return gone

    async def start(self) -> None:
        """Register now (so the node is visible before it takes publishes), then keep beating."""
        await self.beat()
        self.job.start(first_after=self._lease_ms / 3000)

    async def _renew(self) -> None:
        await self.fence()

    async def stop(self) -> None:
        """Stop beating and leave the fleet (a graceful exit closed its sessions itself)."""
        await self.job.stop()
        with contextlib.suppress(Exception):
            async with self._db.begin() as session:
                row = await session.get(Node, self._node)
                if row is not None:
                    await session.delete(row)


class LostNodeSweeper:
    """Declares nodes whose lease ran out lost and closes what they owned (API nodes run it)."""

    def __init__(
        self,
        settings: Settings,
        db: async_sessionmaker[AsyncSession],
        *,
        on_webhook_enqueued: Callable[[], None] = lambda: None,
        every_seconds: float | None = None,
    ) -> None:
        self._settings = settings
        self._db = db
        self._notify = on_webhook_enqueued
        every = every_seconds or min(1.0, settings.node_lease_seconds / 3)
        self.job = Periodic("lost-node-sweep", self._pass, every)

    async def sweep(self) -> list[Lost]:
        """Bury every node whose lease has run out, each in its own transaction."""
        lost: list[Lost] = []
        while True:
            async with self._db.begin() as session:
                node = await session.scalar(
                    select(Node)
                    .where(Node.lost_ms.is_(None), Node.lease_expires_ms < now_ms())
                    .limit(1)
                    .with_for_update(skip_locked=True)
                )
                if node is None:
                    break
                node.lost_ms = now_ms()
                closed = await billing.recover_crashed_sessions(
                    session, settings=self._settings, node_id=node.id, reason=NODE_LOST
                )
                stopped = await close_left_running(session, node_id=node.id, reason=NODE_LOST)
                lost.append(Lost(node.id, [s.session_id for s in closed], [i.id for i in stopped]))
        for item in lost:
            log.warning(
                "node %s lost: closed %d sessions and %d instances (node_lost)",
                item.node_id,
                len(item.sessions),
                len(item.instances),
            )
        if any(item.sessions or item.instances for item in lost):
            self._notify()
        return lost

    async def count(self) -> None:
        """Refresh the fleet gauge (live and lost nodes)."""
        async with self._db() as session:
            nodes = await list_nodes(session)
        FLEET_NODES.labels(state="live").set(sum(1 for n in nodes if n.lost_ms is None))
        FLEET_NODES.labels(state="lost").set(sum(1 for n in nodes if n.lost_ms is not None))

    async def start(self) -> None:
        """Start sweeping in the background."""
        self.job.start()

    async def _pass(self) -> None:
        await self.sweep()
        await self.count()

    async def stop(self) -> None:
        """Stop sweeping."""
        await self.job.stop()
