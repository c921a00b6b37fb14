"""Request dependencies: the shared context, the caller's identity, and per-key rate limits."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request, Response
from fastapi.security import APIKeyHeader
from starlette.requests import HTTPConnection

from simulcast.control import security
from simulcast.control.api.errors import ApiError
from simulcast.control.context import ControlContext
from simulcast.control.services import auth
from simulcast.control.services.auth import Principal

SESSION_COOKIE = "simulcast_session"
MISSING_KEY = (
    "API key required. Provide via X-API-Key header, Authorization: Bearer header, "
    "or ?apiKey= query parameter."
)
INVALID_KEY = "Invalid API key or destination disabled"

PRIMARY_SCHEME = "ApiKeyHeader"
# The other places a credential is accepted, in API.md's order after the header. OpenAPI lists
# them beside the primary scheme (see app.py); one dependency reads them all, which keeps the
# per-request dependency graph small on hot endpoints.
OTHER_SCHEMES: dict[str, dict[str, str]] = {
    "Bearer": {"type": "http", "scheme": "bearer"},
    "ApiKeyQuery": {"type": "apiKey", "in": "query", "name": "apiKey"},
    "KeyQuery": {"type": "apiKey", "in": "query", "name": "key"},
    "SessionCookie": {"type": "apiKey", "in": "cookie", "name": SESSION_COOKIE},
}


def get_context(request: Request) -> ControlContext:
    """The control context the composition root attached to the app."""
    ctx: ControlContext = request.app.state.ctx
    return ctx


async def _context(request: Request) -> ControlContext:
    # An async dependency: FastAPI runs sync ones in a thread pool, a thread hop per request.
    return get_context(request)


Ctx = Annotated[ControlContext, Depends(_context)]


def extract_credential(request: HTTPConnection) -> str | None:
    """The credential of a request, from the first place that has one (API.md order)."""
    headers = request.headers
    value = headers.get("x-api-key")
    if value:
        return value.strip()
    authz = headers.get("authorization")
    if authz and authz[:7].lower() == "bearer ":
        return authz[7:].strip() or None
    query = request.query_params
    value = query.get("apiKey") or query.get("key")
    if value:
        return value
    return request.cookies.get(SESSION_COOKIE) or None


async def resolve_principal(ctx: ControlContext, credential: str) -> Principal | None:
    """Resolve a credential through the short-lived cache, else the database."""
    if len(credential) > 512:
        return None
    credential_digest = security.digest(credential)

    async def load() -> Principal | None:
        async with ctx.read() as session:
            return await auth.authenticate(session, credential)

    return await ctx.auth_cache.get_or_load(credential_digest, load)


class _AnyCredential(APIKeyHeader):
    """The X-API-Key scheme for OpenAPI, reading a credential from every accepted place."""

    async def __call__(self, request: HTTPConnection) -> str | None:
        return extract_credential(request)


_credential = _AnyCredential(name="X-API-Key", auto_error=False, scheme_name=PRIMARY_SCHEME)


async def _authenticated(
    response: Response,
    ctx: Ctx,
    credential: Annotated[str | None, Depends(_credential)],
) -> Principal:
    if not credential:
        raise ApiError(401, MISSING_KEY)
    principal = await resolve_principal(ctx, credential)
    if principal is None:
        raise ApiError(401, INVALID_KEY)
    decision = await ctx.limiter.hit(
        "api:" + principal.credential_digest, ctx.settings.rate_limit_per_minute
    )
    if not decision.allowed:
        raise ApiError(
            429,
            f"Rate limit exceeded. Maximum {decision.limit} requests per minute.",
            headers=decision.headers(),
            retryAfter=decision.retry_after,
        )
    response.headers.update(decision.headers())
    return principal


async def _manager(principal: Annotated[Principal, Depends(_authenticated)]) -> Principal:
    if principal.kind == "pk":
        raise ApiError(
            403,
            "This endpoint requires a Permanent API Key (sk_...) or a session token; "
            "public API keys (pk_...) are read-only.",
        )
    return principal


async def _admin(principal: Annotated[Principal, Depends(_manager)]) -> Principal:
    if not principal.is_admin:
        raise ApiError(403, "This endpoint requires an operator (admin) account")
    return principal


AnyKey = Annotated[Principal, Depends(_authenticated)]
"""Any valid credential: ``pk_``, ``sk_`` or a session token."""
Manager = Annotated[Principal, Depends(_manager)]
"""An ``sk_`` key or a session token (``pk_`` gets 403)."""
Admin = Annotated[Principal, Depends(_admin)]
"""A manager credential of an operator account."""
