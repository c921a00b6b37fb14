"""Dashboard login and logout."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from simulcast.control import security
from simulcast.control.api.deps import SESSION_COOKIE, Ctx, extract_credential
from simulcast.control.api.errors import ApiError
from simulcast.control.schemas.auth import LoginIn, LoginOut
from simulcast.control.schemas.common import ERRORS, Success
from simulcast.control.services import auth

router = APIRouter(prefix="/api/auth", tags=["Auth"], responses=ERRORS)  # type: ignore[arg-type]


@router.post("/login", response_model=LoginOut, summary="Log in to the dashboard")
async def login(body: LoginIn, request: Request, response: Response, ctx: Ctx) -> LoginOut:
    """Exchange an account's name and password for a session token (also set as a cookie)."""
    client = request.client.host if request.client else "unknown"
    decision = await ctx.limiter.hit(f"login:{client}", 20)
    if not decision.allowed:
        raise ApiError(
            429,
            "Too many login attempts. Try again later.",
            headers=decision.headers(),
            retryAfter=decision.retry_after,
        )
    ttl_ms = int(ctx.settings.session_token_hours * 3600 * 1000)
    async with ctx.db.begin() as session:
        result = await auth.login(
            session, username=body.username, password=body.password, ttl_ms=ttl_ms
        )
    if result is None:
        raise ApiError(401, "Invalid username or password")
    token, expires = result
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=ttl_ms // 1000,
        httponly=True,
        samesite="lax",
        secure=ctx.settings.base_url().startswith("https://"),
    )
    return LoginOut(token=token, expiresAt=expires)


@router.post("/logout", response_model=Success, summary="Log out")
async def logout(request: Request, response: Response, ctx: Ctx) -> Success:
    """Revoke the session token the request carries (idempotent)."""
    credential = extract_credential(request)
    if not credential:
        raise ApiError(401, "Session token required")
    async with ctx.db.begin() as session:
        await auth.logout(session, credential_digest=security.digest(credential))
    ctx.forget_cached()
    response.delete_cookie(SESSION_COOKIE)
    return Success()
