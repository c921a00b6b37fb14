"""Self-hosted HLS playback: ``/hls/{playbackToken}/index.m3u8`` and its segments.

A viewer authenticates with the destination's ``pk_`` key (or an account-wide credential of the
owning account). The playlist's URIs carry the same credential as a query suffix, so players that
cannot add headers (VLC, ffmpeg, a plain ``<video>``) fetch segments too. In ``testing`` mode all
viewers of a destination share ``hls_viewer_requests_per_minute``; every byte sent is metered.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Protocol
from urllib.parse import quote

from fastapi import APIRouter, Depends, Request, Response
from sqlalchemy import select
from starlette.types import ASGIApp, Receive, Scope, Send

from simulcast.control.api.deps import (
    INVALID_KEY,
    MISSING_KEY,
    extract_credential,
    get_context,
    resolve_principal,
)
from simulcast.control.api.errors import ApiError, error_response
from simulcast.control.bandwidth_meter import BandwidthMeter
from simulcast.control.context import ControlContext, TtlCache
from simulcast.control.db.models import Destination
from simulcast.control.schemas.common import ErrorBody
from simulcast.control.services.auth import Principal

router = APIRouter(prefix="/hls", tags=["HLS playback"])

PLAYLIST = "index.m3u8"
_TOKEN = re.compile(r"[A-Za-z0-9_-]{8,64}")
_FILE = re.compile(r"[0-9a-f]{8}-(?:init\d{1,9}\.mp4|\d{1,12}\.m4s)")
_RANGE = re.compile(r"bytes=(\d{0,15})-(\d{0,15})")
_MAX_QUERY = 2048
_TARGET_CACHE_SECONDS = 5.0
_PLAYLIST_TYPE = "application/vnd.apple.mpegurl"
_SEGMENT_TYPE = "video/mp4"
_NOT_LIVE = "Stream is not live"


class PlaybackChannel(Protocol):
    """What serving needs of one destination's live HLS state."""

    def playlist(self, uri_suffix: str = "") -> str:
        """The media playlist with ``uri_suffix`` on every URI."""
        ...

    async def read(self, name: str) -> bytes | None:
        """An init or media segment, or ``None`` if it is not (or no longer) there."""
        ...


class PlaybackIndex(Protocol):
    """The media plane's index of live HLS channels (narrow, so control never imports it)."""

    def live_channel(self, destination_id: int) -> PlaybackChannel | None:
        """The channel of a destination whose session is live."""
        ...


@dataclass(frozen=True, slots=True)
class _Target:
    destination_id: int
    account_id: int
    testing: bool


@dataclass
class HlsPlayback:
    """Serving state: the channel index, the meter, and a short cache of token lookups."""

    index: PlaybackIndex
    meter: BandwidthMeter
    _targets: TtlCache[str, _Target | None] = field(
        default_factory=lambda: TtlCache(ttl=_TARGET_CACHE_SECONDS, max_entries=10_000)
    )

    async def target(self, ctx: ControlContext, token: str) -> _Target | None:
        """The enabled self-hosted destination with this playback token (cached briefly)."""

        async def load() -> _Target | None:
            async with ctx.read() as session:
                row = (
                    await session.execute(
                        select(Destination.id, Destination.account_id, Destination.config).where(
                            Destination.playback_token == token,
                            Destination.enabled.is_(True),
                            Destination.deleted_ms.is_(None),
                        )
                    )
                ).first()
            if row is None:
                return None
            mode = (row.config or {}).get("mode", "testing")
            return _Target(row.id, row.account_id, mode != "production")

        return await self._targets.get_or_load(token, load)


def get_playback(request: Request) -> HlsPlayback:
    """The playback state the composition root attached to the app."""
    playback: HlsPlayback = request.app.state.hls_playback
    return playback


async def get_meter(request: Request) -> BandwidthMeter:
    """The bandwidth meter, for endpoints that report usage (add its unflushed counts)."""
    return get_playback(request).meter


