"""The dashboard's pages, the embeddable player and their static files.

Pages are server-rendered shells (Jinja2); their scripts call the JSON API from the browser with
the session cookie and the page's CSRF token (``X-CSRF-Token``), so the dashboard does exactly
what the API allows and nothing else. Live state arrives over ``/api/events``.
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable
from functools import cache, partial
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Path, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response

from simulcast import __version__
from simulcast.control import security
from simulcast.control.api.auth import close_session, is_https, open_session, set_session_cookie
from simulcast.control.api.errors import ApiError
from simulcast.control.api.identity import SESSION_COOKIE, get_context, resolve_principal
from simulcast.control.api.urls import request_base_url
from simulcast.control.services import instances, streams
from simulcast.control.services.auth import Principal
from simulcast.web import TEMPLATES_DIR, Assets

if TYPE_CHECKING:
    from fastapi.templating import Jinja2Templates

router = APIRouter(tags=["Dashboard"], include_in_schema=False)

assets = Assets()


@cache
def _templates() -> Jinja2Templates:
    """The pages' templates, loaded at the first page: Jinja stays out of a server whose
    dashboard nobody opens (~1.6 MB resident)."""
    from fastapi.templating import Jinja2Templates

    templates = Jinja2Templates(directory=TEMPLATES_DIR)
    templates.env.globals["static"] = assets.url
    templates.env.globals["version"] = __version__
    return templates


LOGIN_CSRF_COOKIE = "simulcast_login_csrf"
MAX_FORM_BYTES = 4096

_COMMON_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "media-src 'self' blob:; worker-src 'self' blob:; connect-src 'self'; object-src 'none'; "
    "base-uri 'none'"
)
DASHBOARD_CSP = _COMMON_CSP + "; form-action 'self'; frame-ancestors 'none'"
"""The dashboard: only its own scripts and styles, and no other site may frame it."""
PLAYER_CSP = _COMMON_CSP + "; form-action 'none'; frame-ancestors *"
"""The player: same, but any site may embed it in an iframe."""

StreamPathId = Annotated[int, Path(ge=1, le=2**53)]


def _secured(response: Response, csp: str = DASHBOARD_CSP) -> Response:
    response.headers["Content-Security-Policy"] = csp
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    response.headers["Cache-Control"] = "no-store"
    if "frame-ancestors 'none'" in csp:
        response.headers["X-Frame-Options"] = "DENY"
    return response


def _render(request: Request, name: str, csp: str = DASHBOARD_CSP, **context: Any) -> Response:
    response = _templates().TemplateResponse(request, name, context)
    return _secured(response, csp)


async def _signed_in(request: Request) -> tuple[Principal, str] | None:
    """The dashboard session of the request's cookie (and the token), if it is valid."""
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        return None
    principal = await resolve_principal(get_context(request), token)
    if principal is None or principal.kind != "session":
        return None
    return principal, token


def _to_login() -> Response:
    return RedirectResponse("/", status_code=303)


async def _page(request: Request, name: str, active: str, **context: Any) -> Response:
    """A signed-in page with its nav bar and CSRF token, or a redirect to the login page."""
    signed = await _signed_in(request)
    if signed is None:
        return _to_login()
    _, token = signed
    return _render(request, name, csrf=security.csrf_token(token), active=active, **context)


async def _owned_page(
    request: Request,
    name: str,
    active: str,
    find: Callable[..., Awaitable[object | None]],
    **context: Any,
) -> Response:
    """A page about one of the account's streams or instances, which ``find(session,
    account_id=...)`` looks up; the 404 page when the account has no such thing."""
    signed = await _signed_in(request)
    if signed is None:
        return _to_login()
    async with get_context(request).read() as session:
        found = await find(session, account_id=signed[0].account_id)
    if found is None:
        response = await _page(request, "missing.html", active)
        response.status_code = 404
        return response
    return await _page(request, name, active, **context)


def _login_page(request: Request, error: str | None = None) -> Response:
    # A failed sign-in is answered 200 with the reason in the page (role=alert): browsers log
    # every non-2xx document as a console error, and the page itself is what the user reads.
    # Login CSRF: the form carries a random value that must match a cookie only we set.
    nonce = secrets.token_urlsafe(24)
    response = _render(request, "login.html", login_csrf=nonce, error=error)
    response.set_cookie(
        LOGIN_CSRF_COOKIE,
        nonce,
        max_age=3600,
        httponly=True,
        samesite="strict",
        secure=is_https(get_context(request), request),
    )
    return response


async def _form(request: Request) -> dict[str, str]:
    """A small ``application/x-www-form-urlencoded`` body (first value of each field)."""
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        raise ApiError(413, "Form too large")
    fields = parse_qs(body.decode("utf-8", "replace"), max_num_fields=10)
    return {key: values[0] for key, values in fields.items()}


