"""The v1 dialect's resources: destinations, files, templates and configurations (V1.md)."""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Path, Request, Response, UploadFile
from fastapi.types import DecoratedCallable
from sqlalchemy.ext.asyncio import AsyncSession

from simulcast.control.api.deps import Ctx, Manager
from simulcast.control.api.errors import ApiError, found_or_404
from simulcast.control.db.models import V1Configuration, V1File
from simulcast.control.instance_runner import InstanceRunner
from simulcast.control.media_probe import ProbeError, probe
from simulcast.control.schemas.common import ERRORS
from simulcast.control.schemas.v1 import (
    ConfigurationIn,
    ConfigurationList,
    ConfigurationOut,
    ElementOut,
    FileList,
    FileOut,
    TemplateList,
    TemplateOut,
    V1DestinationIn,
    V1DestinationList,
    V1DestinationOut,
)
from simulcast.control.services import configurations, files, instances, v1_destinations
from simulcast.control.services.configurations import ConfigError
from simulcast.control.services.destinations import DestinationError
from simulcast.control.timeutil import now_ms

router = APIRouter(prefix="/api/v1", tags=["v1"], responses=ERRORS)

Id = Annotated[str, Path(min_length=1, max_length=40)]
NO_CONTENT: dict[int | str, dict[str, Any]] = {204: {"description": "Done"}}


def no_content_delete(
    router: APIRouter, path: str, summary: str
) -> Callable[[DecoratedCallable], DecoratedCallable]:
    """``router.delete`` for a route that answers 204 with no body."""
    return router.delete(
        path, status_code=204, response_class=Response, responses=NO_CONTENT, summary=summary
    )


def get_runner(request: Request) -> InstanceRunner:
    """The instance runner the composition root attached to the app."""
    runner: InstanceRunner = request.app.state.instance_runner
    return runner


def bad_config(exc: ConfigError, prefix: str = "") -> ApiError:
    """A 400 naming the element and field of a configuration error."""
    field = prefix + exc.field
    return ApiError(400, f"Invalid field '{field}': {exc}", field=field)


# --- Destinations -----------------------------------------------------------------------------


def _destination_out(row: Any) -> V1DestinationOut:
    return V1DestinationOut(id=row.id, name=row.name, platform=row.platform, url=row.masked_url)


@router.get("/destinations", response_model=V1DestinationList, summary="List destinations")
async def list_destinations(principal: Manager, ctx: Ctx) -> V1DestinationList:
    """The account's saved destinations (URLs masked, keys never shown)."""
    async with ctx.read() as session:
        rows = await v1_destinations.list_for(session, account_id=principal.account_id)
    return V1DestinationList(destinations=[_destination_out(r) for r in rows])


@router.post(
    "/destinations", response_model=V1DestinationOut, status_code=201, summary="Add a destination"
)
async def create_destination(
    body: V1DestinationIn, principal: Manager, ctx: Ctx, request: Request
) -> V1DestinationOut:
    """Save an RTMP/RTMPS destination (``key`` is appended to ``url`` as OBS does); the URL
    is sealed at rest and shown masked past the app path."""
    box = get_runner(request).box
    async with ctx.db.begin() as session:
        try:
            row = await v1_destinations.create(
                session,
                box=box,
                account_id=principal.account_id,
                name=body.name,
                url=body.url,
                key=body.key,
            )
        except DestinationError as exc:
            field = "url" if exc.field.startswith("config.url") else exc.field.split(".")[-1]
            raise ApiError(400, f"Invalid field '{field}': {exc}", field=field) from None
    return _destination_out(row)


@no_content_delete(router, "/destinations/{id}", "Delete a destination")
async def delete_destination(id: Id, principal: Manager, ctx: Ctx) -> Response:
    """Delete a destination; 409 while a running or queued instance sends to it."""
    async with ctx.db.begin() as session:
        row = found_or_404(
            await v1_destinations.get(session, account_id=principal.account_id, destination_id=id),
            "Destination",
        )
        users = await instances.in_use(session, account_id=principal.account_id, destination_id=id)
        if users:
            raise ApiError(
                409,
                f"Destination is in use by instance {users[0].id} ({users[0].status}); "
                "stop it or change its destinations first",
            )
        row.deleted_ms = now_ms()
    return Response(status_code=204)


# --- Files ------------------------------------------------------------------------------------


