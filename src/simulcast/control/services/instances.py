"""Instances and instance requests of the v1 dialect: rows, queue, limits and engine specs.

What runs where is decided by :class:`simulcast.control.instance_runner.InstanceRunner`; this
module only reads and writes rows in the caller's transaction (it never commits).

Statuses: an instance is ``QUEUED`` -> ``RUNNING`` -> ``STOPPED`` (restart of a stopped one
queues it again). A request's status is derived from its instances: ``QUEUED`` while any waits,
``RUNNING`` once all have started, ``CANCELLED`` when all were stopped before starting,
``FAILED`` when one could not start.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from simulcast.control.db.models import Account, V1Configuration, V1Instance, V1InstanceRequest
from simulcast.control.secretbox import SecretBox
from simulcast.control.services import configurations, files, v1_destinations, webhooks
from simulcast.control.timeutil import now_ms
from simulcast.engine import InstanceEvent, InstanceSpec
from simulcast.settings import Settings

QUEUED, RUNNING, STOPPED = "QUEUED", "RUNNING", "STOPPED"
ACTIVE = (QUEUED, RUNNING)
CANCELLED = "cancelled"
STOPPED_BY_CLIENT = "stopped"
START_FAILED = "start_failed"
RECENT_MS = 24 * 3600 * 1000
"""Stopped instances stay in listings this long."""


def new_id(prefix: str) -> str:
    """An opaque id: ``cfg_``, ``req_``, ``ins_`` plus 16 hex digits."""
    return f"{prefix}_{secrets.token_hex(8)}"


def new_stream_key() -> str:
    """An input's stream key: 32 hex digits (V1.md)."""
    return secrets.token_hex(16)


# --- Configurations ---------------------------------------------------------------------------


async def get_configuration(
    session: AsyncSession, *, account_id: int, configuration_id: str
) -> V1Configuration | None:
    """One configuration of the account (not deleted)."""
    return await session.scalar(
        select(V1Configuration).where(
            V1Configuration.id == configuration_id,
            V1Configuration.account_id == account_id,
            V1Configuration.deleted_ms.is_(None),
        )
    )


async def configuration_of(session: AsyncSession, instance: V1Instance) -> V1Configuration:
    """The configuration an instance was made from (deleted or not: a configuration with
    instances is never removed)."""
    found = await session.get(V1Configuration, instance.configuration_id)
    assert found is not None, "configurations with instances are never removed"
    return found


async def list_configurations(
    session: AsyncSession, *, account_id: int
) -> Sequence[V1Configuration]:
    """The account's configurations, oldest first."""
    rows = await session.scalars(
        select(V1Configuration)
        .where(V1Configuration.account_id == account_id, V1Configuration.deleted_ms.is_(None))
        .order_by(V1Configuration.created_ms, V1Configuration.id)
    )
    return rows.all()


@dataclass(frozen=True, slots=True)
class References:
    """What settings of an account's elements may name."""

    destinations: set[str]
    png_files: set[str]
    video_files: set[str]


async def references(session: AsyncSession, *, account_id: int) -> References:
    """The account's destination, PNG and MP4 file ids."""
    dests = await v1_destinations.list_for(session, account_id=account_id)
    return References(
        {d.id for d in dests},
        await files.ids_of_kind(session, account_id=account_id, kind="png"),
        await files.ids_of_kind(session, account_id=account_id, kind="mp4"),
    )


# --- Instances --------------------------------------------------------------------------------


async def count_active(session: AsyncSession, *, account_id: int, lock: bool = False) -> int:
    """Running plus queued instances of an account (what its limit counts).

    With ``lock``, the account row is locked first, so two launches racing for the last slots
    serialize (SQLite's write transactions already do).
    """
    if lock:
        await session.execute(select(Account.id).where(Account.id == account_id).with_for_update())
    n = await session.scalar(
        select(func.count(V1Instance.seq)).where(
            V1Instance.account_id == account_id, V1Instance.status.in_(ACTIVE)
        )
    )
    return int(n or 0)


def slots_error(settings: Settings, active: int, wanted: int) -> str | None:
    """Why launching ``wanted`` more instances is over the account's limit, or ``None``."""
    left = max(0, settings.max_instances_per_account - active)
    if wanted <= left:
        return None
    return (
        f"Not enough instance slots: you have {left} instance slots left "
        f"({settings.max_instances_per_account} running or queued per account) "
        f"and asked for {wanted}"
        if left
        else f"You have 0 instance slots available ({settings.max_instances_per_account} running "
        "or queued per account); stop an instance first"
    )


