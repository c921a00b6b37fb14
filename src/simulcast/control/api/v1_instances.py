"""The v1 dialect's instances: launch, instance requests, lifecycle, overrides, outputs, usage."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Body, Query, Request, Response
from sqlalchemy.ext.asyncio import AsyncSession

from simulcast.control.api.deps import Ctx, Manager
from simulcast.control.api.errors import ApiError, found_or_404
from simulcast.control.api.v1_resources import (
    Id,
    bad_config,
    get_runner,
    no_content_delete,
    owned_configuration,
)
from simulcast.control.db.models import V1Configuration, V1Instance
from simulcast.control.instance_runner import InstanceRunner, NotRunning
from simulcast.control.schemas.common import ERRORS, error_responses
from simulcast.control.schemas.v1 import (
    ElementStateOut,
    InstanceList,
    InstanceOut,
    InstanceRequestOut,
    InstanceStateOut,
    InstanceStatus,
    LaunchIn,
    OutputsIn,
    UsageItem,
    UsageOut,
)
from simulcast.control.services import configurations, instance_billing, instances, ledger
from simulcast.control.services.configurations import ConfigError
from simulcast.control.timeutil import now_ms
from simulcast.engine import InstanceInfo
from simulcast.settings import Settings

router = APIRouter(prefix="/api/v1", tags=["v1"], responses=ERRORS)


# --- Views ------------------------------------------------------------------------------------


def _ingest_host(settings: Settings, request: Request) -> str:
    """The host publishers reach: PUBLIC_URL's, else the one this request came to."""
    if settings.public_url:
        return urlsplit(settings.public_url).hostname or "127.0.0.1"
    return request.url.hostname or "127.0.0.1"


def _element_states(
    settings: Settings,
    host: str,
    inst: V1Instance,
    elements: Sequence[dict[str, Any]],
    info: InstanceInfo | None,
) -> list[ElementStateOut]:
    """Each element's state: what the control plane knows, overlaid with the engine's figures."""
    live = {e.id: dict(e.state) for e in info.elements} if info is not None else {}
    out = []
    for e in elements:
        state: dict[str, Any] = {}
        if e["type"] == "inputstream":
            key = inst.input_keys.get(e["id"], "")
            state = {
                "streamkey": key,
                "ingest": {
                    "rtmp": f"rtmp://{host}:{settings.rtmp_port}/{e['id']}/{key}",
                    "srt": f"srt://{host}:{settings.srt_port}?streamid=publish:{key}",
                },
                "live": False,
            }
        elif e["type"] == "outputstream":
            state = {
                "live": bool(inst.outputs_live.get(e["id"])) and inst.status == "RUNNING",
                "destinations": [
                    {"id": d, "state": "idle", "lastError": None, "bytesSent": 0}
                    for d in e["settings"].get("destinations", [])
                ],
            }
        elif e["type"] == "switch":
            state = {"input": e["settings"].get("input") or e["inputs"][0]}
        elif e["type"] == "failover":
            state = {"active": False}
        engine_state = live.get(e["id"], {})
        if e["type"] == "inputstream":  # the URLs as this request's client reaches them
            engine_state = {k: v for k, v in engine_state.items() if k != "ingest"}
        state.update(engine_state)
        out.append(ElementStateOut(id=e["id"], type=e["type"], state=state))
    return out


def instance_out(
    settings: Settings,
    host: str,
    inst: V1Instance,
    config: V1Configuration,
    info: InstanceInfo | None,
) -> InstanceOut:
    """The v1 shape of an instance, with live element state while it runs here."""
    elements = configurations.apply_overrides(config.elements, inst.overrides)
    running = inst.status == instances.RUNNING
    outputs_live = info.outputs_live if info is not None else any(inst.outputs_live.values())
    status: InstanceStatus = inst.status  # type: ignore[assignment]
    return InstanceOut(
        id=inst.id,
        name=inst.name,
        configurationId=inst.configuration_id,
        requestId=inst.request_id,
        status=status,
        outputs="LIVE" if running and outputs_live else "OFFLINE",
        createdAt=inst.created_ms,
        startedAt=inst.started_ms,
        stoppedAt=inst.stopped_ms,
        stopReason=inst.stop_reason,
        error=inst.error,
        overrides=inst.overrides,
        state=InstanceStateOut(elements=_element_states(settings, host, inst, elements, info)),
    )


