"""The control bus between API nodes and media nodes, over Redis.

Commands: an API node publishes a command about a live stream on the owning node's channel
(``{prefix}:cmd:{node}``; the owner is the open session row's ``node_id``) and waits for the
answer on a one-off reply channel. The command set is the :class:`~simulcast.engine.Engine`
seam's mutations: ``stop``, ``add_output``, ``remove_output``, ``rekey``; the media node applies
each to its local engine and answers ``{"ok": bool}``. Commands are sealed with the fleet's
secret box (every node shares ``SIMULCAST_SECRET_KEY``): an output's URL carries a stream key.
A media node sends one too: a stream shift across nodes (``?shift=1``) takes the session row over
and tells the previous owner to ``stop`` with reason ``shifted`` (:meth:`BusServer.hand_over`).

Live state: each media node writes a snapshot of its sessions to ``{prefix}:live:{node}``
twice a second with a short expiry; API nodes read every node's snapshot at the same pace, so
:meth:`BusEngine.sessions` (synchronous, like the local engine's) answers from memory and is at
most about a second old. A node that dies stops refreshing and its snapshot expires.

Redis restarts: both loops reconnect with a back-off; a command sent while Redis is down fails
(``False``), as a stream that is not live would, and an API node whose snapshots are older than
their expiry shows nothing live rather than a stale state.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import secrets
import time
from collections.abc import Mapping
from typing import Any

import redis.asyncio as aioredis
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from simulcast.control.db.models import LiveSession, V1Instance
from simulcast.control.instance_runner import InstanceRunner, NotRunning
from simulcast.control.secretbox import SecretBox, SecretBoxError
from simulcast.engine import (
    ElementStatus,
    Engine,
    InstanceEngine,
    InstanceInfo,
    InstanceSpec,
    OutputSpec,
    OutputStatus,
    SessionInfo,
)
from simulcast.settings import Settings

log = logging.getLogger("simulcast.bus")

SNAPSHOT_SECONDS = 0.5
SNAPSHOT_TTL_MS = 3000
RETRY_SECONDS = 1.0
SHIFTED = "shifted"
"""The reason a node stops a session another node took over (never recorded: the session's
row belongs to the new node, which goes on with it)."""


def connect(settings: Settings, role: str) -> aioredis.Redis:
    """A Redis client for the configured URL (connections are made lazily), its connections
    named ``{prefix}:{role}`` so an operator can tell them apart in ``CLIENT LIST``."""
    return aioredis.Redis.from_url(
        settings.redis_url,
        health_check_interval=10,
        client_name=f"{settings.bus_prefix}:{role}",
    )


def _channel(prefix: str, node_id: str) -> str:
    return f"{prefix}:cmd:{node_id}"


def _live_key(prefix: str, node_id: str) -> str:
    return f"{prefix}:live:{node_id}"


def encode_snapshot(
    sessions: Mapping[int, SessionInfo], running: Mapping[str, InstanceInfo]
) -> str:
    """A node's live sessions and running instances as JSON."""
    return json.dumps(
        {
            "sessions": [dataclasses.asdict(info) for info in sessions.values()],
            "instances": [dataclasses.asdict(info) for info in running.values()],
        }
    )


def decode_snapshot(raw: str | bytes) -> tuple[dict[int, SessionInfo], dict[str, InstanceInfo]]:
    """The inverse of :func:`encode_snapshot` (output maps come back keyed by int)."""
    data = json.loads(raw)
    sessions: dict[int, SessionInfo] = {}
    for item in data["sessions"]:
        outputs = {int(k): OutputStatus(**v) for k, v in item.pop("outputs").items()}
        info = SessionInfo(outputs=outputs, **item)
        sessions[info.stream_id] = info
    running: dict[str, InstanceInfo] = {}
    for item in data["instances"]:
        elements = [ElementStatus(**e) for e in item.pop("elements")]
        inst = InstanceInfo(elements=elements, **item)
        running[inst.instance_id] = inst
    return sessions, running


class _BusEnd:
    """What both ends of the bus hold: a Redis connection, the channel prefix, the key that
    seals commands, and how long a command waits for its answer."""

    def __init__(self, settings: Settings, client_name: str, box: SecretBox) -> None:
        self._prefix = settings.bus_prefix
        self._timeout = settings.bus_command_timeout_seconds
        self._redis = connect(settings, client_name)
        self._box = box

    async def _send_to(self, node: str, command: dict[str, Any]) -> bool:
        """Send one sealed command to ``node`` and wait for its ``{"ok": ...}`` answer; ``False``
        when nobody listens, no answer comes in time, or Redis is unreachable."""
        reply = f"{self._prefix}:reply:{secrets.token_hex(8)}"
        sealed = self._box.seal(json.dumps({**command, "reply": reply}))
        try:
            async with self._redis.pubsub() as pubsub:
                await pubsub.subscribe(reply)
                receivers = await self._redis.publish(_channel(self._prefix, node), sealed)
                if not receivers:
                    log.warning("control bus: node %s is not listening", node)
                    return False
                async with asyncio.timeout(self._timeout):
                    async for message in pubsub.listen():
                        if message.get("type") == "message":
                            return bool(json.loads(message["data"]).get("ok"))
        except TimeoutError:
            log.warning("control bus: node %s did not answer %s", node, command["op"])
        except Exception as exc:
            log.warning("control bus: %s not sent to %s: %s", command["op"], node, exc)
        return False


