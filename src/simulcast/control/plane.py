"""The control plane's side of the seam: authorize publishes and record what the media plane did."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import secrets
import time
from collections.abc import Awaitable, Callable

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from simulcast.control.db.session import database_unreachable
from simulcast.control.live_events import LiveEvents
from simulcast.control.push_watch import FailedPush, PushFailureWatch
from simulcast.control.services import (
    archives,
    billing,
    instances,
    protection,
    push_failures,
    sessions,
    streams,
    webhooks,
)
from simulcast.control.timeutil import now_ms
from simulcast.engine import (
    SHIFT_QUERY,
    EngineEvent,
    InstanceEvent,
    OutputSpec,
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

RETRY_WAIT_MAX_S = 5.0
"""The longest wait between tries of what the media plane reports, while the database is
unreachable."""
RETRY_LOG_EVERY_S = 60.0
"""While the database stays unreachable, how often a retried record says so again."""


class ControlPlaneService:
    """Implements :class:`simulcast.engine.ControlPlane` over the database."""

    def __init__(
        self,
        db: async_sessionmaker[AsyncSession],
        node_id: str,
        *,
        settings: Settings,
        on_webhook_enqueued: Callable[[], None] = lambda: None,
        live_events: LiveEvents | None = None,
        on_archive_changed: Callable[[], None] = lambda: None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ) -> None:
        self.db = db
        self.node_id = node_id
        self.settings = settings
        self.on_webhook_enqueued = on_webhook_enqueued
        self.on_archive_changed = on_archive_changed
        self._clock = clock
        self._sleep = sleep  # the waits between tries while the database is unreachable
        self.live_events = live_events or LiveEvents()
        """Where open dashboards hear about sessions and outputs changing state."""
        self.push_watch = PushFailureWatch(settings.push_fail_after_seconds, self._push_failed)
        self.hand_over: Callable[[str, int], Awaitable[bool]] | None = None
        """Stream shift across nodes: tells the previous owner (node id) of a stream taken over
        to stop publishing it (media nodes of a fleet: the control bus)."""

    async def close(self) -> None:
        """Stop watching pushes (after the engine has closed its sessions)."""
        await self.push_watch.close()

    async def authorize_publish(self, request: PublishRequest) -> PublishGrant:
        """Check the key, locks and funds; record the session; return its outputs.

        One owner per live stream across nodes: a stream live on another node is refused, or
        with ``?shift=1`` taken over (the session row moves to this node, which goes on
        metering it; the previous owner is told to stop publishing it before this node's outputs
        start). Two nodes opening the same stream at once: the database's unique index on open
        sessions lets one insert win; the other publish is refused.
        """
        try:
            grant, previous = await self._authorize(request)
        except IntegrityError:
            raise PublishRefused(
                "Stream is already live", code="NetStream.Publish.BadName"
            ) from None
        hand_over = self.hand_over
        confirmed = True
        if previous is not None and hand_over is not None:
            confirmed = await hand_over(previous, grant.stream_id)
        if not confirmed:
            # Unreachable (partitioned or dying): it finds out at its next heartbeat that the
            # session is no longer its own and stops publishing it then.
            log.warning(
                "stream %s: node %s did not confirm the hand-over", grant.stream_id, previous
            )
        return grant

    async def _authorize(self, request: PublishRequest) -> tuple[PublishGrant, str | None]:
        """The grant, and the node the session was taken over from (stream shift), if any."""
        previous: str | None = None
        async with self.db.begin() as session:
            stream = await streams.stream_by_key(session, stream_key=request.stream_key)
            if stream is None:
                raise PublishRefused("Unknown stream key")
            if stream.locked_reason:
                raise PublishRefused(
                    f"Stream is locked ({stream.locked_reason}); change or clear its limits",
                    code="NetStream.Publish.Denied",
                )
            live_before = await sessions.live_session_of(session, stream_id=stream.id)
            if live_before is not None:
                shift = request.query.get(SHIFT_QUERY) == "1"
                if live_before.node_id == self.node_id or not shift:
                    raise PublishRefused(
                        "Stream is already live (add ?shift=1 to take it over)",
                        code="NetStream.Publish.BadName",
                    )
                previous = live_before.node_id
                if not await sessions.take_over(session, live=live_before, node_id=self.node_id):
                    raise PublishRefused("Stream is already live", code="NetStream.Publish.BadName")
            dests = await streams.list_destinations(session, stream_ids=[stream.id])
            if live_before is None:
                refusal = await billing.publish_refusal(
                    session, settings=self.settings, stream=stream, destinations=dests
                )
                if refusal is not None:
                    raise PublishRefused(refusal, code="NetStream.Publish.Denied")
            live = live_before or await sessions.open_session(
                session, stream=stream, destinations=dests, node_id=self.node_id
            )
            # Archives: each recording's row commits with the session, before it starts.
            by_id = {d.id: d for d in dests}
            outputs: list[OutputSpec] = []
            for spec in streams.outputs_for(dests):
                if spec.kind == "archive":
                    options = await archives.start_recording(
                        session,
                        settings=self.settings,
                        live=live,
                        destination=by_id[spec.destination_id],
                    )
                    spec = dataclasses.replace(spec, options={**spec.options, **options})
                outputs.append(spec)
            grant = PublishGrant(
                session_id=live.session_id,
                stream_id=stream.id,
                account_id=stream.account_id,
                outputs=outputs,
                protection_seconds=streams.protection_seconds(stream),
            )
            # Webhooks: the outbox row commits with the session row (a shift across nodes goes
            # on with the same session: stream.resumed, as a shift on one node).
            if previous is None:
                await webhooks.enqueue_event(
                    session,
                    account_id=stream.account_id,
                    stream_id=stream.id,
                    event="stream.started",
                    data=webhooks.stream_started_data(live=live, stream=stream),
                    created_ms=live.started_ms,
                )
            else:
                await protection.record_publisher_event(
                    session,
                    event=PublisherResumed(live.session_id, stream.id, now_ms(), True, 0),
                )
        self.on_webhook_enqueued()
        self.live_events.stream_started(
            account_id=stream.account_id, stream_id=stream.id, session_id=live.session_id
        )
        if any(spec.kind == "archive" for spec in outputs):
            self.on_archive_changed()
        log.info(
            "publish authorized: stream %s session %s%s",
            stream.id,
            live.session_id,
            f" (taken over from node {previous})" if previous else "",
        )
        return grant, previous

    async def srt_passphrase(self, stream_key: str) -> str | None:
        """The stream's SRT passphrase (``None`` when it has none, or the key is unknown)."""
        async with self.db() as session:
            stream = await streams.stream_by_key(session, stream_key=stream_key)
            return stream.srt_passphrase if stream is not None else None

    async def on_engine_event(self, event: EngineEvent) -> None:
        """Record a session's end, protection and instance webhooks; output state changes are
        only logged.

        Every event also goes to the account's open dashboards (after it is recorded).
        """
        try:
            if isinstance(event, SessionEnded):
                self.push_watch.forget(event.session_id)
                # The close carries the session's last charges; one that did commit is seen
                # closed by a retry, so nothing is charged twice.
                await self._retried(
                    f"the end of session {event.session_id}",
                    lambda _once: self._close_session(event),
                )
            elif isinstance(event, PublisherLost | PublisherResumed):
                await self._retried(
                    f"{type(event).__name__} of session {event.session_id}",
                    lambda once: self._publisher_event(event, once),
                )
            elif isinstance(event, InstanceEvent):
                await self._retried(
                    f"{event.event} of instance {event.instance_id}",
                    lambda once: self._instance_event(event, once),
                )
            elif isinstance(event, OutputStateChanged):
                self.push_watch.observe(event)
                if event.status.kind == "archive":
                    await self._retried(
                        f"recorder {event.status.state} in session {event.session_id}",
                        lambda _once: self._recorder_changed(event),
                    )
                log.info(
                    "output %s of stream %s: %s%s",
                    event.status.destination_id,
                    event.stream_id,
                    event.status.state,
                    f" ({event.status.last_error})" if event.status.last_error else "",
                )
        except Exception:
            log.exception("failed to record engine event %r", event)
        self._tell_dashboards(event)

    def _tell_dashboards(self, event: EngineEvent) -> None:
        live = self.live_events
        if isinstance(event, SessionEnded):
            live.publish(event.stream_id, "stream", {"status": "idle", "reason": event.reason})
        elif isinstance(event, PublisherLost):
            live.publish(event.stream_id, "stream", {"status": "active", "protecting": True})
        elif isinstance(event, PublisherResumed):
            live.publish(event.stream_id, "stream", {"status": "active", "protecting": False})
        elif isinstance(event, OutputStateChanged):
            status = event.status
            live.publish(
                event.stream_id,
                "output",
                {
                    "destinationId": status.destination_id,
                    "state": status.state,
                    "lastError": status.last_error,
                },
            )

    async def _push_failed(self, failed: FailedPush) -> None:
        log.warning(
            "destination %s of session %s failed: %s",
            failed.destination_id,
            failed.session_id,
            failed.last_error,
        )
        at_ms = now_ms()

        async def record(once: str) -> None:
            async with self.db.begin() as session:
                queued = await push_failures.record_destination_failed(
                    session,
                    session_id=failed.session_id,
                    destination_id=failed.destination_id,
                    last_error=failed.last_error,
                    at_ms=at_ms,
                    once=once,
                )
            if queued:
                self.on_webhook_enqueued()

        try:
            await self._retried(f"destination.failed of session {failed.session_id}", record)
        except Exception:
            log.exception("failed to record destination.failed for %r", failed)

    async def _recorder_changed(self, event: OutputStateChanged) -> None:
        """A recorder stopped (its file is complete: upload the rest) or failed (it is no longer
        part of the session: a destination that cannot record is not charged)."""
        state = event.status.state
        if state not in ("stopped", "failed"):
            return
        async with self.db.begin() as session:
            changed = await archives.recording_finished(
                session,
                session_id=event.session_id,
                destination_id=event.status.destination_id,
                error=event.status.last_error if state == "failed" else None,
            )
            if state == "failed":
                live = await sessions.by_session_id(session, session_id=event.session_id)
                if live is not None and live.ended_ms is None:
                    await sessions.detach_destination(
                        session, live=live, destination_id=event.status.destination_id
                    )
        if changed:
            self.on_archive_changed()

    async def _publisher_event(self, event: PublisherLost | PublisherResumed, once: str) -> None:
        # Disconnect protection: the session stays open; only its webhooks are recorded.
        async with self.db.begin() as session:
            queued = await protection.record_publisher_event(session, event=event, once=once)
        if queued:
            self.on_webhook_enqueued()

    async def _instance_event(self, event: InstanceEvent, once: str) -> None:
        # v1 instances: an element's event becomes the account's webhook.
        async with self.db.begin() as session:
            queued = await instances.record_event(session, event=event, once=once)
        if queued:
            self.on_webhook_enqueued()

    async def _retried(self, what: str, record: Callable[[str], Awaitable[None]]) -> None:
        """Run ``record`` (one transaction) again while the database is unreachable
        (PostgreSQL restarting, or down for longer), however long that takes: what a media node
        reports (a session's end and its last charges, a publisher lost or back, an instance's
        event, a failed destination) carries money or a webhook, so it waits for the database
        rather than being dropped. Later engine events wait too, so they are still recorded in
        order. A node shutting down stops waiting (:meth:`LocalEngine.close` bounds the drain).

        ``record`` gets a key, the same on every try, for the webhooks it queues
        (:func:`webhooks.enqueue_event`'s ``once``): when a try's commit landed but its answer
        was lost, the next try fails on the deliveries' primary key, which means recorded.
        """
        once = secrets.token_hex(8)
        delay = 0.2
        retrying = False
        started = self._clock()
        said = -RETRY_LOG_EVERY_S
        while True:
            try:
                return await record(once)
            except IntegrityError:
                if not retrying:
                    raise
                log.info("%s was recorded by an earlier try", what)
                return
            except Exception as exc:
                if not database_unreachable(exc):
                    raise
                waited = self._clock() - started
                if waited - said >= RETRY_LOG_EVERY_S:
                    said = waited
                    log.warning(
                        "%s not recorded yet after %.0f s (%s); retrying", what, waited, exc
                    )
            retrying = True
            await self._sleep(delay)
            delay = min(delay * 2, RETRY_WAIT_MAX_S)

    async def _close_session(self, event: SessionEnded) -> None:
        async with self.db.begin() as session:
            live = await sessions.by_session_id(session, session_id=event.session_id)
            if live is None or live.ended_ms is not None:
                return
            if live.node_id != self.node_id:
                # Taken over by another node (stream shift): the session goes on there.
                log.info("session %s handed over to node %s", event.session_id, live.node_id)
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
            # Archives: every recording of the session is complete now.
            finished = await archives.recording_finished(
                session, session_id=event.session_id, destination_id=None
            )
            # Webhooks: the outbox row commits with the session's end.
            await webhooks.enqueue_stream_ended(session, live=live, created_ms=event.ended_at_ms)
        self.on_webhook_enqueued()
        if finished:
            self.on_archive_changed()
        log.info("session %s ended: %s", event.session_id, event.reason)
