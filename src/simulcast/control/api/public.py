"""Public endpoints: embed a stream and track its cost (any key, ``pk_`` included)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Query, Request
from sqlalchemy.ext.asyncio import AsyncSession

from simulcast import __version__
from simulcast.control.api.deps import AnyKey, Ctx, extract_credential
from simulcast.control.api.errors import ApiError, not_found
from simulcast.control.api.hls import Meter
from simulcast.control.api.views import hls_path
from simulcast.control.context import ControlContext
from simulcast.control.db.models import Destination, LiveSession, Stream
from simulcast.control.schemas.common import ERRORS
from simulcast.control.schemas.public import (
    ActiveCost,
    ActiveStreamCost,
    Bandwidth,
    Dvr,
    Pricing,
    PublicConfig,
    StreamStatus,
)
from simulcast.control.services import pricing, reports, streams, usage
from simulcast.control.services.auth import Principal
from simulcast.control.services.destinations import DVR_MAX_SECONDS
from simulcast.control.timeutil import hour_start, now_ms
from simulcast.settings import Settings

router = APIRouter(prefix="/api/public", tags=["Public"], responses=ERRORS)  # type: ignore[arg-type]


async def _target(
    session: AsyncSession, principal: Principal, stream_id: int | None
) -> tuple[Stream, Destination | None]:
    """The stream (and self-hosted destination) a status request is about.

    A ``pk_`` key names its own destination. An account-wide credential may pass ``streamId``;
    without it, the account's live stream (most recent first), else its newest stream.
    """
    if principal.kind == "pk":
        assert principal.stream_id is not None
        stream = await streams.get_stream(
            session, account_id=principal.account_id, stream_id=principal.stream_id
        )
        if stream is None:
            raise ApiError(401, "Invalid API key or destination disabled")
        dests = await streams.list_destinations(session, stream_ids=[stream.id])
        return stream, next((d for d in dests if d.id == principal.destination_id), None)
    if stream_id is not None:
        found = await streams.get_stream(
            session, account_id=principal.account_id, stream_id=stream_id
        )
        if found is None:
            raise not_found("Stream")
        stream = found
    else:
        all_streams = await streams.list_streams(session, account_id=principal.account_id)
        if not all_streams:
            raise not_found("Stream")
        live = await streams.open_sessions(session, stream_ids=[s.id for s in all_streams])
        live_streams = sorted(live.values(), key=lambda row: row.started_ms, reverse=True)
        by_id = {s.id: s for s in all_streams}
        stream = by_id[live_streams[0].stream_id] if live_streams else all_streams[-1]
    dests = await streams.list_destinations(session, stream_ids=[stream.id])
    hosted = next((d for d in dests if d.type == "self-hosted" and d.enabled), None)
    return stream, hosted


@dataclass(frozen=True, slots=True)
class _StoredStatus:
    stream: Stream
    hosted: Destination | None
    live: LiveSession | None
    flushed_bytes: int


async def _stored_status(
    ctx: ControlContext, principal: Principal, stream_id: int | None, bucket: int
) -> tuple[Stream, Destination | None, LiveSession | None, int]:
    """The stored facts behind a status answer, memoized for a second.

    Viewers' pages poll this endpoint; a second of staleness costs nothing there and keeps the
    database out of the hot path. Live media state and unflushed byte counts are read fresh.
    """
    key = (principal.account_id, principal.destination_id, stream_id, bucket)

    async def load() -> _StoredStatus:
        async with ctx.read() as session:
            stream, hosted = await _target(session, principal, stream_id)
            live = (await streams.open_sessions(session, stream_ids=[stream.id])).get(stream.id)
            used = await usage.hour_bytes(
                session, account_id=principal.account_id, hour_start=bucket
            )
        return _StoredStatus(stream, hosted, live, used)

    stored = await ctx.status_cache.get_or_load(key, load)
    assert isinstance(stored, _StoredStatus)
    return stored.stream, stored.hosted, stored.live, stored.flushed_bytes


def bandwidth_view(settings: Settings, used_bytes: int, bucket_start: int) -> Bandwidth:
    """The ``bandwidth`` object for one hour bucket."""
    usage_now = pricing.bandwidth_usage(settings, used_bytes)
    return Bandwidth(
        usedGB=usage_now.used_gb,
        limitGB=settings.bandwidth_limit_gb_per_hour,
        remainingGB=usage_now.remaining_gb,
        overageGB=usage_now.overage_gb,
        overageSats=usage_now.overage_sats,
        hourStart=bucket_start,
    )


@router.get("/stream/status", response_model=StreamStatus, summary="Stream status")
async def stream_status(
    principal: AnyKey,
    request: Request,
    ctx: Ctx,
    meter: Meter,
    streamId: Annotated[
        int | None,
        Query(ge=1, le=2**53, description="Account-wide keys only: which stream to report"),
    ] = None,
) -> StreamStatus:
    """Live/offline status, the HLS playback URL and this hour's bandwidth.

    ``hlsUrl`` carries the ``pk_`` key the request used, so it plays in any player; requests
    made with an account-wide key get the URL without a credential (never the ``sk_`` key).
    """
    now = time.time()
    bucket = hour_start(now)
    stream, hosted, live, used = await _stored_status(ctx, principal, streamId, bucket)
    used += meter.unflushed_bytes(account_id=principal.account_id, hour_start=bucket)
    media = ctx.engine.session(stream.id) if live else None
    output = media.outputs.get(hosted.id) if media and hosted else None
    window = int(hosted.config.get("dvrWindowSeconds", DVR_MAX_SECONDS)) if hosted else 0
    hls_url = None
    if live and hosted and hosted.playback_token:
        hls_url = ctx.settings.base_url() + hls_path(hosted.playback_token)
        credential = extract_credential(request)
        if principal.kind == "pk" and credential:
            hls_url += f"?apiKey={credential}"
    return StreamStatus(
        isLive=live is not None,
        hlsReady=bool(output and output.ready),
        hlsUrl=hls_url,
        streamKeyLabel=stream.label,
        label=stream.label,
        startedAt=live.started_ms // 1000 if live else None,
        playbackToken=hosted.playback_token if live and hosted else None,
        dvr=Dvr(
            enabled=bool(output and output.ready and window > 0),
            windowSeconds=int(output.window_seconds) if output else 0,
            maxWindowSeconds=window if hosted else DVR_MAX_SECONDS,
            availableFrom=(
                output.available_from_ms // 1000 if output and output.available_from_ms else None
            ),
        ),
        bandwidth=bandwidth_view(ctx.settings, used, bucket),
    )


@router.get("/config", response_model=PublicConfig, summary="Pricing configuration")
async def public_config(ctx: Ctx) -> PublicConfig:
    """Current prices and bandwidth allowance (no key needed)."""
    s = ctx.settings
    return PublicConfig(
        pricing=Pricing(
            BANDWIDTH_LIMIT_GB_PER_HOUR=s.bandwidth_limit_gb_per_hour,
            BANDWIDTH_OVERAGE_SATS_PER_GB=s.bandwidth_overage_sats_per_gb,
            COST_PER_PLATFORM=s.cost_per_platform,
            FREE_PLATFORMS=s.free_platforms,
        ),
        version=__version__,
        timestamp=int(time.time()),
    )


@router.get("/streams/active/cost", response_model=ActiveCost, summary="Cost of live streams")
async def active_cost(principal: AnyKey, ctx: Ctx) -> ActiveCost:
    """Sats charged so far to each live session (a ``pk_`` key sees its own stream only)."""
    async with ctx.read() as session:
        if principal.kind == "pk":
            assert principal.stream_id is not None
            stream_ids = [principal.stream_id]
        else:
            rows = await streams.list_streams(session, account_id=principal.account_id)
            stream_ids = [s.id for s in rows]
        live = await streams.open_sessions(session, stream_ids=stream_ids)
        charged = await reports.charged_by_session(
            session, session_pks=[row.id for row in live.values()]
        )
        dests = await streams.list_destinations(session, stream_ids=list(live))
        labels = {
            s.id: s.label
            for s in await streams.list_streams(session, account_id=principal.account_id)
        }
    now = now_ms()
    items = []
    for stream_id, row in sorted(live.items(), key=lambda kv: kv[1].started_ms):
        enabled = sum(1 for d in dests if d.stream_id == stream_id and d.enabled)
        elapsed_s = max(0, now - row.started_ms) // 1000
        items.append(
            ActiveStreamCost(
                sessionId=row.session_id,
                streamKeyId=stream_id,
                label=labels.get(stream_id, ""),
                streamKeyLabel=labels.get(stream_id, ""),
                startedAt=row.started_ms,
                durationMinutes=elapsed_s // 60,
                durationSeconds=elapsed_s % 60,
                totalCharged=charged.get(row.id, 0),
                ratePerMinute=pricing.rate_per_minute(ctx.settings, enabled),
            )
        )
    return ActiveCost(
        hasActiveStream=bool(items),
        totalCost=sum(item.totalCharged for item in items),
        streams=items,
    )