class BusServer(_BusEnd):
    """A media node's end: applies commands to its engine and publishes its live snapshot."""

    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        instance_engine: InstanceEngine,
        runner: InstanceRunner,
        *,
        node_id: str,
        box: SecretBox,
    ) -> None:
        super().__init__(settings, f"media:{node_id}", box)
        self._engine = engine
        self._instance_engine = instance_engine
        self._runner = runner
        self._node = node_id
        self._stopping = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        """Subscribe to this node's channel and start publishing snapshots."""
        ready = asyncio.Event()
        self._tasks = [
            asyncio.create_task(self._serve(ready), name="bus-commands"),
            asyncio.create_task(self._publish_live(), name="bus-live"),
        ]
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(ready.wait(), 5)

    async def close(self) -> None:
        """Stop both loops and drop this node's snapshot."""
        self._stopping.set()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        with contextlib.suppress(Exception):
            await self._redis.delete(_live_key(self._prefix, self._node))
        await self._redis.aclose()

    async def hand_over(self, node: str, stream_id: int) -> bool:
        """Stream shift across nodes: tell ``node``, which owned the stream's live session until
        this node took the session row over, to stop publishing it (its outputs stop, its
        publisher is disconnected; the session itself goes on here). Whether it answered."""
        return await self._send_to(node, {"op": "stop", "stream_id": stream_id, "reason": SHIFTED})

    async def _serve(self, ready: asyncio.Event) -> None:
        while not self._stopping.is_set():
            try:
                async with self._redis.pubsub() as pubsub:
                    await pubsub.subscribe(_channel(self._prefix, self._node))
                    ready.set()
                    async for message in pubsub.listen():
                        if message.get("type") == "message":
                            await self._handle(message["data"])
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("control bus: %s; reconnecting", exc)
                await asyncio.sleep(RETRY_SECONDS)

    async def _handle(self, data: bytes) -> None:
        try:
            command = json.loads(self._box.open(data.decode()))
        except (SecretBoxError, ValueError, UnicodeDecodeError):
            log.warning("control bus: dropped a command this node cannot open")
            return
        try:
            ok = await self.apply(command)
        except Exception:
            log.exception("control bus: command %s failed", command.get("op"))
            ok = False
        await self._redis.publish(command["reply"], json.dumps({"ok": ok}))

    async def apply(self, command: Mapping[str, Any]) -> bool:
        """Apply one command to the local engine (or instance runner); what it answered."""
        op = command["op"]
        if op.startswith("instance_"):
            return await self._apply_instance(op, str(command["instance_id"]), command)
        stream_id = int(command["stream_id"])
        if op == "stop":
            return await self._engine.stop(stream_id, str(command["reason"]))
        if op == "add_output":
            spec = OutputSpec(**command["spec"])
            return await self._engine.add_output(stream_id, spec)
        if op == "remove_output":
            return await self._engine.remove_output(stream_id, int(command["destination_id"]))
        if op == "rekey":
            return await self._engine.rekey(stream_id, str(command["stream_key"]))
        log.warning("control bus: unknown command %r", op)
        return False

    async def _apply_instance(self, op: str, instance_id: str, args: Mapping[str, Any]) -> bool:
        if op == "instance_stop":
            return await self._runner.stop(instance_id, str(args["reason"]))
        if op == "instance_apply":
            return await self._runner.apply(instance_id)
        if op == "instance_set_outputs":
            element = args.get("element_id")
            return await self._runner.set_outputs(
                instance_id, bool(args["live"]), str(element) if element else None
            )
        if op == "instance_restart":
            try:
                await self._runner.restart(instance_id)
            except NotRunning:
                return False
            return True
        log.warning("control bus: unknown command %r", op)
        return False

    async def _publish_live(self) -> None:
        key = _live_key(self._prefix, self._node)
        while not self._stopping.is_set():
            try:
                snapshot = encode_snapshot(
                    self._engine.sessions(), self._instance_engine.instances()
                )
                await self._redis.set(key, snapshot, px=SNAPSHOT_TTL_MS)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("control bus: live snapshot not written: %s", exc)
            await asyncio.sleep(SNAPSHOT_SECONDS)


