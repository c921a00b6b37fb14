"""stream.started / stream.ended written by the control plane with the session change, delivered."""

from __future__ import annotations

import asyncio
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from simulcast.control.db.models import LedgerTransaction, LiveSession, WebhookDelivery
from simulcast.control.plane import ControlPlaneService
from simulcast.control.services import auth, streams
from simulcast.control.services import webhooks as svc
from simulcast.control.webhook_dispatcher import WebhookDispatcher
from simulcast.engine import PublishRequest, SessionEnded
from simulcast.settings import Settings
from tests.support.webhook_receiver import Receiver

SECRET = "whsec_events"


async def test_session_start_and_end_are_delivered(
    own_db: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    settings = Settings(data_dir=tmp_path, webhooks_allow_http=True, webhooks_allow_private=True)
    dispatcher = WebhookDispatcher(settings, own_db)
    plane = ControlPlaneService(
        own_db, "node-1", settings=settings, on_webhook_enqueued=dispatcher.notify
    )
    async with Receiver(secret=SECRET) as receiver:
        async with own_db.begin() as session:
            account = await auth.create_account(session, name="a", password=None)
            stream = await streams.create_stream(session, account_id=account.id, label="Main")
            other = await streams.create_stream(session, account_id=account.id, label="Other")
            for stream_id in (stream.id, other.id):
                await svc.create_webhook(
                    session,
                    account_id=account.id,
                    url=receiver.url,
                    events=["stream.started", "stream.ended"],
                    secret=SECRET,
                    stream_id=stream_id,
                )
        await dispatcher.start()
        try:
            grant = await plane.authorize_publish(
                PublishRequest(app="live", stream_key=stream.stream_key, query={}, remote_addr="x")
            )
            (started,) = await receiver.wait_for(1, within=5)
            async with own_db.begin() as session:
                live = await session.scalar(
                    select(LiveSession).where(LiveSession.session_id == grant.session_id)
                )
                assert live is not None
                for n, (kind, sats) in enumerate(
                    (("stream_minute", 2), ("stream_minute", 2), ("credit", 1000))
                ):
                    session.add(
                        LedgerTransaction(
                            idempotency_key=f"k{n}",
                            kind=kind,
                            account_id=account.id,
                            session_pk=live.id,
                            amount_sats=sats,
                            created_ms=live.started_ms,
                        )
                    )
            ended_ms = live.started_ms + 125_400
            await plane.on_engine_event(
                SessionEnded(
                    session_id=grant.session_id,
                    stream_id=stream.id,
                    reason="stopped",
                    ended_at_ms=ended_ms,
                    bytes_in=10,
                )
            )
            _, ended = await receiver.wait_for(2, within=5)
            await settled(own_db, within=5)
        finally:
            await dispatcher.stop()
    assert started.headers["x-simulcast-event"] == "stream.started"
    assert started.json()["data"] == {
        "sessionId": grant.session_id,
        "streamKeyId": stream.id,
        "label": "Main",
        "startedAt": live.started_ms,
    }
    assert started.json()["createdAt"] == live.started_ms
    assert ended.headers["x-simulcast-event"] == "stream.ended"
    assert ended.json()["createdAt"] == ended_ms
    assert ended.json()["data"] == {
        "sessionId": grant.session_id,
        "streamKeyId": stream.id,
        "label": "Main",
        "startedAt": live.started_ms,
        "endedAt": ended_ms,
        "durationSeconds": 125,
        "totalCostSats": 4,
        "reason": "stopped",
    }
    assert started.signature_ok and ended.signature_ok
    async with own_db() as session:
        statuses = (await session.scalars(select(WebhookDelivery.status))).all()
    assert list(statuses) == ["delivered", "delivered"]  # nothing for the other stream's hook


async def settled(db: async_sessionmaker[AsyncSession], within: float) -> None:
    """Wait until no delivery is pending."""
    query = select(WebhookDelivery.id).where(WebhookDelivery.status == "pending").limit(1)
    async with asyncio.timeout(within):
        while True:
            async with db() as session:
                if await session.scalar(query) is None:
                    return
            await asyncio.sleep(0.05)