async def _views(
    session: AsyncSession,
    ctx: Ctx,
    request: Request,
    rows: Sequence[V1Instance],
) -> list[InstanceOut]:
    runner = get_runner(request)
    host = _ingest_host(ctx.settings, request)
    configs: dict[str, V1Configuration] = {}
    out = []
    for inst in rows:
        if inst.configuration_id not in configs:
            configs[inst.configuration_id] = await instances.configuration_of(session, inst)
        info = runner.engine.instance(inst.id) if inst.status == instances.RUNNING else None
        out.append(instance_out(ctx.settings, host, inst, configs[inst.configuration_id], info))
    return out


async def _owned_instance(session: AsyncSession, account_id: int, instance_id: str) -> V1Instance:
    inst = await instances.get_instance(session, account_id=account_id, instance_id=instance_id)
    return found_or_404(inst, "Instance")


async def _one(ctx: Ctx, request: Request, account_id: int, instance_id: str) -> InstanceOut:
    async with ctx.read() as session:
        inst = await _owned_instance(session, account_id, instance_id)
        return (await _views(session, ctx, request, [inst]))[0]


# --- Launch and requests ----------------------------------------------------------------------


@router.post(
    "/configurations/{configurationId}/instances",
    response_model=InstanceRequestOut,
    status_code=202,
    response_model_exclude_none=True,
    summary="Run a configuration",
    responses={
        202: {"headers": {"Location": {"schema": {"type": "string"}}}},
        **error_responses({402: "The wallet cannot pay the first interval"}),
    },
)
async def launch(
    configurationId: Id,
    principal: Manager,
    ctx: Ctx,
    request: Request,
    response: Response,
    body: Annotated[LaunchIn | None, Body()] = None,
) -> InstanceRequestOut:
    """Launch one instance (no body) or ``numberOfInstances`` with their names and overrides.

    Answers 202 with the instance request and ``Location: /api/v1/instance-requests/{id}``;
    the instances wait ``QUEUED`` for a free slot, first in first out. Over the account's limit:
    400 (``0 instance slots``)."""
    settings = ctx.settings
    wanted = body.instanceSettings if body and body.instanceSettings is not None else None
    count = body.numberOfInstances if body and body.numberOfInstances is not None else None
    if wanted is not None and count is not None and count != len(wanted):
        raise ApiError(
            400,
            f"Invalid field 'numberOfInstances': {count} does not match the "
            f"{len(wanted)} entries of instanceSettings",
            field="numberOfInstances",
        )
    if wanted is not None and not wanted:
        raise ApiError(400, "Invalid field 'instanceSettings': empty", field="instanceSettings")
    count = len(wanted) if wanted is not None else (count or 1)
    runner = get_runner(request)
    async with ctx.db.begin() as session:
        config = await owned_configuration(session, principal.account_id, configurationId)
        refs = await instances.references(session, account_id=principal.account_id)
        planned = []
        for index in range(count):
            one = wanted[index] if wanted is not None else None
            prefix = f"instanceSettings.{index}.overrides"
            try:
                checked, _ = configurations.effective_elements(
                    config.elements,
                    one.overrides if one is not None else None,
                    destinations=refs.destinations,
                    png_files=refs.png_files,
                    video_files=refs.video_files,
                    prefix=prefix,
                )
            except ConfigError as exc:
                raise bad_config(exc) from None
            name = (one.name if one is not None else None) or (
                config.name if count == 1 else f"{config.name} #{index + 1}"
            )
            planned.append((name, checked))
        active = await instances.count_active(session, account_id=principal.account_id, lock=True)
        refusal = instances.slots_error(settings, active, count)
        if refusal is not None:
            raise ApiError(400, refusal)
        price = instance_billing.first_interval_price(settings)
        held = await ledger.balance(session, account_id=principal.account_id)
        if price and held < price:
            raise ApiError(
                402,
                f"Insufficient funds (insufficient_funds): an instance needs {price} sats to "
                f"start, the wallet holds {held}",
            )
        req, rows = await instances.launch(
            session,
            configuration=config,
            instances=planned,
            restart_on_failure=body is not None and body.restartOnFailure,
        )
    runner.kick()
    response.headers["Location"] = f"/api/v1/instance-requests/{req.id}"
    return InstanceRequestOut(
        id=req.id,
        configurationId=req.configuration_id,
        status="QUEUED",
        instances=[r.id for r in rows],
        createdAt=req.created_ms,
    )


