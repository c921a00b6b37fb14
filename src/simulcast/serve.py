"""``simulcast serve``: settings, logging and uvicorn around the app of this node's role.

Shared by the command line's ``serve`` (:mod:`simulcast.commands`) and the entry point's fast
path (:func:`simulcast.cli.main`), which runs a plain ``serve`` without loading typer.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from simulcast.settings import Settings

ROLES = ("all", "api", "media")


def setup_logging(level: str) -> None:
    """Log lines with time, level and logger to stderr, at ``level``."""
    logging.basicConfig(
        level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # httpx logs every request's full URL at INFO; webhook URLs carry tokens in their query or
    # path (Slack, Discord). The dispatcher logs deliveries itself, with the host only.
    logging.getLogger("httpx").setLevel(max(logging.WARNING, logging.getLogger().level))


def run_server(role: str | None = None, host: str | None = None, port: int | None = None) -> int:
    """Run the server until it is stopped; the exit status (2: a multi-node role without the
    stores it needs). ``None`` leaves a setting to the environment."""
    overrides: dict[str, object] = {}
    if role is not None:
        overrides["role"] = role
    if host is not None:
        overrides["http_host"] = host
    if port is not None:
        overrides["http_port"] = port
    settings = Settings(**overrides)  # type: ignore[arg-type]
    problem = settings.multi_node_problem()
    if problem is not None:
        print(f"simulcast: {problem}", file=sys.stderr)
        return 2
    setup_logging(settings.log_level)
    # uvicorn's package imports its auto-reloader, whose file watcher (watchfiles: a Rust library,
    # ~0.8 MB) a server that never reloads would keep resident for nothing. A None entry makes
    # that import fail, and uvicorn falls back to its plain stat-polling reloader (unused).
    sys.modules.setdefault("watchfiles", None)  # type: ignore[arg-type]
    import uvicorn

    from simulcast.http_protocol import JsonErrorHttpProtocol, Server

    if settings.role == "media":
        # A media node serves HLS, health and metrics only: not the API's FastAPI app.
        from simulcast.roles import create_media_app

        asgi: Any = create_media_app(settings)
    else:
        from simulcast.app import create_app

        asgi = create_app(settings)
    config = uvicorn.Config(
        asgi,
        host=settings.http_host,
        port=settings.http_port,
        log_level=settings.log_level.lower(),
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=5,
        server_header=False,
        ws="none",  # no route is a WebSocket: do not load a WebSocket library
        # uvicorn believes X-Forwarded-For from 127.0.0.1 by default, so a local proxy's
        # clients would all share (or forge) one address: only with the setting, from anyone
        # (the operator vouches that only their proxy can reach us).
        proxy_headers=settings.trust_proxy_headers,
        http=JsonErrorHttpProtocol,
        forwarded_allow_ips="*" if settings.trust_proxy_headers else "",
    )
    Server(config).run()
    return 0
