"""Self-hosted HLS playback: ``/hls/{playbackToken}/index.m3u8`` and its segments.

A viewer authenticates with the destination's ``pk_`` key (or an account-wide credential of the
owning account). The playlist's URIs carry the same credential as a query suffix, so players that
cannot add headers (VLC, ffmpeg, a plain ``<video>``) fetch segments too. In ``testing`` mode all
viewers of a destination share ``hls_viewer_requests_per_minute`` playlist requests; the playlist's
URIs also carry a short-lived signed segment token (``st``), and segments fetched with a valid one
are served without a credential and not counted, so a viewer who got a playlist always gets its
segments. Every byte sent is counted (bandwidth_counter).
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from simulcast.codecs.hls import Readiness, ReloadRequest
from simulcast.control.api.errors import ApiError, error_response
from simulcast.control.api.identity import (
    extract_credential,
    get_context,
    principal_or_401,
    too_many,
)
from simulcast.control.bandwidth_counter import BandwidthCounter
from simulcast.control.context import ControlContext, TtlCache
from simulcast.control.secretbox import SecretBox
from simulcast.control.services import playback
from simulcast.control.services.auth import Principal
from simulcast.control.services.playback import PlaybackTarget

PLAYLIST = "index.m3u8"
_TOKEN = re.compile(r"[A-Za-z0-9_-]{8,64}")
_FILE = re.compile(r"[0-9a-f]{8}-(?:init\d{1,9}\.mp4|\d{1,12}(?:\.\d{1,6})?\.m4s)")
_RANGE = re.compile(r"bytes=(\d{0,15})-(\d{0,15})")
_MAX_QUERY = 2048
_TARGET_CACHE_SECONDS = 5.0
PLAYLIST_TYPE = "application/vnd.apple.mpegurl"
SEGMENT_TYPE = "video/mp4"
_NOT_LIVE = "Stream is not live"
SEGMENT_TOKEN = "st"
_SEGMENT_TOKEN_FORM = re.compile(r"([0-9]{1,12})\.([A-Za-z0-9_-]{22})")


class PlaybackChannel(Protocol):
    """What serving needs of one destination's live HLS state."""

    live: bool
    """False once the session ended (a waiting request then answers 404)."""

    @property
    def low_latency(self) -> bool:
        """Whether the playlist offers parts, blocking reload and delta updates."""
        ...

    @property
    def target_duration(self) -> float:
        """The segment target duration, seconds."""
        ...

    def playlist(self, uri_suffix: str = "", skip: bool = False) -> str:
        """The media playlist with ``uri_suffix`` on every URI (``skip``: a delta update)."""
        ...

    def readiness(self, request: ReloadRequest) -> Readiness:
        """Whether a blocking playlist request is answered now, after a wait, or never."""
        ...

    async def wait_for(self, request: ReloadRequest, within: float) -> bool:
        """Wait until the playlist satisfies ``request``; False on timeout or end of stream."""
        ...

    async def read(self, name: str) -> bytes | None:
        """An init or media segment or a part, or ``None`` if it is not (or no longer) there."""
        ...


class PlaybackIndex(Protocol):
    """The media plane's index of live HLS channels (narrow, so control never imports it)."""

    def live_channel(self, destination_id: int) -> PlaybackChannel | None:
        """The channel of a destination whose session is live."""
        ...


@dataclass(frozen=True, slots=True)
class SegmentTokens:
    """Signed, short-lived tokens binding a served playlist's segment URIs to one destination.

    ``{expires}.{signature}``: expiry in unix seconds, rounded up to the minute so consecutive
    playlists share one token (and one cached rendering); valid ``lifetime`` to ``lifetime``
    + 60 s. Signed with the server's key, so every node of a cluster accepts them.
    """

    box: SecretBox
    lifetime: int

    def issue(self, destination_id: int, now: float) -> str:
        """A token for the segments of ``destination_id``, valid from ``now``."""
        expires = math.ceil((now + self.lifetime) / 60) * 60
        return f"{expires}.{self.box.sign(f'hls-segment:{destination_id}:{expires}')}"

    def valid(self, token: str, destination_id: int, now: float) -> bool:
        """Whether ``token`` was issued for ``destination_id`` and has not expired."""
        match = _SEGMENT_TOKEN_FORM.fullmatch(token)
        if match is None or int(match[1]) < now:
            return False
        return self.box.verify(f"hls-segment:{destination_id}:{match[1]}", match[2])


@dataclass
class HlsPlayback:
    """Serving state: the channel index, the served-bytes counter, segment tokens, and a short
    cache of token lookups."""

    index: PlaybackIndex
    served: BandwidthCounter
    segment_tokens: SegmentTokens
    _targets: TtlCache[str, PlaybackTarget | None] = field(
        default_factory=lambda: TtlCache(ttl=_TARGET_CACHE_SECONDS, max_entries=10_000)
    )

    async def target(self, ctx: ControlContext, token: str) -> PlaybackTarget | None:
        """The enabled self-hosted destination with this playback token (cached briefly)."""

        async def load() -> PlaybackTarget | None:
            async with ctx.read() as session:
                return await playback.target(session, token=token)

        return await self._targets.get_or_load(token, load)


def get_playback(request: Request) -> HlsPlayback:
    """The playback state the composition root attached to the app."""
    playback: HlsPlayback = request.app.state.hls_playback
    return playback


