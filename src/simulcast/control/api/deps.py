"""Request dependencies: the shared context, the caller's identity, and per-key rate limits."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request, Response
from fastapi.security import APIKeyHeader
from starlette.requests import HTTPConnection

from simulcast.control.api.errors import ApiError
from simulcast.control.api.identity import (
    SESSION_COOKIE,
    check_csrf,
    extract_credential,
    get_context,
    principal_or_401,
    too_many,
)
from simulcast.control.context import ControlContext
from simulcast.control.services.auth import Principal

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


async def _context(request: Request) -> ControlContext:
    # An async dependency: FastAPI runs sync ones in a thread pool, a thread hop per request.
    return get_context(request)


Ctx = Annotated[ControlContext, Depends(_context)]


class _AnyCredential(APIKeyHeader):
    """The X-API-Key scheme for OpenAPI, reading a credential from every accepted place."""

    async def __call__(self, request: HTTPConnection) -> str | None:
        return extract_credential(request)


_credential = _AnyCredential(name="X-API-Key", auto_error=False, scheme_name=PRIMARY_SCHEME)


async def _authenticated(
    request: Request,
    response: Response,
    ctx: Ctx,
    credential: Annotated[str | None, Depends(_credential)],
) -> Principal:
    principal = await principal_or_401(ctx, request, credential)
    check_csrf(request)
    decision = await ctx.limiter.hit(
        "api:" + principal.credential_digest, ctx.settings.rate_limit_per_minute
    )
    if not decision.allowed:
        raise too_many(
            decision, f"Rate limit exceeded. Maximum {decision.limit} requests per minute."
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
