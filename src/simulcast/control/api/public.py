"""Public endpoints: embed a stream and track its cost (any key, ``pk_`` included)."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Query, Request

from simulcast import __version__
from simulcast.control.api.deps import AnyKey, Ctx
from simulcast.control.api.errors import ApiError, not_found
from simulcast.control.api.hls_route import Served
from simulcast.control.api.identity import extract_credential
from simulcast.control.api.urls import BaseUrl
from simulcast.control.api.views import hls_path
from simulcast.control.context import ControlContext
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
from simulcast.control.services import pricing, public_status
from simulcast.control.services.auth import Principal
from simulcast.control.timeutil import hour_start, now_ms
from simulcast.settings import Settings

router = APIRouter(prefix="/api/public", tags=["Public"], responses=ERRORS)


async def _stored_status(
    ctx: ControlContext, principal: Principal, stream_id: int | None, bucket: int, flushes: int
) -> public_status.StatusFacts:
    """The stored facts behind a status answer, memoized for a second.

    Viewers' pages poll this endpoint; a second of staleness costs nothing there and keeps the
    database out of the hot path. Live media state and unflushed byte counts are read fresh.
    """
    # Keyed on the bandwidth flushes too: a memo from before a flush would miss the bytes it
    # moved from the counter to the database (the used figure would dip until it expired).
    key = (principal.account_id, principal.destination_id, stream_id, bucket, flushes)

    async def load() -> public_status.StatusFacts:
        async with ctx.read() as session:
            facts = await public_status.status_facts(
                session, principal=principal, stream_id=stream_id, hour_start=bucket
            )
        if facts is None:  # raised, not cached: a stream made a moment later is seen at once
            if principal.kind == "pk":
                raise ApiError(401, "Invalid API key or destination disabled")
            raise not_found("Stream")
        return facts

    facts = await ctx.status_cache.get_or_load(key, load)
    assert isinstance(facts, public_status.StatusFacts)
    return facts


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
    served: Served,
    base_url: BaseUrl,
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
    facts = await _stored_status(ctx, principal, streamId, bucket, served.flushes)
    stream, hosted, live = facts.stream, facts.hosted, facts.live
    used = facts.flushed_bytes + served.unflushed_bytes(
        account_id=principal.account_id, hour_start=bucket
    )
    media = ctx.engine.session(stream.id) if live else None
    output = media.outputs.get(hosted.id) if media and hosted else None
    dvr_max = ctx.settings.hls_dvr_max_seconds
    window = int(hosted.config.get("dvrWindowSeconds", dvr_max)) if hosted else 0
    hls_url = None
    if live and hosted and hosted.playback_token:
        hls_url = base_url + hls_path(hosted.playback_token)
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
            maxWindowSeconds=window if hosted else dvr_max,
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
            INSTANCE_SATS_PER_HOUR=s.instance_sats_per_hour,
        ),
        version=__version__,
        timestamp=int(time.time()),
    )


@router.get("/streams/active/cost", response_model=ActiveCost, summary="Cost of live streams")
async def active_cost(principal: AnyKey, ctx: Ctx) -> ActiveCost:
    """Sats charged so far to each live session (a ``pk_`` key sees its own stream only)."""
    async with ctx.read() as session:
        costs = await public_status.live_costs(session, settings=ctx.settings, principal=principal)
    now = now_ms()
    items = []
    for cost in costs:
        elapsed_s = max(0, now - cost.session.started_ms) // 1000
        items.append(
            ActiveStreamCost(
                sessionId=cost.session.session_id,
                streamKeyId=cost.session.stream_id,
                label=cost.label,
                streamKeyLabel=cost.label,
                startedAt=cost.session.started_ms,
                durationMinutes=elapsed_s // 60,
                durationSeconds=elapsed_s % 60,
                totalCharged=cost.charged_sats,
                ratePerMinute=cost.rate_per_minute,
            )
        )
    return ActiveCost(
        hasActiveStream=bool(items),
        totalCost=sum(item.totalCharged for item in items),
        streams=items,
    )