Meter = Annotated[BandwidthMeter, Depends(get_meter)]
"""The bandwidth meter as a dependency."""


class _MeteredResponse(Response):
    """Counts the body toward bandwidth once it was handed to the server (not on disconnect)."""

    def __init__(self, *args: object, on_sent: Callable[[int], None], **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._on_sent = on_sent

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await super().__call__(scope, receive, send)
        self._on_sent(len(self.body))


@router.api_route(
    "/{token}/{name}",
    methods=["GET", "HEAD"],
    summary="HLS playlist or segment",
    response_class=Response,
    responses={
        200: {"content": {_PLAYLIST_TYPE: {}, _SEGMENT_TYPE: {}}},
        206: {"description": "Partial segment (Range)"},
        401: {"model": ErrorBody, "description": "Missing or invalid credential"},
        403: {"model": ErrorBody, "description": "The key is not for this stream"},
        404: {"model": ErrorBody, "description": "Unknown token or file, or not live"},
        414: {"model": ErrorBody, "description": "Query string too long"},
        416: {"model": ErrorBody, "description": "Range not satisfiable"},
        429: {"model": ErrorBody, "description": "Testing mode: shared viewer limit reached"},
    },
)
async def hls_file(token: str, name: str, request: Request) -> Response:
    """Serve ``index.m3u8`` or one init/media segment of a live self-hosted destination.

    Credentials as everywhere (``X-API-Key``, Bearer, ``?apiKey=``, ``?key=``); segments honour
    a single ``Range``. 404 when the stream is not live or the segment left the DVR window.
    """
    is_playlist = name == PLAYLIST
    if not _TOKEN.fullmatch(token) or not (is_playlist or _FILE.fullmatch(name)):
        raise ApiError(404, "Not found")
    if len(request.scope.get("query_string", b"")) > _MAX_QUERY:
        raise ApiError(414, "Query string too long")
    ctx = get_context(request)
    playback = get_playback(request)
    principal, credential = await _authenticate(ctx, request)
    target = await playback.target(ctx, token)
    if target is None:
        raise ApiError(404, "Stream not found")
    if not _may_watch(principal, target):
        raise ApiError(403, "This API key does not grant access to this stream")
    headers = await _admit(ctx, target)
    channel = playback.index.live_channel(target.destination_id)
    if channel is None:
        raise ApiError(404, _NOT_LIVE)
    head = request.method == "HEAD"

    def on_sent(nbytes: int) -> None:
        playback.meter.add(
            account_id=target.account_id, destination_id=target.destination_id, nbytes=nbytes
        )

    if is_playlist:
        body = channel.playlist(_uri_suffix(request, principal, credential)).encode()
        headers["Cache-Control"] = "no-cache"
        return _respond(body, 200, _PLAYLIST_TYPE, headers, head, on_sent)
    data = await channel.read(name)
    if data is None:
        raise ApiError(404, "Segment not found (it may have left the DVR window)")
    headers["Cache-Control"] = "public, max-age=31536000, immutable"
    headers["Accept-Ranges"] = "bytes"
    span = _byte_range(request.headers.get("range"), len(data))
    if span is None:
        return _respond(data, 200, _SEGMENT_TYPE, headers, head, on_sent)
    start, end = span
    headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
    return _respond(data[start : end + 1], 206, _SEGMENT_TYPE, headers, head, on_sent)


async def _authenticate(ctx: ControlContext, request: Request) -> tuple[Principal, str]:
    credential = extract_credential(request)
    if not credential:
        raise ApiError(401, MISSING_KEY)
    principal = await resolve_principal(ctx, credential)
    if principal is None:
        raise ApiError(401, INVALID_KEY)
    return principal, credential


def _may_watch(principal: Principal, target: _Target) -> bool:
    if principal.kind == "pk":
        return principal.destination_id == target.destination_id
    return principal.account_id == target.account_id


async def _admit(ctx: ControlContext, target: _Target) -> dict[str, str]:
    """Testing mode: one shared request budget per destination. Returns headers to send."""
    if not target.testing:
        return {}
    decision = await ctx.limiter.hit(
        f"hls:{target.destination_id}", ctx.settings.hls_viewer_requests_per_minute
    )
    if not decision.allowed:
        raise ApiError(
            429,
            f"Rate limit exceeded. Maximum {decision.limit} requests per minute "
            "(testing mode; switch the destination to production for unlimited viewers).",
            headers=decision.headers(),
            retryAfter=decision.retry_after,
        )
    return decision.headers()


def _uri_suffix(request: Request, principal: Principal, credential: str) -> str:
    """The query suffix for the playlist's URIs: the credential the viewer used, same name.

    An account-wide credential sent in a header stays out of URIs (that client sends headers).
    """
    query = request.query_params
    if query.get("apiKey") == credential:
        return "?apiKey=" + quote(credential, safe="")
    if query.get("key") == credential:
        return "?key=" + quote(credential, safe="")
    if principal.kind == "pk":
        return "?apiKey=" + quote(credential, safe="")
    return ""


def _byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The inclusive byte span of a single-range ``Range`` header; ``None`` for the whole body.

    Multiple ranges or another unit are ignored (the whole body is a valid answer); a range that
    matches no byte is 416.
    """
    if not header:
        return None
    match = _RANGE.fullmatch(header.strip())
    if match is None or (not match[1] and not match[2]):
        return None
    if match[1]:
        start = int(match[1])
        end = min(int(match[2]), size - 1) if match[2] else size - 1
        if start >= size or end < start:
            raise _unsatisfiable(size)
    else:
        suffix = int(match[2])
        if suffix == 0 or size == 0:
            raise _unsatisfiable(size)
        start, end = max(0, size - suffix), size - 1
    return start, end


def _unsatisfiable(size: int) -> ApiError:
    headers = {"Content-Range": f"bytes */{size}"}
    return ApiError(416, "Requested range not satisfiable", headers=headers)


def _respond(
    body: bytes,
    status: int,
    media_type: str,
    headers: dict[str, str],
    head: bool,
    on_sent: Callable[[int], None],
) -> Response:
    if head:
        # HEAD: same headers, no body, nothing metered.
        headers["Content-Length"] = str(len(body))
        return Response(b"", status, headers, media_type)
    return _MeteredResponse(body, status, headers, media_type, on_sent=on_sent)


class HlsFastPath:
    """ASGI middleware serving ``GET``/``HEAD /hls/{token}/{name}`` ahead of the full stack.

    Players fetch a playlist every target duration and a segment per segment: the hottest
    route. The handler above needs no dependency injection, so it runs here directly, skipping
    routing and the generic middlewares (it adds its own CORS headers). Everything else, CORS
    preflight included, goes on to the app; the route stays mounted for OpenAPI.
    """

    def __init__(self, app: ASGIApp, *, allow_origins: list[str], expose_headers: str) -> None:
        self.app = app
        self.any_origin = "*" in allow_origins
        self.origins = frozenset(allow_origins)
        self.expose_headers = expose_headers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        if (
            scope["type"] != "http"
            or scope["method"] not in ("GET", "HEAD")
            or not path.startswith("/hls/")
            or path.count("/") != 3
        ):
            await self.app(scope, receive, send)
            return
        _, _, token, name = path.split("/")
        request = Request(scope, receive)
        try:
            response = await hls_file(token, name, request)
        except ApiError as exc:
            response = error_response(exc)
        origin = request.headers.get("origin")
        if origin and (self.any_origin or origin in self.origins):
            response.headers["Access-Control-Allow-Origin"] = "*" if self.any_origin else origin
            response.headers["Access-Control-Expose-Headers"] = self.expose_headers
            if not self.any_origin:
                response.headers["Vary"] = "Origin"
        await response(scope, receive, send)