def _file_out(row: V1File) -> FileOut:
    p = row.probe
    return FileOut(
        id=row.id,
        name=row.name,
        kind=row.kind,
        sizeBytes=row.size_bytes,
        createdAt=row.created_ms,
        container=p["container"],
        videoCodec=p["videoCodec"],
        audioCodec=p.get("audioCodec"),
        width=p["width"],
        height=p["height"],
        durationSeconds=p.get("durationSeconds"),
    )


@router.get("/files", response_model=FileList, summary="List uploaded files")
async def list_files(principal: Manager, ctx: Ctx) -> FileList:
    """The account's uploads and how much of its quota they use."""
    async with ctx.read() as session:
        rows = await files.list_for(session, account_id=principal.account_id)
    return FileList(
        files=[_file_out(r) for r in rows],
        usedBytes=sum(r.size_bytes for r in rows),
        quotaBytes=ctx.settings.files_quota_bytes,
    )


@router.post(
    "/files",
    response_model=FileOut,
    status_code=201,
    summary="Upload an MP4 or PNG",
    responses={413: {"description": "Over the account's file quota"}},
)
async def upload_file(file: UploadFile, principal: Manager, ctx: Ctx) -> FileOut:
    """Upload (multipart, field ``file``) an MP4 (H.264/HEVC, AAC) for video players or a PNG
    for failover images. Every upload is probed; what cannot play is refused with 400 naming
    the reason. Over the account's quota: 413."""
    settings = ctx.settings
    async with ctx.read() as session:
        used = await files.used_bytes(session, account_id=principal.account_id)
    room = settings.files_quota_bytes - used
    size = file.size if file.size is not None else 0
    if size > room:
        raise ApiError(
            413,
            f"File quota exceeded: {size} bytes do not fit in the {max(0, room)} bytes left "
            f"of {settings.files_quota_bytes}",
        )
    if size == 0:
        raise ApiError(400, "Invalid field 'file': the file is empty", field="file")
    file_id = files.new_id()
    folder = files.directory(settings, principal.account_id)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / file_id
    try:
        with target.open("wb") as out:
            shutil.copyfileobj(file.file, out, 1024 * 1024)
        try:
            found = await probe(target, within=settings.file_probe_timeout_seconds)
        except ProbeError as exc:
            raise ApiError(400, f"Invalid field 'file': {exc}", field="file") from None
        async with ctx.db.begin() as session:
            # Checked again in the transaction: two uploads racing for the last bytes.
            if await files.used_bytes(session, account_id=principal.account_id) + size > (
                settings.files_quota_bytes
            ):
                raise ApiError(413, "File quota exceeded")
            row = files.record(
                session,
                file_id=file_id,
                account_id=principal.account_id,
                name=file.filename or file_id,
                size=size,
                probe=found.as_dict(),
            )
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            target.unlink()
        raise
    return _file_out(row)


@no_content_delete(router, "/files/{id}", "Delete a file")
async def delete_file(id: Id, principal: Manager, ctx: Ctx) -> Response:
    """Delete an uploaded file (instances that name it fail to start until changed)."""
    async with ctx.db.begin() as session:
        row = found_or_404(
            await files.get(session, account_id=principal.account_id, file_id=id), "File"
        )
        files.delete(ctx.settings, row)
    return Response(status_code=204)


# --- Templates and configurations -------------------------------------------------------------


def _elements_out(elements: list[dict[str, Any]]) -> list[ElementOut]:
    return [ElementOut(**e) for e in elements]


@router.get("/templates", response_model=TemplateList, summary="List templates")
async def list_templates(principal: Manager) -> TemplateList:
    """Ready-made configurations: copy one with ``POST /api/v1/configurations {"template"}``."""
    return TemplateList(
        templates=[
            TemplateOut(name=name, description=desc, elements=_elements_out(elements))
            for name, (desc, elements) in configurations.TEMPLATES.items()
        ]
    )


def configuration_out(row: V1Configuration) -> ConfigurationOut:
    """The v1 shape of a stored configuration."""
    return ConfigurationOut(
        id=row.id,
        name=row.name,
        createdAt=row.created_ms,
        updatedAt=row.updated_ms,
        elements=_elements_out(row.elements),
    )