class _MeteredResponse(Response):
    """Counts the body toward bandwidth once it was handed to the server (not on disconnect)."""

    def __init__(self, *args: object, on_sent: Callable[[int], None], **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._on_sent = on_sent

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await super().__call__(scope, receive, send)
        self._on_sent(len(self.body))


async def hls_file(token: str, name: str, request: Request) -> Response:
    """Serve ``index.m3u8`` or one init/media segment of a live self-hosted destination.

    Credentials as everywhere (``X-API-Key``, Bearer, ``?apiKey=``, ``?key=``); segments honour
    a single ``Range``. 404 when the stream is not live or the segment left the DVR window.
    Low-latency playlists honour ``_HLS_msn``, ``_HLS_part`` and ``_HLS_skip``.
    """
    is_playlist = name == PLAYLIST
    if not _TOKEN.fullmatch(token) or not (is_playlist or _FILE.fullmatch(name)):
        raise ApiError(404, "Not found")
    if len(request.scope.get("query_string", b"")) > _MAX_QUERY:
        raise ApiError(414, "Query string too long")
    ctx = get_context(request)
    playback = get_playback(request)
    segment_token = None if is_playlist else request.query_params.get(SEGMENT_TOKEN)
    target = await playback.target(ctx, token) if segment_token else None
    if (
        target is not None
        and segment_token
        and playback.segment_tokens.valid(segment_token, target.destination_id, time.time())
    ):
        # A segment of a playlist this destination served: no credential, not counted.
        headers: dict[str, str] = {}
        suffix = ""
    else:
        principal, credential = await _authenticate(ctx, request)
        target = await playback.target(ctx, token)
        if target is None:
            raise ApiError(404, "Stream not found")
        if not _may_watch(principal, target):
            raise ApiError(403, "This API key does not grant access to this stream")
        headers = await _admit(ctx, target)
        suffix = _uri_suffix(request, principal, credential) if is_playlist else ""
    channel = playback.index.live_channel(target.destination_id)
    if channel is None:
        raise ApiError(404, _NOT_LIVE)
    head = request.method == "HEAD"

    def on_sent(nbytes: int) -> None:
        playback.served.add(
            account_id=target.account_id, destination_id=target.destination_id, nbytes=nbytes
        )

    if is_playlist:
        skip = False
        if channel.low_latency:
            skip = await _hold(channel, request)
        if target.testing:
            issued = playback.segment_tokens.issue(target.destination_id, time.time())
            suffix += ("&" if suffix else "?") + f"{SEGMENT_TOKEN}={issued}"
        body = channel.playlist(suffix, skip).encode()
        headers["Cache-Control"] = "no-cache"
        return _respond(body, 200, PLAYLIST_TYPE, headers, head, on_sent)
    data = await channel.read(name)
    if data is None:
        raise ApiError(404, "Segment not found (it may have left the DVR window)")
    headers["Cache-Control"] = "public, max-age=31536000, immutable"
    headers["Accept-Ranges"] = "bytes"
    span = _byte_range(request.headers.get("range"), len(data))
    if span is None:
        return _respond(data, 200, SEGMENT_TYPE, headers, head, on_sent)
    start, end = span
    headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
    return _respond(data[start : end + 1], 206, SEGMENT_TYPE, headers, head, on_sent)


async def _hold(channel: PlaybackChannel, request: Request) -> bool:
    """Apply a playlist request's delivery directives: wait until the playlist holds the asked
    part (rfc8216bis 6.2.5.2). Returns whether a delta update (``_HLS_skip``) was asked."""
    query = request.query_params
    try:
        directives = ReloadRequest.parse(
            query.get("_HLS_msn"), query.get("_HLS_part"), query.get("_HLS_skip")
        )
    except ValueError as exc:
        raise ApiError(400, str(exc)) from None
    readiness = channel.readiness(directives)
    if readiness is Readiness.BAD:
        raise ApiError(400, "The requested part is too far ahead of the live edge")
    if readiness is Readiness.WAIT and not await channel.wait_for(
        directives, 3 * channel.target_duration
    ):
        if not channel.live:
            raise ApiError(404, _NOT_LIVE)
        raise ApiError(503, "The requested part did not become available in time")
    return directives.skip


async def _authenticate(ctx: ControlContext, request: Request) -> tuple[Principal, str]:
    credential = extract_credential(request)
    principal = await principal_or_401(ctx, request, credential)
    assert credential is not None  # principal_or_401 refused a missing one
    return principal, credential


def _may_watch(principal: Principal, target: PlaybackTarget) -> bool:
    if principal.kind == "pk":
        return principal.destination_id == target.destination_id
    return principal.account_id == target.account_id


async def _admit(ctx: ControlContext, target: PlaybackTarget) -> dict[str, str]:
    """Testing mode: one shared request budget per destination (playlists, and segments asked
    for without a valid segment token). Returns headers to send."""
    if not target.testing:
        return {}
    decision = await ctx.limiter.hit(
        f"hls:{target.destination_id}", ctx.settings.hls_viewer_requests_per_minute
    )
    if not decision.allowed:
        raise too_many(
            decision,
            f"Rate limit exceeded. Maximum {decision.limit} requests per minute "
            "(testing mode; switch the destination to production for unlimited viewers).",
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
        # HEAD: same headers, no body, nothing counted.
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
