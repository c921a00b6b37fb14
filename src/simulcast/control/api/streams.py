"""Management endpoints for streams and destinations (``sk_`` key or session token)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path
from sqlalchemy.ext.asyncio import AsyncSession

from simulcast.control.api.deps import Ctx, Manager
from simulcast.control.api.errors import ApiError, not_found
from simulcast.control.api.views import stream_summary, stream_view
from simulcast.control.db.models import Destination, Stream
from simulcast.control.schemas.common import ERRORS, Success, SuccessMessage
from simulcast.control.schemas.streams import (
    DestinationCreated,
    DestinationIn,
    DestinationOut,
    DestinationPatch,
    LimitsIn,
    ProtectionOut,
    StreamCreate,
    StreamCreated,
    StreamOut,
    StreamPatch,
    StreamSummary,
)
from simulcast.control.services import billing
from simulcast.control.services import streams as svc
from simulcast.control.services.destinations import DestinationError, output_spec
from simulcast.control.timeutil import now_ms

router = APIRouter(prefix="/api", tags=["Streams"], responses=ERRORS)  # type: ignore[arg-type]

StreamId = Annotated[int, Path(ge=1, le=2**53, description="Stream key ID")]
DestId = Annotated[int, Path(ge=1, le=2**53, description="Destination ID")]


async def _owned_stream(session: AsyncSession, account_id: int, stream_id: int) -> Stream:
    """The account's stream, or a 404 (another account's stream is indistinguishable)."""
    stream = await svc.get_stream(session, account_id=account_id, stream_id=stream_id)
    if stream is None:
        raise not_found("Stream")
    return stream


async def _add(
    session: AsyncSession, stream: Stream, body: DestinationIn, field_prefix: str = ""
) -> tuple[Destination, str | None]:
    """Add a destination; a bad body is a 400 naming the field (under ``field_prefix``)."""
    try:
        return await svc.add_destination(
            session,
            stream=stream,
            dest_type=body.type,
            config=body.config.model_dump(exclude_none=True),
            enabled=body.enabled,
        )
    except DestinationError as exc:
        raise _bad_destination(exc, field_prefix) from None


def _bad_destination(exc: DestinationError, prefix: str = "") -> ApiError:
    field = prefix + exc.field
    return ApiError(400, f"Invalid field '{field}': {exc}", field=field)


@router.get("/streams", response_model=list[StreamSummary], summary="List stream keys")
async def list_streams(principal: Manager, ctx: Ctx) -> list[StreamSummary]:
    """All stream keys of the account."""
    async with ctx.read() as session:
        rows = await svc.list_streams(session, account_id=principal.account_id)
        live = await svc.open_sessions(session, stream_ids=[s.id for s in rows])
    return [stream_summary(s, live.get(s.id)) for s in rows]


@router.post("/streams", response_model=StreamCreated, summary="Create a stream key")
async def create_stream(body: StreamCreate, principal: Manager, ctx: Ctx) -> StreamCreated:
    """Create a stream key, optionally with initial destinations (Unified Creation).

    Self-hosted destinations created here return their public ``apiKey`` once, in
    ``destinations``.
    """
    created = []
    async with ctx.db.begin() as session:
        stream = await svc.create_stream(session, account_id=principal.account_id, label=body.label)
        if body.protection is not None:
            svc.apply_protection(stream, body.protection.model_dump())
        for index, dest_in in enumerate(body.destinations or []):
            dest, key = await _add(session, stream, dest_in, f"destinations.{index}.")
            item: dict[str, object] = {"id": dest.id, "type": dest.type}
            if key:
                item.update(apiKey=key, playbackToken=dest.playback_token)
            created.append(item)
    return StreamCreated(
        id=stream.id,
        streamKey=stream.stream_key,
        label=stream.label,
        destinationsCount=len(created),
        destinations=created,
        protection=ProtectionOut(**svc.protection_view(stream)),
    )


async def _stream_out(ctx: Ctx, account_id: int, stream_id: int) -> StreamOut:
    async with ctx.read() as session:
        stream = await _owned_stream(session, account_id, stream_id)
        dests = await svc.list_destinations(session, stream_ids=[stream.id])
        live = (await svc.open_sessions(session, stream_ids=[stream.id])).get(stream.id)
    return stream_view(stream, live, ctx.engine.session(stream.id), dests, ctx.settings.base_url())


@router.get("/streams/{id}", response_model=StreamOut, summary="Get a stream")
async def get_stream(id: StreamId, principal: Manager, ctx: Ctx) -> StreamOut:
    """A stream with its limits, live session and destinations (with live output state)."""
    return await _stream_out(ctx, principal.account_id, id)


@router.patch("/streams/{id}", response_model=StreamOut, summary="Update a stream")
async def patch_stream(id: StreamId, body: StreamPatch, principal: Manager, ctx: Ctx) -> StreamOut:
    """Change a stream's label and/or disconnect protection (applies from the next session)."""
    async with ctx.db.begin() as session:
        stream = await _owned_stream(session, principal.account_id, id)
        if body.label is not None:
            stream.label = body.label
        if body.protection is not None:
            svc.apply_protection(stream, body.protection.model_dump())
    return await _stream_out(ctx, principal.account_id, id)


