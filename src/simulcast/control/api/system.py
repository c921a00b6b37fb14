"""Operational endpoints: health and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from simulcast.control.api.deps import Ctx
from simulcast.metrics import REGISTRY

router = APIRouter(tags=["System"])


@router.get("/healthz", summary="Liveness, database check and background jobs")
async def health(ctx: Ctx, request: Request) -> dict[str, object]:
    """``{"ok": true, "liveSessions": N, "jobs": [...]}`` when the server and its database
    answer; ``jobs`` is this node's background work (state, last pass, failures)."""
    return await ctx.health(request.app.state.background)


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=PlainTextResponse,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}},
)
async def metrics() -> PlainTextResponse:
    """Live sessions, bytes in and out per output kind, reconnects, drops."""
    return PlainTextResponse(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)
