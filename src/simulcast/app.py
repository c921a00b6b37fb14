"""The composition root: builds every component, and starts and stops them in order."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.utils import get_openapi
from sqlalchemy import func, select

from simulcast import __version__
from simulcast.control.api.deps import OTHER_SCHEMES, PRIMARY_SCHEME
from simulcast.control.api.errors import BodySizeLimit, install_error_handlers
from simulcast.control.api.hls import HlsFastPath, HlsPlayback
from simulcast.control.api.routes import include_routers
from simulcast.control.bandwidth_meter import BandwidthMeter
from simulcast.control.context import ControlContext
from simulcast.control.db.models import Account
from simulcast.control.db.session import create_engine, session_factory, upgrade_schema
from simulcast.control.plane import ControlPlaneService
from simulcast.control.ratelimit import RateLimiter
from simulcast.control.services import billing
from simulcast.control.services.meter import Meter
from simulcast.control.webhook_dispatcher import WebhookDispatcher
from simulcast.media.local_engine import LocalEngine
from simulcast.outputs.hls_registry import HlsRegistry, PlaybackEngine
from simulcast.settings import Settings

log = logging.getLogger("simulcast")

EXPOSED_HEADERS = [
    "Retry-After",
    "X-RateLimit-Limit",
    "X-RateLimit-Remaining",
    "X-RateLimit-Reset",
    "Location",
    "Content-Range",
    "Accept-Ranges",
]

API_DESCRIPTION = """Simulcast's HTTP API: the public (``pk_``) endpoints for embedding a stream,
the management (``sk_`` or session token) endpoints for streams, destinations, money and webhooks.
Every error is JSON ``{"error": "..."}``."""


def node_id(settings: Settings) -> str:
    """This node's name in session rows (settings, else the hostname)."""
    return settings.node_id or socket.gethostname()


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    db_engine = create_engine(settings)
    await upgrade_schema(db_engine)
    db = session_factory(db_engine)
    read_engine = create_engine(settings, read_only=True) if settings.is_sqlite else db_engine
    webhooks = WebhookDispatcher(settings, db)
    app.state.webhook_dispatcher = webhooks
    node = node_id(settings)
    plane = ControlPlaneService(db, node, settings=settings, on_webhook_enqueued=webhooks.notify)
    media = LocalEngine(settings, plane)
    hls = HlsRegistry(settings)
    media.output_factories["hls"] = hls.factory
    engine = PlaybackEngine(media, hls)
    billing_meter = Meter(settings, db, engine, node_id=node)
    meter = BandwidthMeter(db, settings.bandwidth_flush_seconds)
    app.state.hls_playback = HlsPlayback(hls, meter)
    app.state.ctx = ControlContext(
        settings=settings,
        db=db,
        read=session_factory(read_engine),
        engine=engine,
        limiter=RateLimiter(settings.rate_limit_storage_uri),
    )
    async with db() as session:
        accounts = await session.scalar(select(func.count(Account.id)))
    if not accounts:
        log.warning(
            "No accounts yet. Create the first one with: "
            "simulcast accounts create NAME --password PASSWORD"
        )
    # Sessions a crash left open are closed (and their webhooks queued) before any publish.
    async with db.begin() as session:
        recovered = await billing.recover_crashed_sessions(session, settings=settings, node_id=node)
    for live in recovered:
        log.warning("session %s closed after a crash: server_restart", live.session_id)
    await webhooks.start()
    await hls.start()
    await meter.start()
    await media.start()
    metering = asyncio.create_task(billing_meter.run(), name="billing-meter")
    log.info("simulcast %s: HTTP on %s", __version__, settings.base_url())
    try:
        yield
    finally:
        billing_meter.stop()
        await metering
        await media.close()
        await hls.close()
        await meter.stop()
        await webhooks.stop()
        if read_engine is not db_engine:
            await read_engine.dispose()
        await db_engine.dispose()


def _openapi(app: FastAPI) -> Callable[[], dict[str, Any]]:
    """The OpenAPI document, adjusted to what the API really does.

    FastAPI documents a 422 on every route, but this API answers validation errors with 400; and
    a credential is accepted from several places (API.md's order), which the document lists as
    alternative security schemes of every authenticated operation.
    """

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            for path in schema.get("paths", {}).values():
                for operation in path.values():
                    operation.get("responses", {}).pop("422", None)
                    if {PRIMARY_SCHEME: []} in operation.get("security", []):
                        operation["security"] += [{name: []} for name in OTHER_SCHEMES]
            components = schema.setdefault("components", {})
            components.get("schemas", {}).pop("HTTPValidationError", None)
            components.get("schemas", {}).pop("ValidationError", None)
            components.setdefault("securitySchemes", {}).update(OTHER_SCHEMES)
            app.openapi_schema = schema
        return app.openapi_schema

    return openapi


def create_app(settings: Settings) -> FastAPI:
    """The ASGI app with every route; components start and stop with its lifespan."""
    app = FastAPI(
        title="Simulcast API",
        version=__version__,
        description=API_DESCRIPTION,
        lifespan=_lifespan,
        docs_url="/docs",
        openapi_url="/openapi.json",
        redoc_url=None,
    )
    app.state.settings = settings
    install_error_handlers(app)
    include_routers(app)
    origins = [o.strip() for o in settings.cors_origins.split(",") if o.strip()]
    app.add_middleware(
        CORSMiddleware,
        allow_origins=origins,
        allow_methods=["*"],
        allow_headers=["*"],
        expose_headers=EXPOSED_HEADERS,
    )
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(
        HlsFastPath, allow_origins=origins, expose_headers=", ".join(EXPOSED_HEADERS)
    )
    app.openapi = _openapi(app)  # type: ignore[method-assign]
    return app
