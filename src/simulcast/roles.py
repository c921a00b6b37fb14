"""A node of any role: builds every component its role runs, starts and stops them in order
(through ``control.background``).

The HTTP side is separate: :func:`simulcast.app.create_app` (FastAPI, every route) for the
``all`` and ``api`` roles, :func:`create_media_app` (plain Starlette: HLS, health, metrics) for
a media node, which keeps the API's dependencies (FastAPI, the dashboard's templates, the
request schemas, webhook delivery, Lightning) out of its memory.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, TypeVar

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import func, select
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from simulcast import __version__
from simulcast.control.api.errors import install_error_handlers
from simulcast.control.api.hls import HlsFastPath, HlsPlayback, SegmentTokens
from simulcast.control.api.identity import get_context
from simulcast.control.archiver import Archiver
from simulcast.control.background import Background
from simulcast.control.bandwidth_counter import BandwidthCounter
from simulcast.control.context import ControlContext
from simulcast.control.db.models import Account
from simulcast.control.db.session import (
    create_engine,
    session_factory,
    upgrade_schema_isolated,
)
from simulcast.control.fleet import Heartbeat, LostNodeSweeper, Owned
from simulcast.control.instance_runner import NODE_LOST, InstanceRunner
from simulcast.control.live_events import LiveEvents
from simulcast.control.minute_meter import MinuteMeter
from simulcast.control.nwc import nostr_wallet_factory
from simulcast.control.plane import ControlPlaneService
from simulcast.control.ratelimit import RateLimiter
from simulcast.control.secretbox import SecretBox
from simulcast.control.services import archives, billing
from simulcast.engine import Engine, InstanceEngine
from simulcast.media.local_engine import LocalEngine
from simulcast.metrics import REGISTRY
from simulcast.node import media_engine
from simulcast.outputs.hls_registry import HlsRegistry
from simulcast.outputs.recorder import RecorderRegistry
from simulcast.settings import Settings

if TYPE_CHECKING:
    from simulcast.control.bus import BusEngine
    from simulcast.control.tips import Tips
    from simulcast.control.topups import Lightning
    from simulcast.control.wallet_sweep import WalletSweep
    from simulcast.control.webhook_dispatcher import WebhookDispatcher

log = logging.getLogger("simulcast")
_Wallets = TypeVar("_Wallets", bound="WalletSweep")

EXPOSED_HEADERS = [
    "Retry-After",
    "X-RateLimit-Limit",
    "X-RateLimit-Remaining",
    "X-RateLimit-Reset",
    "Location",
    "Content-Range",
    "Accept-Ranges",
]


def _nothing() -> None:
    return None


def node_id(settings: Settings) -> str:
    """This node's name in session rows (settings, else the hostname)."""
    return settings.node_id or socket.gethostname()


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    """Start what this node's role runs (``all``: everything), stop it in reverse order.

    ``media`` runs ingest, outputs, HLS, recordings, instances and the meter of its own
    sessions (the node's heartbeat lease makes it their only meter); ``api`` runs the HTTP API
    over the control bus, webhook dispatch, Lightning and the lost-node sweep. What only the
    API runs is imported only there, so a media node does not load it (httpx, Lightning).
    """
    settings: Settings = app.state.settings
    role = settings.role
    runs_media = role in ("all", "media")
    runs_api = role in ("all", "api")
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    database = create_engine(settings)
    await upgrade_schema_isolated(database, settings)
    db = session_factory(database)
    read_database = create_engine(settings, read_only=True) if settings.is_sqlite else database
    webhooks: WebhookDispatcher | None = None
    on_webhook_enqueued: Callable[[], None] = _nothing  # API nodes deliver what media nodes queue
    if runs_api:
        from simulcast.control.webhook_dispatcher import WebhookDispatcher

        webhooks = WebhookDispatcher(settings, db)
        app.state.webhook_dispatcher = webhooks
        on_webhook_enqueued = webhooks.notify
    node = node_id(settings)
    live_events = LiveEvents()
    box = SecretBox.from_settings(settings)
    archiver = Archiver(settings, db, node_id=node, on_webhook_enqueued=on_webhook_enqueued)
    app.state.archiver = archiver
    plane = ControlPlaneService(
        db,
        node,
        settings=settings,
        on_webhook_enqueued=on_webhook_enqueued,
        live_events=live_events,
        on_archive_changed=archiver.notify,
    )
    hls = HlsRegistry(settings)

    def wallet_service(kind: type[_Wallets]) -> _Wallets:
        """Top-ups or tips: both are built on the node's NWC wallets."""
        factory = nostr_wallet_factory(settings.nwc_timeout_seconds)
        return kind(
            settings, db, box=box, wallet_factory=factory, on_webhook_enqueued=on_webhook_enqueued
        )

    lightning: Lightning | None = None
    if runs_api or settings.operator_nwc_uri is not None:
        # A media node meters its sessions: with the operator's wallet configured, its meter
        # may top a wallet up before stopping a session for want of funds.
        from simulcast.control.topups import Lightning

        lightning = wallet_service(Lightning)
        app.state.lightning = lightning
    media: LocalEngine | None = None
    bus_engine: BusEngine | None = None
    engine: Engine
    instance_engine: InstanceEngine
    if runs_media:
        media = media_engine(
            settings, plane, {"hls": hls.factory, "archive": RecorderRegistry(settings).factory}
        )
        engine = instance_engine = media
    else:
        from simulcast.control.bus import BusEngine  # Redis: multi-node roles only

        bus_engine = BusEngine(settings, db, box=box)
        engine = instance_engine = bus_engine
    runner = InstanceRunner(
        settings,
        db,
        instance_engine,
        box=box,
        node_id=node,
        on_webhook_enqueued=on_webhook_enqueued,
        forward=bus_engine.forward_instance if bus_engine is not None else None,
    )
    app.state.instance_runner = runner
    tips: Tips | None = None
    if runs_api:
        from simulcast.control.tips import Tips

        tips = wallet_service(Tips)
        app.state.tips = tips
    meter = MinuteMeter(
        settings,
        db,
        engine,
        node_id=node,
        funding=lightning if lightning is not None and lightning.available else None,
        instances=runner,
    )
    bandwidth_counter = BandwidthCounter(db, settings.bandwidth_flush_seconds)
    segment_tokens = SegmentTokens(box, settings.hls_segment_token_seconds)
    app.state.hls_playback = HlsPlayback(hls, bandwidth_counter, segment_tokens)
    app.state.ctx = ControlContext(
        settings=settings,
        db=db,
        read=session_factory(read_database),
        engine=engine,
        limiter=RateLimiter(settings.rate_limit_storage_uri, settings.rate_limit_on_redis_down),
        live_events=live_events,
    )
    async with db() as session:
        accounts = await session.scalar(select(func.count(Account.id)))
    if not accounts:
        log.warning(
            "No accounts yet. Create the first one with: "
            "simulcast accounts create NAME --password PASSWORD"
        )
    if runs_media:
        # Sessions a crash left open are closed (and their webhooks queued) before any publish.
        async with db.begin() as session:
            recovered = await billing.recover_crashed_sessions(
                session, settings=settings, node_id=node
            )
            interrupted = await archives.recover_after_crash(session, node_id=node)
        for live in recovered:
            log.warning("session %s closed after a crash: server_restart", live.session_id)
        if interrupted:
            log.warning(
                "%d recordings interrupted by a crash: uploading them as they are", interrupted
            )
    background = Background()
    app.state.background = background
    if webhooks is not None:
        background.add("webhooks", start=webhooks.start, stop=webhooks.stop, jobs=[webhooks.job])
    if runs_media:
        background.add("archiver", start=archiver.start, stop=archiver.stop, jobs=[archiver.job])
        background.add("hls", start=hls.start, stop=hls.close, jobs=[hls.job])
    background.add(
        "bandwidth",
        start=bandwidth_counter.start,
        stop=bandwidth_counter.stop,
        jobs=[bandwidth_counter.job],
    )
    background.add("control-plane", stop=plane.close)
    if media is not None:
        if role == "media":
            from simulcast.control.bus import BusServer

            bus_server = BusServer(settings, engine, media, runner, node_id=node, box=box)
            background.add("bus-server", start=bus_server.start, stop=bus_server.close)
            plane.hand_over = bus_server.hand_over
            heartbeat = Heartbeat(
                settings,
                db,
                node_id=node,
                owned=lambda: _owned(media, runner),
                release=lambda owned: _release(media, runner, owned),
            )
            background.add(
                "heartbeat", start=heartbeat.start, stop=heartbeat.stop, jobs=[heartbeat.job]
            )
        background.add("media", start=media.start, stop=media.close)
        # Instances a crash left running are closed before the queue starts anything.
        background.add("instances", start=runner.start, stop=runner.close, jobs=[runner.job])
    if bus_engine is not None:
        background.add("bus-engine", start=bus_engine.start, stop=bus_engine.close)
    if role == "api":
        sweeper = LostNodeSweeper(settings, db, on_webhook_enqueued=on_webhook_enqueued)
        background.add("lost-nodes", start=sweeper.start, stop=sweeper.stop, jobs=[sweeper.job])
    if runs_media:
        background.add("meter", start=meter.start, stop=meter.stop, jobs=[meter.job])
    if lightning is not None:
        # Automatic top-ups run wherever the meter does, so Lightning stops on every role.
        background.add(
            "lightning",
            start=lightning.start if runs_api else None,
            stop=lightning.stop,
            jobs=[lightning.job],
        )
    if tips is not None:
        background.add("tips", start=tips.start, stop=tips.stop, jobs=[tips.job])
    await background.start()
    log.info(
        "simulcast %s (role %s, node %s): HTTP on %s", __version__, role, node, settings.base_url()
    )
    try:
        yield
    finally:
        await background.stop()
        if read_database is not database:
            await read_database.dispose()
        await database.dispose()


