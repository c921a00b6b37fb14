"""The fleet of media nodes: ``GET /api/admin/nodes`` for operators, and API nodes' HLS
redirect to the media node that owns a stream."""

from __future__ import annotations

from fastapi import APIRouter, Response
from pydantic import BaseModel, Field
from starlette.types import ASGIApp, Receive, Scope, Send

from simulcast.control.api.deps import Admin, Ctx
from simulcast.control.api.errors import ApiError, error_response
from simulcast.control.context import ControlContext
from simulcast.control.fleet import list_nodes
from simulcast.control.schemas.common import ERRORS
from simulcast.control.services import playback
from simulcast.control.timeutil import now_ms

router = APIRouter(prefix="/api", tags=["Fleet"], responses=ERRORS)


class NodeOut(BaseModel):
    """One media node and its heartbeat lease."""

    id: str
    state: str = Field(description="live (lease held), expired (not yet swept) or lost")
    rtmpUrl: str
    hlsUrl: str
    slots: int = Field(description="Instances it may run at once")
    load: int = Field(description="Live sessions plus running instances at its last heartbeat")
    startedAt: int
    lastHeartbeatAt: int
    leaseExpiresAt: int
    lostAt: int | None


@router.get("/admin/nodes", response_model=list[NodeOut], summary="List media nodes")
async def nodes(_principal: Admin, ctx: Ctx) -> list[NodeOut]:
    """Operator only: every media node registered in the fleet, with its lease and load.

    A single-process server (``--role all``) registers no node and answers ``[]``.
    """
    now = now_ms()
    async with ctx.read() as session:
        rows = await list_nodes(session)
    return [
        NodeOut(
            id=n.id,
            state="lost"
            if n.lost_ms is not None
            else ("live" if n.lease_expires_ms >= now else "expired"),
            rtmpUrl=n.rtmp_url,
            hlsUrl=n.hls_url,
            slots=n.slots,
            load=n.load,
            startedAt=n.started_ms,
            lastHeartbeatAt=n.heartbeat_ms,
            leaseExpiresAt=n.lease_expires_ms,
            lostAt=n.lost_ms,
        )
        for n in rows
    ]


class HlsRedirect:
    """On API nodes: ``/hls/{playbackToken}/...`` answers 307 to the same path on the media
    node that owns the stream's live session (its advertised HLS URL), query kept, so an
    ``hlsUrl`` works whichever node the viewer reaches. Not live: 404 as a media node would."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        parts = path.split("/")
        if len(parts) < 4 or parts[1] != "hls" or not parts[2]:
            await self.app(scope, receive, send)
            return
        ctx: ControlContext = scope["app"].state.ctx
        async with ctx.read() as session:
            base = await playback.owner_hls_url(session, token=parts[2])
        if base is None:
            response: Response = error_response(ApiError(404, "Stream is not live"))
        else:
            query = scope.get("query_string", b"").decode("latin-1")
            location = base + path + (f"?{query}" if query else "")
            headers = {"Location": location}
            if ctx.settings.cors_origins.strip() == "*":
                # Players in a browser follow a cross-origin redirect only with CORS on it.
                headers["Access-Control-Allow-Origin"] = "*"
            response = Response(status_code=307, headers=headers)
        await response(scope, receive, send)