async def launch(
    session: AsyncSession,
    *,
    configuration: V1Configuration,
    instances: Sequence[tuple[str, Mapping[str, Mapping[str, Any]]]],
    restart_on_failure: bool = False,
) -> tuple[V1InstanceRequest, list[V1Instance]]:
    """Record a request and its ``QUEUED`` instances (``(name, checked overrides)`` each);
    ``restart_on_failure`` queues them again when their node is lost."""
    now = now_ms()
    request = V1InstanceRequest(
        id=new_id("req"),
        account_id=configuration.account_id,
        configuration_id=configuration.id,
        created_ms=now,
    )
    session.add(request)
    await session.flush()
    rows = []
    for name, overrides in instances:
        row = V1Instance(
            id=new_id("ins"),
            account_id=configuration.account_id,
            configuration_id=configuration.id,
            request_id=request.id,
            name=name,
            status=QUEUED,
            overrides={k: dict(v) for k, v in overrides.items()},
            input_keys={
                eid: new_stream_key() for eid in configurations.input_ids(configuration.elements)
            },
            outputs_live={},
            created_ms=now,
            queued_ms=now,
            run_base_seconds=0,
            seconds=0,
            cost_sats=0,
            restart_on_failure=restart_on_failure,
        )
        session.add(row)
        rows.append(row)
    await session.flush()
    return request, rows


async def get_instance(
    session: AsyncSession, *, account_id: int, instance_id: str
) -> V1Instance | None:
    """One instance of the account."""
    return await session.scalar(
        select(V1Instance).where(V1Instance.id == instance_id, V1Instance.account_id == account_id)
    )


async def list_instances(
    session: AsyncSession,
    *,
    account_id: int,
    configuration_id: str | None = None,
    status: str | None = None,
    recent_since_ms: int | None = None,
) -> Sequence[V1Instance]:
    """Queued and running instances plus those stopped since ``recent_since_ms``, newest first."""
    since = recent_since_ms if recent_since_ms is not None else now_ms() - RECENT_MS
    query = select(V1Instance).where(
        V1Instance.account_id == account_id,
        or_(V1Instance.status.in_(ACTIVE), V1Instance.stopped_ms >= since),
    )
    if configuration_id is not None:
        query = query.where(V1Instance.configuration_id == configuration_id)
    if status is not None:
        query = query.where(V1Instance.status == status)
    rows = await session.scalars(
        query.order_by(V1Instance.created_ms.desc(), V1Instance.seq.desc())
    )
    return rows.all()


async def get_request(
    session: AsyncSession, *, account_id: int, request_id: str
) -> tuple[V1InstanceRequest, Sequence[V1Instance]] | None:
    """A request of the account with its instances (in launch order)."""
    request = await session.scalar(
        select(V1InstanceRequest).where(
            V1InstanceRequest.id == request_id, V1InstanceRequest.account_id == account_id
        )
    )
    if request is None:
        return None
    rows = await session.scalars(
        select(V1Instance).where(V1Instance.request_id == request_id).order_by(V1Instance.seq)
    )
    return request, rows.all()


def request_status(instances: Sequence[V1Instance]) -> tuple[str, str | None]:
    """A request's ``(status, error)`` from its instances."""
    failed = next((i for i in instances if i.error), None)
    if failed is not None:
        return "FAILED", failed.error
    if any(i.status == QUEUED for i in instances):
        return "QUEUED", None
    if any(i.started_ms is not None for i in instances):
        return "RUNNING", None
    return "CANCELLED", None


def requeue(instance: V1Instance) -> None:
    """Put a stopped instance back at the end of the queue, keeping its input keys."""
    instance.status = QUEUED
    instance.queued_ms = now_ms()
    instance.node_id = None


def stop_queued(instance: V1Instance, reason: str = CANCELLED, error: str | None = None) -> None:
    """A queued instance leaves the queue without having run (now)."""
    instance.status = STOPPED
    instance.stopped_ms = now_ms()
    instance.stop_reason = reason
    instance.error = error


async def next_queued(session: AsyncSession) -> V1Instance | None:
    """The instance first in the queue, locked (others' nodes skip it on PostgreSQL)."""
    return await session.scalar(
        select(V1Instance)
        .where(V1Instance.status == QUEUED)
        .order_by(V1Instance.queued_ms, V1Instance.seq)
        .limit(1)
        .with_for_update(skip_locked=True)
        .execution_options(populate_existing=True)
    )


async def running_on(session: AsyncSession, *, node_id: str) -> Sequence[V1Instance]:
    """The instances marked running on a node."""
    rows = await session.scalars(
        select(V1Instance)
        .where(V1Instance.status == RUNNING, V1Instance.node_id == node_id)
        .order_by(V1Instance.seq)
    )
    return rows.all()


async def in_use(
    session: AsyncSession, *, account_id: int, destination_id: str | None = None
) -> list[V1Instance]:
    """The account's running or queued instances whose outputs name ``destination_id``."""
    rows = await session.scalars(
        select(V1Instance).where(V1Instance.account_id == account_id, V1Instance.status.in_(ACTIVE))
    )
    active = list(rows.all())
    configs = {
        c.id: c
        for c in await session.scalars(
            select(V1Configuration).where(
                V1Configuration.id.in_({i.configuration_id for i in active})
            )
        )
    }
    out = []
    for inst in active:
        elements = configurations.apply_overrides(
            configs[inst.configuration_id].elements, inst.overrides
        )
        if destination_id in configurations.destinations_used(elements):
            out.append(inst)
    return out


