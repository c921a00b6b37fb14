"""Management endpoints for streams and destinations (``sk_`` key or session token)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path
from sqlalchemy.ext.asyncio import AsyncSession

from simulcast.control.api.deps import Ctx, Manager
from simulcast.control.api.errors import ApiError, found_or_404, with_message
from simulcast.control.api.urls import BaseUrl
from simulcast.control.api.views import stream_summary, stream_view
from simulcast.control.db.models import Destination, Stream
from simulcast.control.schemas.common import ERRORS, Success, SuccessMessage
from simulcast.control.schemas.keys import PublicKeyRotated
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
from simulcast.control.secretbox import SecretBox
from simulcast.control.services import archives, billing, credentials, sessions
from simulcast.control.services import streams as svc
from simulcast.control.services.destinations import DestinationError, Sealer, output_spec
from simulcast.control.timeutil import now_ms
from simulcast.engine import OutputSpec
from simulcast.settings import Settings

router = APIRouter(prefix="/api", tags=["Streams"], responses=ERRORS)

StreamId = Annotated[int, Path(ge=1, le=2**53, description="Stream key ID")]
DestId = Annotated[int, Path(ge=1, le=2**53, description="Destination ID")]


async def _owned_stream(session: AsyncSession, account_id: int, stream_id: int) -> Stream:
    """The account's stream, or a 404 (another account's stream is indistinguishable)."""
    stream = await svc.get_stream(session, account_id=account_id, stream_id=stream_id)
    return found_or_404(stream, "Stream")


async def _owned_destination(
    session: AsyncSession, account_id: int, destination_id: int, stream_id: int | None = None
) -> Destination:
    """The account's destination (of ``stream_id`` when given), or a 404."""
    dest = await svc.get_destination(
        session, account_id=account_id, destination_id=destination_id, stream_id=stream_id
    )
    return found_or_404(dest, "Destination")


def _sealer(settings: Settings) -> Sealer:
    """Seals destination secrets (a cloud archive's S3 secret) with the server's key."""
    return lambda secret: SecretBox.from_settings(settings).seal(secret)


async def _archive_spec(ctx: Ctx, dest: Destination, spec: OutputSpec) -> OutputSpec:
    """An archive output joining a live session gets its recording's row first (the row names
    the file); any other spec is returned as it is."""
    if spec.kind != "archive":
        return spec
    async with ctx.db.begin() as session:
        live = await sessions.live_session_of(session, stream_id=dest.stream_id)
        if live is None:
            return spec
        options = await archives.start_recording(
            session, settings=ctx.settings, live=live, destination=dest
        )
    return OutputSpec(dest.id, "archive", spec.url, {**spec.options, **options})


async def _start_output(ctx: Ctx, dest: Destination) -> None:
    """Start ``dest``'s output on its stream's session when it is enabled and of a kind the
    media plane runs (a stream that is not live starts it with its next session instead)."""
    spec = output_spec(dest.id, dest.type, dest.url, dest.config)
    if dest.enabled and spec is not None:
        await ctx.engine.add_output(dest.stream_id, await _archive_spec(ctx, dest, spec))


async def _add(
    session: AsyncSession,
    stream: Stream,
    body: DestinationIn,
    settings: Settings,
    field_prefix: str = "",
) -> tuple[Destination, str | None]:
    """Add a destination; a bad body is a 400 naming the field (under ``field_prefix``)."""
    try:
        return await svc.add_destination(
            session,
            stream=stream,
            dest_type=body.type,
            config=body.config.model_dump(exclude_none=True),
            enabled=body.enabled,
            seal=_sealer(settings),
            dvr_max_seconds=settings.hls_dvr_max_seconds,
        )
    except DestinationError as exc:
        raise _bad_destination(exc, field_prefix) from None


def _check_destination_count(count: int, settings: Settings) -> None:
    """A 400 naming ``destinations`` when a stream would hold more than the setting allows."""
    cap = settings.max_destinations_per_stream
    if count > cap:
        raise ApiError(
            400, f"Invalid field 'destinations': at most {cap} per stream", field="destinations"
        )


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
    _check_destination_count(len(body.destinations or []), ctx.settings)
    created = []
    async with ctx.db.begin() as session:
        stream = await svc.create_stream(session, account_id=principal.account_id, label=body.label)
        if body.protection is not None:
            svc.apply_protection(stream, body.protection.model_dump())
        stream.srt_passphrase = body.srtPassphrase
        for index, dest_in in enumerate(body.destinations or []):
            dest, key = await _add(session, stream, dest_in, ctx.settings, f"destinations.{index}.")
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
        srtPassphrase=stream.srt_passphrase,
    )


async def _stream_out(ctx: Ctx, account_id: int, stream_id: int, base_url: str) -> StreamOut:
    async with ctx.read() as session:
        stream = await _owned_stream(session, account_id, stream_id)
        dests = await svc.list_destinations(session, stream_ids=[stream.id])
        live = (await svc.open_sessions(session, stream_ids=[stream.id])).get(stream.id)
        errors = await archives.errors_of_session(session, session_pk=live.id) if live else {}
    return stream_view(stream, live, ctx.engine.session(stream.id), dests, base_url, errors)