@router.delete("/streams/{id}", response_model=Success, summary="Delete a stream key")
async def delete_stream(id: StreamId, principal: Manager, ctx: Ctx) -> Success:
    """Delete a stream key (its live session, if any, is stopped first)."""
    await ctx.engine.stop(id, "stream_deleted")
    async with ctx.db.begin() as session:
        stream = await _owned_stream(session, principal.account_id, id)
        stream.deleted_ms = now_ms()
        for dest in await svc.list_destinations(session, stream_ids=[id]):
            await svc.delete_destination(session, destination=dest)
    ctx.forget_cached()
    return Success()


@router.get(
    "/streams/{id}/destinations",
    response_model=list[DestinationOut],
    summary="List a stream's destinations",
)
async def list_destinations(id: StreamId, principal: Manager, ctx: Ctx) -> list[DestinationOut]:
    """Destinations of a stream, URLs masked, with live output state while live."""
    return (await _stream_out(ctx, principal.account_id, id)).destinations


@router.post(
    "/streams/{id}/destinations",
    response_model=DestinationCreated,
    summary="Add a destination",
)
async def add_destination(
    id: StreamId, body: DestinationIn, principal: Manager, ctx: Ctx
) -> DestinationCreated:
    """Add a destination; if the stream is live, its output starts within a second."""
    async with ctx.db.begin() as session:
        stream = await _owned_stream(session, principal.account_id, id)
        dest, key = await _add(session, stream, body)
        await billing.destination_changed(session, settings=ctx.settings, destination=dest)
    spec = output_spec(dest.id, dest.type, dest.url, dest.config)
    if dest.enabled and spec is not None:
        await ctx.engine.add_output(stream.id, spec)
    return DestinationCreated(id=dest.id, apiKey=key, playbackToken=dest.playback_token)


@router.patch(
    "/streams/{id}/destinations/{destId}",
    response_model=DestinationOut,
    summary="Enable, disable or reconfigure a destination",
)
async def patch_destination(
    id: StreamId, destId: DestId, body: DestinationPatch, principal: Manager, ctx: Ctx
) -> DestinationOut:
    """Change ``enabled`` or ``config``; a live stream starts or stops the output at once."""
    async with ctx.db.begin() as session:
        dest = await svc.get_destination(
            session, account_id=principal.account_id, destination_id=destId, stream_id=id
        )
        if dest is None:
            raise not_found("Destination")
        try:
            svc.update_destination(
                dest,
                enabled=body.enabled,
                config=body.config.model_dump(exclude_none=True) if body.config else None,
            )
        except DestinationError as exc:
            raise _bad_destination(exc) from None
        if body.enabled is not None:
            await billing.destination_changed(session, settings=ctx.settings, destination=dest)
    ctx.forget_cached()
    await ctx.engine.remove_output(id, dest.id)
    spec = output_spec(dest.id, dest.type, dest.url, dest.config)
    if dest.enabled and spec is not None:
        await ctx.engine.add_output(id, spec)
    out = await _stream_out(ctx, principal.account_id, id)
    return next(d for d in out.destinations if d.id == dest.id)


async def _delete_destination(
    ctx: Ctx, account_id: int, destination_id: int, stream_id: int | None
) -> Success:
    async with ctx.db.begin() as session:
        dest = await svc.get_destination(
            session, account_id=account_id, destination_id=destination_id, stream_id=stream_id
        )
        if dest is None:
            raise not_found("Destination")
        await svc.delete_destination(session, destination=dest)
        await billing.destination_changed(session, settings=ctx.settings, destination=dest)
    ctx.forget_cached()
    await ctx.engine.remove_output(dest.stream_id, dest.id)
    return Success()


@router.delete(
    "/destinations/{id}", response_model=Success, summary="Delete a destination by its ID"
)
async def delete_destination(id: DestId, principal: Manager, ctx: Ctx) -> Success:
    """Delete a destination; a live stream stops that output within a second."""
    return await _delete_destination(ctx, principal.account_id, id, None)


@router.delete(
    "/streams/{id}/destinations/{destId}",
    response_model=Success,
    summary="Delete a destination of a stream",
)
async def delete_stream_destination(
    id: StreamId, destId: DestId, principal: Manager, ctx: Ctx
) -> Success:
    """Delete a destination, checking it belongs to that stream and account (else 404)."""
    return await _delete_destination(ctx, principal.account_id, destId, id)


@router.post("/streams/{id}/limits", response_model=Success, summary="Set session limits")
async def set_limits(id: StreamId, body: LimitsIn, principal: Manager, ctx: Ctx) -> Success:
    """Cap a session's spend and/or duration; ``null`` clears a limit. Unlocks a locked stream."""
    async with ctx.db.begin() as session:
        stream = await _owned_stream(session, principal.account_id, id)
        svc.apply_limits(stream, {k: getattr(body, k) for k in body.model_fields_set})
    return Success()


@router.post("/streams/{id}/stop", response_model=SuccessMessage, summary="Stop the live session")
async def stop_stream(id: StreamId, principal: Manager, ctx: Ctx) -> SuccessMessage:
    """End the live session: the publisher and every output are closed within a second."""
    async with ctx.read() as session:
        await _owned_stream(session, principal.account_id, id)
    if not await ctx.engine.stop(id, "stopped"):
        raise ApiError(409, "Stream is not live")
    return SuccessMessage(message="Stop signal sent")