@router.get("/", response_class=HTMLResponse)
async def home(request: Request) -> Response:
    """The login page, or the streams page when already signed in."""
    if await _signed_in(request) is not None:
        return RedirectResponse("/streams", status_code=303)
    return _login_page(request)


@router.post("/login", response_class=HTMLResponse)
async def login_form(request: Request) -> Response:
    """Sign in with the login form's ``username`` and ``password`` (rate-limited)."""
    form = await _form(request)
    expected = request.cookies.get(LOGIN_CSRF_COOKIE)
    if not expected or not secrets.compare_digest(expected, form.get("csrf", "")):
        return _login_page(request, "The form expired. Please sign in again.")
    username, password = form.get("username", ""), form.get("password", "")
    if not username or not password:
        return _login_page(request, "Enter your username and password.")
    ctx = get_context(request)
    try:
        token, _ = await open_session(ctx, request, username=username, password=password)
    except ApiError as exc:
        return _login_page(request, exc.message)
    response = RedirectResponse("/streams", status_code=303)
    set_session_cookie(ctx, request, response, token)
    response.delete_cookie(LOGIN_CSRF_COOKIE)
    return response


@router.post("/logout")
async def logout_form(request: Request) -> Response:
    """Sign out: revoke the session (the form carries the page's CSRF token)."""
    form = await _form(request)
    token = request.cookies.get(SESSION_COOKIE)
    response = _to_login()
    if token and security.csrf_valid(token, form.get("csrf")):
        await close_session(get_context(request), token, response)
    return response


@router.get("/streams", response_class=HTMLResponse)
async def streams_page(request: Request) -> Response:
    """Streams: live state, creation with destinations."""
    return await _page(request, "streams.html", "streams")


@router.get("/streams/{stream_id}", response_class=HTMLResponse)
async def stream_page(request: Request, stream_id: StreamPathId) -> Response:
    """One stream: ingest URL and key, destinations, limits, protection, preview."""
    host = request.url.hostname or "127.0.0.1"
    rtmp_url = f"rtmp://{host}:{get_context(request).settings.rtmp_port}/live"
    find = partial(streams.get_stream, stream_id=stream_id)
    return await _owned_page(
        request, "stream.html", "streams", find, stream_id=stream_id, rtmp_url=rtmp_url
    )


@router.get("/instances", response_class=HTMLResponse)
async def instances_page(request: Request) -> Response:
    """Instances (v1): configurations, templates, launch, running instances, destinations."""
    return await _page(request, "instances.html", "instances")


@router.get("/instances/{instance_id}", response_class=HTMLResponse)
async def instance_page(
    request: Request, instance_id: Annotated[str, Path(max_length=64)]
) -> Response:
    """One instance's controls: element state, ingest keys, outputs LIVE/OFFLINE, overrides."""
    find = partial(instances.get_instance, instance_id=instance_id)
    return await _owned_page(request, "instance.html", "instances", find, instance_id=instance_id)


@router.get("/wallet", response_class=HTMLResponse)
async def wallet_page(request: Request) -> Response:
    """Wallet: balance, ledger, usage charts."""
    return await _page(request, "wallet.html", "wallet")


@router.get("/developer", response_class=HTMLResponse)
async def developer_page(request: Request) -> Response:
    """Developer tools: keys, sessions, webhooks, embed snippets."""
    base = request_base_url(request, get_context(request).settings)
    return await _page(request, "developer.html", "developer", base_url=base)


@router.get("/player", response_class=HTMLResponse)
async def player_page(request: Request) -> Response:
    """The embeddable player of a self-hosted destination (``?apiKey=pk_...``)."""
    return _render(request, "player.html", csp=PLAYER_CSP)


@router.get("/player.js")
async def player_element() -> Response:
    """``<simulcast-player api-key="pk_...">`` for sites that prefer a tag to an iframe."""
    asset = assets.get("player-element.js")
    assert asset is not None
    return FileResponse(
        asset.path,
        media_type=asset.media_type,
        headers={"Cache-Control": "public, max-age=3600", "X-Content-Type-Options": "nosniff"},
    )


@router.get("/static/{name:path}")
async def static_file(request: Request, name: str) -> Response:
    """A static file; cached for a year when asked for by its current content hash."""
    asset = assets.get(name)
    if asset is None:
        raise ApiError(404, "Not found")
    fresh = request.query_params.get("v") == asset.version
    cache = "public, max-age=31536000, immutable" if fresh else "no-cache"
    return FileResponse(
        asset.path,
        media_type=asset.media_type,
        headers={"Cache-Control": cache, "X-Content-Type-Options": "nosniff"},
    )