class BusEngine(_BusEnd):
    """An API node's :class:`~simulcast.engine.Engine` and (read side of)
    :class:`~simulcast.engine.InstanceEngine`: the fleet's live sessions and running instances,
    read from the snapshots, and commands sent to the node that owns each one.

    Its instance runner is built with :meth:`forward_instance`, so the runner never asks this
    engine to start or change an instance itself."""

    def __init__(
        self, settings: Settings, db: async_sessionmaker[AsyncSession], *, box: SecretBox
    ) -> None:
        super().__init__(settings, "api", box)
        self._db = db
        self._live: dict[int, SessionInfo] = {}
        self._instances: dict[str, InstanceInfo] = {}
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Read the snapshots once (so the first request sees them), then keep reading."""
        with contextlib.suppress(Exception):
            await self.refresh()
        self._task = asyncio.create_task(self._loop(), name="bus-snapshots")

    async def close(self) -> None:
        """Stop reading snapshots and close the connection."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._redis.aclose()

    async def refresh(self) -> None:
        """Read every node's live snapshot now."""
        keys = [k async for k in self._redis.scan_iter(match=_live_key(self._prefix, "*"))]
        live: dict[int, SessionInfo] = {}
        running: dict[str, InstanceInfo] = {}
        for raw in await self._redis.mget(keys) if keys else []:
            if raw is not None:
                sessions, instances = decode_snapshot(raw)
                live.update(sessions)
                running.update(instances)
        self._live, self._instances = live, running

    async def _loop(self) -> None:
        read_at = time.monotonic()
        while True:
            try:
                await self.refresh()
                read_at = time.monotonic()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("control bus: snapshots not read: %s", exc)
                if (time.monotonic() - read_at) * 1000 > SNAPSHOT_TTL_MS:
                    # Older than any snapshot may be: shown as nothing live, not as stale.
                    self._live, self._instances = {}, {}
            await asyncio.sleep(SNAPSHOT_SECONDS)

    def sessions(self) -> Mapping[int, SessionInfo]:
        """Live sessions on every media node, by stream id (at most about a second old)."""
        return dict(self._live)

    def session(self, stream_id: int) -> SessionInfo | None:
        """The live session of a stream on whichever node owns it, or ``None``."""
        return self._live.get(stream_id)

    def instances(self) -> Mapping[str, InstanceInfo]:
        """Running instances on every media node (at most about a second old)."""
        return dict(self._instances)

    def instance(self, instance_id: str) -> InstanceInfo | None:
        """One running instance, on whichever node runs it, or ``None``."""
        return self._instances.get(instance_id)

    async def start_instance(self, spec: InstanceSpec) -> None:
        """Never called: an API node's runner does not claim from the queue."""
        raise RuntimeError("instances start on media nodes")

    async def update_instance(self, spec: InstanceSpec) -> bool:
        """Have the node running it apply the instance's stored settings."""
        return await self.forward_instance(spec.instance_id, "apply", {})

    async def set_outputs(
        self, instance_id: str, live: bool, element_id: str | None = None
    ) -> bool:
        """Turn outputs LIVE or OFFLINE on the node running the instance."""
        args = {"live": live, "element_id": element_id}
        return await self.forward_instance(instance_id, "set_outputs", args)

    async def stop_instance(self, instance_id: str, reason: str) -> bool:
        """Stop the instance on the node running it."""
        return await self.forward_instance(instance_id, "stop", {"reason": reason})

    async def forward_instance(self, instance_id: str, op: str, args: Mapping[str, object]) -> bool:
        """Send an instance operation to the node running it (an ``InstanceRunner`` forward)."""
        async with self._db() as session:
            node = await session.scalar(
                select(V1Instance.node_id).where(
                    V1Instance.id == instance_id, V1Instance.status == "RUNNING"
                )
            )
        if not node:
            return False
        command = {**args, "op": f"instance_{op}", "instance_id": instance_id}
        return await self._send_to(node, command)

    async def stop(self, stream_id: int, reason: str) -> bool:
        """End a stream's live session on its node."""
        return await self._send(stream_id, {"op": "stop", "reason": reason})

    async def add_output(self, stream_id: int, spec: OutputSpec) -> bool:
        """Start an output on a live session on its node."""
        fields = dataclasses.asdict(spec)
        fields["options"] = dict(spec.options)
        return await self._send(stream_id, {"op": "add_output", "spec": fields})

    async def remove_output(self, stream_id: int, destination_id: int) -> bool:
        """Stop and drop an output of a live session on its node."""
        return await self._send(
            stream_id, {"op": "remove_output", "destination_id": destination_id}
        )

    async def rekey(self, stream_id: int, stream_key: str) -> bool:
        """Tell the owning node the stream's key was rotated."""
        return await self._send(stream_id, {"op": "rekey", "stream_key": stream_key})

    async def _owner(self, stream_id: int) -> str | None:
        async with self._db() as session:
            node: str | None = await session.scalar(
                select(LiveSession.node_id).where(
                    LiveSession.stream_id == stream_id, LiveSession.ended_ms.is_(None)
                )
            )
        return node

    async def _send(self, stream_id: int, command: dict[str, Any]) -> bool:
        node = await self._owner(stream_id)
        if not node:
            return False
        return await self._send_to(node, {**command, "stream_id": stream_id})