async def owned_configuration(
    session: AsyncSession, account_id: int, configuration_id: str
) -> V1Configuration:
    """The account's configuration, or a 404 (another account's is indistinguishable)."""
    row = await instances.get_configuration(
        session, account_id=account_id, configuration_id=configuration_id
    )
    return found_or_404(row, "Configuration")


async def _checked(
    session: AsyncSession, account_id: int, body: ConfigurationIn
) -> tuple[str, list[dict[str, Any]]]:
    """The name and validated elements of a configuration body."""
    if body.template is not None:
        elements: Any = configurations.template(body.template)
        if elements is None:
            names = ", ".join(configurations.TEMPLATES)
            raise ApiError(
                400,
                f"Invalid field 'template': no template {body.template!r} (known: {names})",
                field="template",
            )
        name = body.name or body.template
    else:
        if body.elements is None:
            raise ApiError(400, "Invalid field 'elements': required", field="elements")
        elements, name = body.elements, body.name or "Untitled configuration"
    refs = await instances.references(session, account_id=account_id)
    try:
        checked = configurations.validate_elements(
            elements,
            destinations=refs.destinations,
            png_files=refs.png_files,
            video_files=refs.video_files,
        )
    except ConfigError as exc:
        raise bad_config(exc, "elements." if not exc.field.startswith("elements") else "") from None
    return name, checked


@router.get("/configurations", response_model=ConfigurationList, summary="List configurations")
async def list_configurations(principal: Manager, ctx: Ctx) -> ConfigurationList:
    """The account's configurations."""
    async with ctx.read() as session:
        rows = await instances.list_configurations(session, account_id=principal.account_id)
    return ConfigurationList(configurations=[configuration_out(r) for r in rows])


@router.post(
    "/configurations",
    response_model=ConfigurationOut,
    status_code=201,
    summary="Create a configuration",
)
async def create_configuration(
    body: ConfigurationIn, principal: Manager, ctx: Ctx
) -> ConfigurationOut:
    """Save a configuration (``name`` + ``elements``), or copy a template (``template``).

    Validated when saved: unknown types or settings, dangling or cyclic ``inputs``, more than
    6 destinations on an output, and the processing elements and settings this server does not
    have yet are refused with 400 naming the element and the field."""
    async with ctx.db.begin() as session:
        name, elements = await _checked(session, principal.account_id, body)
        now = now_ms()
        row = V1Configuration(
            id=instances.new_id("cfg"),
            account_id=principal.account_id,
            name=name,
            elements=elements,
            created_ms=now,
            updated_ms=now,
        )
        session.add(row)
    return configuration_out(row)


@router.get(
    "/configurations/{configurationId}",
    response_model=ConfigurationOut,
    summary="Fetch a configuration",
)
async def get_configuration(configurationId: Id, principal: Manager, ctx: Ctx) -> ConfigurationOut:
    """One configuration."""
    async with ctx.read() as session:
        return configuration_out(
            await owned_configuration(session, principal.account_id, configurationId)
        )


@router.put(
    "/configurations/{configurationId}",
    response_model=ConfigurationOut,
    summary="Replace a configuration",
)
async def put_configuration(
    configurationId: Id, body: ConfigurationIn, principal: Manager, ctx: Ctx
) -> ConfigurationOut:
    """Replace a configuration's name and elements (validated as on create). Running
    instances keep what they run; they use the new elements from their next (re)start."""
    async with ctx.db.begin() as session:
        row = await owned_configuration(session, principal.account_id, configurationId)
        name, elements = await _checked(session, principal.account_id, body)
        row.name = body.name or row.name if body.template is None else name
        row.elements = elements
        row.updated_ms = now_ms()
    return configuration_out(row)


@no_content_delete(router, "/configurations/{configurationId}", "Delete a configuration")
async def delete_configuration(configurationId: Id, principal: Manager, ctx: Ctx) -> Response:
    """Delete a configuration; 409 while it has running or queued instances."""
    async with ctx.db.begin() as session:
        row = await owned_configuration(session, principal.account_id, configurationId)
        active = [
            i
            for i in await instances.list_instances(
                session, account_id=principal.account_id, configuration_id=row.id
            )
            if i.status in instances.ACTIVE
        ]
        if active:
            raise ApiError(
                409,
                f"Configuration has {len(active)} running or queued instance(s); "
                "stop them first (DELETE /api/v1/configurations/{id}/instances)",
            )
        row.deleted_ms = now_ms()
    return Response(status_code=204)
