"""The control plane's side of the seam: authorize publishes and record what the media plane did."""

from __future__ import annotations

import logging
from collections.abc import Callable

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from simulcast.control.services import billing, protection, sessions, streams, webhooks
from simulcast.engine import (
    EngineEvent,
    OutputStateChanged,
    PublisherLost,
    PublisherResumed,
    PublishGrant,
    PublishRefused,
    PublishRequest,
    SessionEnded,
)
from simulcast.settings import Settings

log = logging.getLogger("simulcast.control")


class ControlPlaneService:
    """Implements :class:`simulcast.engine.ControlPlane` over the database."""

    def __init__(
        self,
        db: async_sessionmaker[AsyncSession],
        node_id: str,
        *,
        settings: Settings,
        on_webhook_enqueued: Callable[[], None] = lambda: None,
    ) -> None:
        self.db = db
        self.node_id = node_id
        self.settings = settings
        self.on_webhook_enqueued = on_webhook_enqueued

    async def authorize_publish(self, request: PublishRequest) -> PublishGrant:
        """Check the key, locks and funds; record the session; return its outputs."""
        async with self.db.begin() as session:
            stream = await streams.stream_by_key(session, stream_key=request.stream_key)
            if stream is None:
                raise PublishRefused("Unknown stream key")
            if stream.locked_reason:
                raise PublishRefused(
                    f"Stream is locked ({stream.locked_reason}); change or clear its limits",
                    code="NetStream.Publish.Denied",
                )
            if await sessions.live_session_of(session, stream_id=stream.id) is not None:
                raise PublishRefused("Stream is already live", code="NetStream.Publish.BadName")
            dests = await streams.list_destinations(session, stream_ids=[stream.id])
            refusal = await billing.publish_refusal(
                session, settings=self.settings, stream=stream, destinations=dests
            )
            if refusal is not None:
                raise PublishRefused(refusal, code="NetStream.Publish.Denied")
            live = await sessions.open_session(
                session, stream=stream, destinations=dests, node_id=self.node_id
            )
            grant = PublishGrant(
                session_id=live.session_id,
                stream_id=stream.id,
                account_id=stream.account_id,
                outputs=streams.outputs_for(dests),
                protection_seconds=streams.protection_seconds(stream),
            )
            # Webhooks: the outbox row commits with the session row.
            await webhooks.enqueue_event(
                session,
                account_id=stream.account_id,
                stream_id=stream.id,
                event="stream.started",
                data=webhooks.stream_started_data(live=live, stream=stream),
                created_ms=live.started_ms,
            )
        self.on_webhook_enqueued()
        log.info("publish authorized: stream %s session %s", stream.id, live.session_id)
        return grant

    async def on_engine_event(self, event: EngineEvent) -> None:
        """Record a session's end and protection webhooks; output state changes are only logged."""
        try:
            if isinstance(event, SessionEnded):
                await self._session_ended(event)
            elif isinstance(event, PublisherLost | PublisherResumed):
                await self._publisher_event(event)
            elif isinstance(event, OutputStateChanged):
                log.info(
                    "output %s of stream %s: %s%s",
                    event.status.destination_id,
                    event.stream_id,
                    event.status.state,
                    f" ({event.status.last_error})" if event.status.last_error else "",
                )
        except Exception:
            log.exception("failed to record engine event %r", event)

    async def _publisher_event(self, event: PublisherLost | PublisherResumed) -> None:
        # Disconnect protection: the session stays open; only its webhooks are recorded.
        async with self.db.begin() as session:
            queued = await protection.record_publisher_event(session, event=event)
        if queued:
            self.on_webhook_enqueued()

    async def _session_ended(self, event: SessionEnded) -> None:
        async with self.db.begin() as session:
            live = await sessions.by_session_id(session, session_id=event.session_id)
            if live is None or live.ended_ms is not None:
                return
            # Billing: the last completed minutes are charged with the close, exactly once.
            await billing.end_session(
                session,
                settings=self.settings,
                live=live,
                reason=event.reason,
                ended_ms=event.ended_at_ms,
                bytes_in=event.bytes_in,
            )
            # Webhooks: the outbox row commits with the session's end.
            await webhooks.enqueue_event(
                session,
                account_id=live.account_id,
                stream_id=live.stream_id,
                event="stream.ended",
                data=await webhooks.stream_ended_data(session, live=live),
                created_ms=event.ended_at_ms,
            )
        self.on_webhook_enqueued()
        log.info("session %s ended: %s", event.session_id, event.reason)