@router.get(
    "/instance-requests/{requestId}",
    response_model=InstanceRequestOut,
    response_model_exclude_none=True,
    summary="Fetch an instance request",
)
async def get_request(requestId: Id, principal: Manager, ctx: Ctx) -> InstanceRequestOut:
    """A launch's status: ``QUEUED`` until every instance runs, then ``RUNNING``
    (``CANCELLED`` if stopped before starting, ``FAILED`` with ``error``)."""
    async with ctx.read() as session:
        found = await instances.get_request(
            session, account_id=principal.account_id, request_id=requestId
        )
    req, rows = found_or_404(found, "Instance request")
    status, error = instances.request_status(rows)
    return InstanceRequestOut(
        id=req.id,
        configurationId=req.configuration_id,
        status=status,
        instances=[r.id for r in rows],
        createdAt=req.created_ms,
        error=error,
    )


# --- Listing and stopping ---------------------------------------------------------------------

StatusFilter = Annotated[
    InstanceStatus | None, Query(description="Only instances with this status")
]


@router.get(
    "/configurations/{configurationId}/instances",
    response_model=InstanceList,
    summary="List a configuration's instances",
)
async def list_configuration_instances(
    configurationId: Id,
    principal: Manager,
    ctx: Ctx,
    request: Request,
    status: StatusFilter = None,
) -> InstanceList:
    """Queued and running instances of the configuration and those stopped in the last 24 h."""
    async with ctx.read() as session:
        await owned_configuration(session, principal.account_id, configurationId)
        rows = await instances.list_instances(
            session,
            account_id=principal.account_id,
            configuration_id=configurationId,
            status=status,
        )
        return InstanceList(instances=await _views(session, ctx, request, rows))


@router.get("/instances", response_model=InstanceList, summary="List instances")
async def list_instances(
    principal: Manager, ctx: Ctx, request: Request, status: StatusFilter = None
) -> InstanceList:
    """The account's queued and running instances and those stopped in the last 24 h,
    newest first."""
    async with ctx.read() as session:
        rows = await instances.list_instances(
            session, account_id=principal.account_id, status=status
        )
        return InstanceList(instances=await _views(session, ctx, request, rows))


@router.get("/instances/{instanceId}", response_model=InstanceOut, summary="Fetch an instance")
async def get_instance(
    instanceId: Id, principal: Manager, ctx: Ctx, request: Request
) -> InstanceOut:
    """One instance with its elements' live state (inputs' stream keys and ingest URLs)."""
    return await _one(ctx, request, principal.account_id, instanceId)


async def _stop(runner: InstanceRunner, inst: V1Instance) -> None:
    if inst.status == instances.QUEUED and not await runner.cancel(inst.id):
        # Started meanwhile: stop it like a running one.
        await runner.stop(inst.id, instances.STOPPED_BY_CLIENT)
    elif inst.status == instances.RUNNING:
        await runner.stop(inst.id, instances.STOPPED_BY_CLIENT)


async def _stop_all(
    ctx: Ctx, request: Request, account_id: int, configuration_id: str | None
) -> None:
    async with ctx.read() as session:
        rows = await instances.list_instances(
            session, account_id=account_id, configuration_id=configuration_id
        )
    runner = get_runner(request)
    # Queued ones first, so none of them takes a slot a stop frees.
    for inst in sorted(rows, key=lambda i: i.status != instances.QUEUED):
        await _stop(runner, inst)


@no_content_delete(router, "/instances/{instanceId}", "Stop an instance")
async def delete_instance(
    instanceId: Id, principal: Manager, ctx: Ctx, request: Request
) -> Response:
    """Stop a running instance or cancel a queued one (204, again 204 once stopped)."""
    async with ctx.read() as session:
        inst = await _owned_instance(session, principal.account_id, instanceId)
    await _stop(get_runner(request), inst)
    return Response(status_code=204)