async def effective(
    session: AsyncSession, *, instance: V1Instance
) -> tuple[V1Configuration, list[dict[str, Any]]]:
    """An instance's configuration and its elements with the overrides applied (unchecked)."""
    config = await session.get(V1Configuration, instance.configuration_id)
    assert config is not None, "configurations with instances are never removed"
    return config, configurations.apply_overrides(config.elements, instance.overrides)


async def build_spec(
    session: AsyncSession, *, settings: Settings, box: SecretBox, instance: V1Instance
) -> InstanceSpec:
    """What the engine needs to run an instance, re-validated against today's account.

    Raises :class:`~simulcast.control.services.configurations.ConfigError` when the
    configuration or overrides no longer hold (e.g. a file was deleted).
    """
    config = await session.get(V1Configuration, instance.configuration_id)
    assert config is not None, "configurations with instances are never removed"
    refs = await references(session, account_id=instance.account_id)
    _, elements = configurations.effective_elements(
        config.elements,
        instance.overrides,
        destinations=refs.destinations,
        png_files=refs.png_files,
        video_files=refs.video_files,
    )
    images = {
        e["settings"]["image"]
        for e in elements
        if e["type"] == "failover" and e["settings"].get("image")
    } | {e["settings"]["file"] for e in elements if e["type"] == "videoplayer"}
    paths = {}
    for file_id in images:
        row = await files.get(session, account_id=instance.account_id, file_id=file_id)
        assert row is not None, "validated above"
        paths[file_id] = str(files.path_of(settings, row))
    keys = dict(instance.input_keys)
    for eid in configurations.input_ids(elements):  # an input added to the configuration since
        keys.setdefault(eid, new_stream_key())
    instance.input_keys = keys
    return InstanceSpec(
        instance_id=instance.id,
        account_id=instance.account_id,
        elements=configurations.element_specs(elements, paths),
        input_keys=keys,
        destinations=await v1_destinations.opened_urls(
            session,
            box=box,
            account_id=instance.account_id,
            ids=configurations.destinations_used(elements),
        ),
        outputs_live={
            eid: bool(instance.outputs_live.get(eid)) for eid in configurations.output_ids(elements)
        },
    )


def outputs_after(
    instance: V1Instance, elements: Sequence[Mapping[str, Any]], live: bool, element_id: str | None
) -> dict[str, bool]:
    """The instance's per-output LIVE map after setting one (or every) output."""
    current = dict(instance.outputs_live)
    for eid in configurations.output_ids(elements):
        if element_id is None or eid == element_id:
            current[eid] = live
    return current


# --- Webhooks ---------------------------------------------------------------------------------


def instance_data(instance: V1Instance) -> dict[str, Any]:
    """The fields every instance webhook carries."""
    return {
        "instanceId": instance.id,
        "configurationId": instance.configuration_id,
        "name": instance.name,
        "startedAt": instance.started_ms,
    }


async def enqueue_running(session: AsyncSession, *, instance: V1Instance) -> list[str]:
    """Queue ``instance.running`` with the row change that started it."""
    return await webhooks.enqueue_event(
        session,
        account_id=instance.account_id,
        stream_id=None,
        event="instance.running",
        data=instance_data(instance),
        created_ms=instance.run_started_ms,
    )


async def enqueue_stopped(session: AsyncSession, *, instance: V1Instance) -> list[str]:
    """Queue ``instance.stopped`` (reason, total seconds and cost) with the stop."""
    return await webhooks.enqueue_event(
        session,
        account_id=instance.account_id,
        stream_id=None,
        event="instance.stopped",
        data={
            **instance_data(instance),
            "stoppedAt": instance.stopped_ms,
            "stopReason": instance.stop_reason,
            "seconds": instance.seconds,
            "costSats": instance.cost_sats,
        },
        created_ms=instance.stopped_ms,
    )


async def record_event(
    session: AsyncSession, *, event: InstanceEvent, once: str | None = None
) -> bool:
    """Turn an element's event into the account's webhook; whether any delivery was queued.
    ``once``: as :func:`webhooks.enqueue_event`'s, for a transaction tried again."""
    instance = await session.scalar(select(V1Instance).where(V1Instance.id == event.instance_id))
    if instance is None:
        return False
    ids = await webhooks.enqueue_event(
        session,
        account_id=instance.account_id,
        stream_id=None,
        event=event.event,
        data={
            **instance_data(instance),
            "elementId": event.element_id,
            "at": event.at_ms,
            **dict(event.data),
        },
        created_ms=event.at_ms,
        once=once,
    )
    return bool(ids)