def _owned(media: LocalEngine, runner: InstanceRunner) -> Owned:
    """What this media node publishes now."""
    sessions = {info.session_id: sid for sid, info in media.sessions().items()}
    return Owned(sessions, list(runner.running()))


async def _release(media: LocalEngine, runner: InstanceRunner, owned: Owned) -> None:
    """Stop publishing what this node no longer owns (a partition, a lost lease, a shift whose
    hand-over did not arrive) before the platforms receive the same stream twice; the rows are
    the new owner's (or closed), so nothing is recorded here."""
    for session_id, stream_id in owned.sessions.items():
        info = media.session(stream_id)
        if info is not None and info.session_id == session_id:
            await media.stop(stream_id, NODE_LOST)
    for instance_id in owned.instances:
        await runner.stop(instance_id, NODE_LOST)


async def health(request: Request) -> JSONResponse:
    """``GET /healthz`` of a media node (the same answer as the API's)."""
    return JSONResponse(await get_context(request).health(request.app.state.background))


async def metrics(_request: Request) -> Response:
    """``GET /metrics``: the media plane's Prometheus registry."""
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)


def cors_origins(settings: Settings) -> list[str]:
    """The origins ``cors_origins`` allows (``*`` for any)."""
    return [o.strip() for o in settings.cors_origins.split(",") if o.strip()]


def create_media_app(settings: Settings) -> Starlette:
    """A media node's HTTP side: HLS playback (the same fast path as the full app, same
    credentials, limits and metering), ``/healthz`` and ``/metrics``; every other path is 404."""
    origins = cors_origins(settings)
    app = Starlette(
        routes=[Route("/healthz", health), Route("/metrics", metrics)],
        middleware=[
            Middleware(
                HlsFastPath, allow_origins=origins, expose_headers=", ".join(EXPOSED_HEADERS)
            ),
            Middleware(
                CORSMiddleware,
                allow_origins=origins,
                allow_methods=["GET", "HEAD"],
                allow_headers=["*"],
                expose_headers=EXPOSED_HEADERS,
            ),
        ],
        lifespan=lifespan,
    )
    app.state.settings = settings
    install_error_handlers(app, validation=False)
    return app