@no_content_delete(router, "/instances", "Stop all instances")
async def delete_instances(principal: Manager, ctx: Ctx, request: Request) -> Response:
    """Stop every running and cancel every queued instance of the account."""
    await _stop_all(ctx, request, principal.account_id, None)
    return Response(status_code=204)


@no_content_delete(
    router, "/configurations/{configurationId}/instances", "Stop a configuration's instances"
)
async def delete_configuration_instances(
    configurationId: Id, principal: Manager, ctx: Ctx, request: Request
) -> Response:
    """Stop every running and cancel every queued instance of the configuration."""
    async with ctx.read() as session:
        await owned_configuration(session, principal.account_id, configurationId)
    await _stop_all(ctx, request, principal.account_id, configurationId)
    return Response(status_code=204)


@router.post(
    "/instances/{instanceId}/restart", response_model=InstanceOut, summary="Restart an instance"
)
async def restart_instance(
    instanceId: Id, principal: Manager, ctx: Ctx, request: Request
) -> InstanceOut:
    """Stop and start again with the same id, overrides, input keys and outputs state.

    A running instance restarts in its slot; a stopped one joins the queue again (subject to
    the account's limit); a queued one: 409."""
    runner = get_runner(request)
    async with ctx.db.begin() as session:
        inst = await _owned_instance(session, principal.account_id, instanceId)
        if inst.status == instances.QUEUED:
            raise ApiError(409, "Instance is queued; it starts when a slot frees")
        if inst.status == instances.STOPPED:
            active = await instances.count_active(
                session, account_id=principal.account_id, lock=True
            )
            refusal = instances.slots_error(ctx.settings, active, 1)
            if refusal is not None:
                raise ApiError(400, refusal)
            inst.status = instances.QUEUED
            inst.queued_ms = now_ms()
            inst.stopped_ms = inst.stop_reason = inst.error = None
    if inst.status == instances.QUEUED:
        runner.kick()
    else:
        try:
            await runner.restart(instanceId)
        except NotRunning:
            raise ApiError(409, "Instance is not running on this server") from None
        except ConfigError as exc:
            raise bad_config(exc) from None
    return await _one(ctx, request, principal.account_id, instanceId)


# --- Overrides and outputs --------------------------------------------------------------------


@router.get(
    "/instances/{instanceId}/overrides",
    response_model=dict[str, dict[str, Any]],
    summary="Get an instance's overrides",
)
async def get_overrides(instanceId: Id, principal: Manager, ctx: Ctx) -> dict[str, Any]:
    """The instance's setting overrides, keyed by element id."""
    async with ctx.read() as session:
        inst = await _owned_instance(session, principal.account_id, instanceId)
    return inst.overrides


@router.patch(
    "/instances/{instanceId}/overrides",
    response_model=dict[str, dict[str, Any]],
    summary="Change an instance's overrides",
)
async def patch_overrides(
    instanceId: Id,
    principal: Manager,
    ctx: Ctx,
    request: Request,
    body: Annotated[dict[str, Any], Body(examples=[{"outputstream-1": {"destinations": ["id"]}}])],
) -> dict[str, Any]:
    """Deep-merge per element and per setting (``null`` drops one override), validate like a
    configuration, and apply to the running instance within a second (a new destination list,
    a switch's input). Answers the full merged overrides."""
    async with ctx.db.begin() as session:
        inst = await _owned_instance(session, principal.account_id, instanceId)
        config = await instances.configuration_of(session, inst)
        refs = await instances.references(session, account_id=principal.account_id)
        try:
            patch = configurations.check_override_shape(config.elements, body, "overrides")
            merged = configurations.merge_overrides(inst.overrides, patch)
            checked, _ = configurations.effective_elements(
                config.elements,
                merged,
                destinations=refs.destinations,
                png_files=refs.png_files,
                video_files=refs.video_files,
            )
        except ConfigError as exc:
            raise bad_config(exc) from None
        inst.overrides = checked
    if inst.status == instances.RUNNING:
        await get_runner(request).apply(instanceId)
    return checked


