"""Dashboard login and logout."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from simulcast.control import security
from simulcast.control.api.deps import Ctx
from simulcast.control.api.errors import ApiError
from simulcast.control.api.identity import (
    SESSION_COOKIE,
    check_csrf,
    client_address,
    extract_credential,
    too_many,
)
from simulcast.control.api.urls import request_base_url
from simulcast.control.context import ControlContext
from simulcast.control.schemas.auth import LoginIn, LoginOut
from simulcast.control.schemas.common import ERRORS, Success
from simulcast.control.services import auth

router = APIRouter(prefix="/api/auth", tags=["Auth"], responses=ERRORS)

"""Per client address, shared by the JSON endpoint and the dashboard's login form."""


async def open_session(
    ctx: ControlContext, request: Request, *, username: str, password: str
) -> tuple[str, int]:
    """Check a login and open a dashboard session: ``(token, expires_ms)``, or an ApiError.

    Failures are limited per client address and per account name, and checked before any
    hashing: a flood costs a rate-limit lookup per request, not 180 ms of argon2 (which runs
    off the event loop, and is refused at once when a flood fills its queue).
    """
    settings = ctx.settings
    address, name = client_address(request), username.lower()
    buckets = (
        (f"loginfail:addr:{address}", settings.login_failures_per_minute_per_address),
        (f"loginfail:acct:{name}", settings.login_failures_per_minute_per_account),
    )
    for bucket, per_minute in buckets:
        refusal = await ctx.limiter.exhausted(bucket, per_minute)
        if refusal is not None:
            raise too_many(refusal, "Too many login attempts. Try again later.")
    try:
        account_id = await auth.check_password(ctx.read, username=username, password=password)
    except security.HasherBusy:
        raise ApiError(
            429, "Too many login attempts in progress. Try again shortly.",
            headers={"Retry-After": "1"}, retryAfter=1,
        ) from None  # fmt: skip
    if account_id is None:
        for bucket, per_minute in buckets:
            await ctx.limiter.hit(bucket, per_minute)
        raise ApiError(401, "Invalid username or password")
    ttl_ms = int(settings.session_token_hours * 3600 * 1000)
    async with ctx.db.begin() as session:
        return await auth.open_login_session(session, account_id=account_id, ttl_ms=ttl_ms)


def is_https(ctx: ControlContext, request: Request) -> bool:
    """Whether the browser reached us over HTTPS (the public URL, else the request, else a
    trusted proxy's ``X-Forwarded-Proto``)."""
    return request_base_url(request, ctx.settings).startswith("https://")


def set_session_cookie(
    ctx: ControlContext, request: Request, response: Response, token: str
) -> None:
    """The session cookie: HttpOnly (scripts never see it), SameSite=Lax, Secure over HTTPS."""
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=int(ctx.settings.session_token_hours * 3600),
        httponly=True,
        samesite="lax",
        secure=is_https(ctx, request),
    )


async def close_session(ctx: ControlContext, credential: str, response: Response) -> None:
    """Revoke a session token and clear the cookie."""
    async with ctx.db.begin() as session:
        await auth.logout(session, credential_digest=security.digest(credential))
    ctx.forget_cached()
    response.delete_cookie(SESSION_COOKIE)


@router.post("/login", response_model=LoginOut, summary="Log in to the dashboard")
async def login(body: LoginIn, request: Request, response: Response, ctx: Ctx) -> LoginOut:
    """Exchange an account's name and password for a session token (also set as a cookie).

    Failed logins are limited per client address and per account name (429 beyond).
    """
    token, expires = await open_session(
        ctx, request, username=body.username, password=body.password
    )
    set_session_cookie(ctx, request, response, token)
    return LoginOut(token=token, expiresAt=expires)


@router.post("/logout", response_model=Success, summary="Log out")
async def logout(request: Request, response: Response, ctx: Ctx) -> Success:
    """Revoke the session token the request carries (idempotent).

    With the session cookie alone, the ``X-CSRF-Token`` header is required.
    """
    credential = extract_credential(request)
    if not credential:
        raise ApiError(401, "Session token required")
    check_csrf(request)
    await close_session(ctx, credential, response)
    return Success()