@router.get("/streams/{id}", response_model=StreamOut, summary="Get a stream")
async def get_stream(id: StreamId, principal: Manager, ctx: Ctx, base_url: BaseUrl) -> StreamOut:
    """A stream with its limits, live session and destinations (with live output state)."""
    return await _stream_out(ctx, principal.account_id, id, base_url)


@router.patch("/streams/{id}", response_model=StreamOut, summary="Update a stream")
async def patch_stream(
    id: StreamId, body: StreamPatch, principal: Manager, ctx: Ctx, base_url: BaseUrl
) -> StreamOut:
    """Change a stream's label, disconnect protection and/or SRT passphrase (from the next
    session; ``srtPassphrase: null`` clears it)."""
    async with ctx.db.begin() as session:
        stream = await _owned_stream(session, principal.account_id, id)
        if body.label is not None:
            stream.label = body.label
        if body.protection is not None:
            svc.apply_protection(stream, body.protection.model_dump())
        if "srtPassphrase" in body.model_fields_set:
            stream.srt_passphrase = body.srtPassphrase
    return await _stream_out(ctx, principal.account_id, id, base_url)


@router.post("/streams/{id}/rotate-key", response_model=StreamOut, summary="Rotate a stream key")
async def rotate_stream_key(
    id: StreamId, principal: Manager, ctx: Ctx, base_url: BaseUrl
) -> StreamOut:
    """Replace the stream's RTMP key; answers the stream with its new ``streamKey``.

    A live session keeps running; the old key can neither start a session nor rejoin this one
    (disconnect protection and stream shift accept only the new key).
    """
    async with ctx.db.begin() as session:
        stream = await _owned_stream(session, principal.account_id, id)
        new_key = svc.rotate_stream_key(stream)
    await ctx.engine.rekey(id, new_key)
    return await _stream_out(ctx, principal.account_id, id, base_url)


@router.post(
    "/destinations/{id}/rotate-api-key",
    response_model=PublicKeyRotated,
    summary="Rotate a self-hosted destination's public key",
)
async def rotate_destination_key(id: DestId, principal: Manager, ctx: Ctx) -> PublicKeyRotated:
    """Issue a new ``pk_`` key (shown once); the old one is refused at once.

    The ``playbackToken`` and so the ``hlsUrl`` path stay the same: viewers keep playing.
    """
    async with ctx.db.begin() as session:
        dest = await _owned_destination(session, principal.account_id, id)
        if dest.type != "self-hosted":
            raise ApiError(400, "Only self-hosted destinations have an API key", field="id")
        key = await credentials.rotate_public_key(session, destination=dest)
    ctx.forget_cached()
    return PublicKeyRotated(apiKey=key)


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
async def list_destinations(
    id: StreamId, principal: Manager, ctx: Ctx, base_url: BaseUrl
) -> list[DestinationOut]:
    """Destinations of a stream, URLs masked, with live output state while live."""
    return (await _stream_out(ctx, principal.account_id, id, base_url)).destinations


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
        existing = await svc.list_destinations(session, stream_ids=[stream.id])
        _check_destination_count(len(existing) + 1, ctx.settings)
        dest, key = await _add(session, stream, body, ctx.settings)
        await billing.destination_changed(session, settings=ctx.settings, destination=dest)
    await _start_output(ctx, dest)
    return DestinationCreated(id=dest.id, apiKey=key, playbackToken=dest.playback_token)


@router.patch(
    "/streams/{id}/destinations/{destId}",
    response_model=DestinationOut,
    summary="Enable, disable or reconfigure a destination",
)
async def patch_destination(
    id: StreamId,
    destId: DestId,
    body: DestinationPatch,
    principal: Manager,
    ctx: Ctx,
    base_url: BaseUrl,
) -> DestinationOut:
    """Change ``enabled`` or ``config``; a live stream starts or stops the output at once."""
    async with ctx.db.begin() as session:
        dest = await _owned_destination(session, principal.account_id, destId, id)
        try:
            svc.update_destination(
                dest,
                enabled=body.enabled,
                config=body.config.model_dump(exclude_none=True) if body.config else None,
                seal=_sealer(ctx.settings),
                dvr_max_seconds=ctx.settings.hls_dvr_max_seconds,
            )
        except DestinationError as exc:
            raise _bad_destination(exc) from None
        if body.enabled is not None:
            await billing.destination_changed(session, settings=ctx.settings, destination=dest)
    ctx.forget_cached()
    await ctx.engine.remove_output(id, dest.id)
    await _start_output(ctx, dest)
    out = await _stream_out(ctx, principal.account_id, id, base_url)
    return next(d for d in out.destinations if d.id == dest.id)


async def _delete_destination(
    ctx: Ctx, account_id: int, destination_id: int, stream_id: int | None
) -> Success:
    async with ctx.db.begin() as session:
        dest = await _owned_destination(session, account_id, destination_id, stream_id)
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
        raise with_message(409, "Stream is not live")
    return SuccessMessage(message="Stop signal sent")