@router.put(
    "/instances/{instanceId}/outputs",
    response_model=InstanceOut,
    summary="Set an instance's outputs LIVE or OFFLINE",
)
async def put_instance_outputs(
    instanceId: Id,
    principal: Manager,
    ctx: Ctx,
    request: Request,
    body: Annotated[
        dict[str, Any],
        Body(examples=[{"outputs": "LIVE"}, {"outputstream-1": "OFFLINE"}]),
    ],
) -> InstanceOut:
    """``{"outputs": "LIVE"|"OFFLINE"}`` for every output, or ``{"outputstream-1": "LIVE"}``
    for one (several keys: each). Only a running or queued instance (409 once stopped)."""
    async with ctx.db.begin() as session:
        inst = await _owned_instance(session, principal.account_id, instanceId)
        _, elements = await instances.effective(session, instance=inst)
        outputs = configurations.output_ids(elements)
        if not body:
            raise ApiError(400, "Body must name 'outputs' or an outputstream element")
        changes: list[tuple[str | None, bool]] = []
        for key, value in body.items():
            if value not in ("LIVE", "OFFLINE"):
                raise ApiError(
                    400, f"Invalid field '{key}': must be 'LIVE' or 'OFFLINE'", field=key
                )
            if key != "outputs" and key not in outputs:
                raise ApiError(
                    400,
                    f"Invalid field '{key}': not an outputstream of this instance "
                    f"({', '.join(outputs)})",
                    field=key,
                )
            changes.append((None if key == "outputs" else key, value == "LIVE"))
        if inst.status == instances.STOPPED:
            raise ApiError(409, "Instance is stopped")
        for element_id, live in changes:
            inst.outputs_live = instances.outputs_after(inst, elements, live, element_id)
    runner = get_runner(request)
    for element_id, live in changes:
        await runner.set_outputs(instanceId, live, element_id)
    return await _one(ctx, request, principal.account_id, instanceId)


@router.put(
    "/configurations/{configurationId}/instances",
    response_model=InstanceList,
    summary="Set outputs of a configuration's running instances",
)
async def put_configuration_outputs(
    configurationId: Id, body: OutputsIn, principal: Manager, ctx: Ctx, request: Request
) -> InstanceList:
    """Set every output of every running instance of the configuration LIVE or OFFLINE;
    answers those instances."""
    live = body.outputs == "LIVE"
    async with ctx.db.begin() as session:
        await owned_configuration(session, principal.account_id, configurationId)
        rows = await instances.list_instances(
            session,
            account_id=principal.account_id,
            configuration_id=configurationId,
            status=instances.RUNNING,
        )
        for inst in rows:
            _, elements = await instances.effective(session, instance=inst)
            inst.outputs_live = instances.outputs_after(inst, elements, live, None)
    runner = get_runner(request)
    for inst in rows:
        await runner.set_outputs(inst.id, live, None)
    async with ctx.read() as session:
        fresh = await instances.list_instances(
            session,
            account_id=principal.account_id,
            configuration_id=configurationId,
            status=instances.RUNNING,
        )
        return InstanceList(instances=await _views(session, ctx, request, fresh))


# --- Usage ------------------------------------------------------------------------------------


@router.get("/usage", response_model=UsageOut, summary="Instance usage and cost")
async def usage(principal: Manager, ctx: Ctx) -> UsageOut:
    """Running time and cost of every instance of the account that ran, newest first (running
    ones: seconds so far and what is charged so far, at most one billing interval behind)."""
    async with ctx.read() as session:
        rows = await instances.list_instances(
            session, account_id=principal.account_id, recent_since_ms=0
        )
    now = now_ms()
    items = []
    for inst in sorted(
        (i for i in rows if i.started_ms is not None),
        key=lambda i: (i.started_ms or 0, i.seq),
        reverse=True,
    ):
        running = inst.status == instances.RUNNING
        items.append(
            UsageItem(
                instanceId=inst.id,
                configurationId=inst.configuration_id,
                name=inst.name,
                startedAt=inst.started_ms,
                stoppedAt=inst.stopped_ms,
                seconds=instance_billing.running_seconds(inst, now) if running else inst.seconds,
                costSats=inst.cost_sats,
            )
        )
    return UsageOut(usage=items)
