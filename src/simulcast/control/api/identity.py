"""Who is asking: a request's credential, its principal (cached) and the per-address guard on
unknown keys. Free of FastAPI, so a media node serves authenticated HLS without loading it."""

from __future__ import annotations

import logging

from sqlalchemy.exc import SQLAlchemyError
from starlette.requests import HTTPConnection, Request

from simulcast.control import security
from simulcast.control.api.errors import ApiError
from simulcast.control.context import ControlContext
from simulcast.control.ratelimit import RateDecision
from simulcast.control.services import auth, credentials
from simulcast.control.services.auth import Principal

log = logging.getLogger("simulcast.api")

SESSION_COOKIE = "simulcast_session"
MISSING_KEY = (
    "API key required. Provide via X-API-Key header, Authorization: Bearer header, "
    "or ?apiKey= query parameter."
)
INVALID_KEY = "Invalid API key or destination disabled"
CSRF_HEADER = "X-CSRF-Token"
CSRF_REFUSED = (
    "Missing or invalid X-CSRF-Token header (required for changes made with the session cookie)"
)
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def get_context(request: HTTPConnection) -> ControlContext:
    """The control context the composition root attached to the app."""
    ctx: ControlContext = request.app.state.ctx
    return ctx


def client_address(request: HTTPConnection) -> str:
    """The client's IP address for per-address limits.

    The socket's peer, unless ``trust_proxy_headers`` is on: then the server (uvicorn's proxy
    headers handling, configured in ``cli.serve``) has already replaced it with the address
    ``X-Forwarded-For`` names. With the setting off, the header is never believed.
    """
    return request.client.host if request.client else "unknown"


def too_many(decision: RateDecision, message: str) -> ApiError:
    """The 429 for a refused rate-limit decision, with ``Retry-After``."""
    return ApiError(429, message, headers=decision.headers(), retryAfter=decision.retry_after)


def _explicit_credential(request: HTTPConnection) -> str | None:
    headers = request.headers
    value = headers.get("x-api-key")
    if value:
        return value.strip()
    authz = headers.get("authorization")
    if authz and authz[:7].lower() == "bearer ":
        return authz[7:].strip() or None
    query = request.query_params
    return query.get("apiKey") or query.get("key") or None


def extract_credential(request: HTTPConnection) -> str | None:
    """The credential of a request, from the first place that has one (API.md order)."""
    return _explicit_credential(request) or request.cookies.get(SESSION_COOKIE) or None


def check_csrf(request: Request) -> None:
    """Refuse a state change authenticated only by the session cookie without its CSRF token.

    A browser attaches the cookie to requests other sites make, so a cookie-authenticated
    ``POST``/``PATCH``/``DELETE`` must also carry ``X-CSRF-Token`` (which only the dashboard's own
    pages know). Requests that name their credential explicitly (header or query) need none.
    """
    if request.method in SAFE_METHODS or _explicit_credential(request):
        return
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie and not security.csrf_valid(cookie, request.headers.get(CSRF_HEADER)):
        raise ApiError(403, CSRF_REFUSED)


async def resolve_principal(ctx: ControlContext, credential: str) -> Principal | None:
    """Resolve a credential through the short-lived cache, else the database."""
    if len(credential) > 512:
        return None
    credential_digest = security.digest(credential)

    async def load() -> Principal | None:
        async with ctx.read() as session:
            principal = await auth.authenticate(session, credential)
        if principal is not None and not ctx.use_stamps.get(credential_digest)[0]:
            # lastUsedAt is kept to the minute: at most one write per credential and minute
            # per node, and best effort (a busy database must not fail the request).
            ctx.use_stamps.put(credential_digest, True)
            try:
                async with ctx.db.begin() as session:
                    await credentials.record_use(session, principal=principal)
            except SQLAlchemyError:
                log.warning("could not record a credential's last use", exc_info=True)
        return principal

    return await ctx.auth_cache.get_or_load(credential_digest, load)


async def principal_or_401(
    ctx: ControlContext, request: HTTPConnection, credential: str | None
) -> Principal:
    """The principal of a request's credential: 401 when missing or unknown, and 429 (before
    any lookup) once the request's address has sent too many unknown ones (key guessing)."""
    if not credential:
        raise ApiError(401, MISSING_KEY)
    bad_keys = "badkey:" + client_address(request)
    per_minute = ctx.settings.invalid_keys_per_minute_per_address
    refusal = await ctx.limiter.exhausted(bad_keys, per_minute)
    if refusal is not None:
        raise too_many(refusal, "Too many invalid API keys from this address. Try again later.")
    principal = await resolve_principal(ctx, credential)
    if principal is None:
        await ctx.limiter.hit(bad_keys, per_minute)
        raise ApiError(401, INVALID_KEY)
    return principal
