"""The base of absolute URLs in responses (``hlsUrl``, a self-hosted destination's ``url``).

``PUBLIC_URL`` when the operator set it; else the scheme and host the request came to, so a
default install answers a browser on another machine with an address that machine can reach.
``X-Forwarded-Proto``/``-Host`` are honoured only with ``trust_proxy_headers``: otherwise any
client could make the server name a host of its choosing.
"""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import Depends, Request

from simulcast.control.api.deps import Ctx
from simulcast.settings import Settings

# host, host:port, [v6]:port; nothing that could end the authority (/, @, ?, #, spaces).
_HOST = re.compile(r"^(?:[A-Za-z0-9.\-]+|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?$")


def _first(value: str | None) -> str | None:
    """The first entry of a possibly comma-joined forwarded header (the client-facing proxy's)."""
    if not value:
        return None
    return value.split(",", 1)[0].strip() or None


def request_base_url(request: Request, settings: Settings) -> str:
    """The base URL (no trailing slash) absolute URLs in the answer to ``request`` use."""
    if settings.public_url:
        return settings.public_url.rstrip("/")
    scheme = request.url.scheme
    host = request.headers.get("host")
    if settings.trust_proxy_headers:
        scheme = _first(request.headers.get("x-forwarded-proto")) or scheme
        host = _first(request.headers.get("x-forwarded-host")) or host
    if scheme not in ("http", "https") or not host or len(host) > 255 or not _HOST.match(host):
        return settings.base_url()
    return f"{scheme}://{host}"


async def _base_url(request: Request, ctx: Ctx) -> str:
    return request_base_url(request, ctx.settings)


BaseUrl = Annotated[str, Depends(_base_url)]
"""The base of absolute URLs for this request's answer."""
