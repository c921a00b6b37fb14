"""The dispatcher against real HTTP receivers on loopback: retries, timeouts, order, restarts."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from simulcast.control.db.models import WebhookDelivery
from simulcast.control.db.session import create_engine, session_factory, upgrade_schema
from simulcast.control.services import auth
from simulcast.control.services import webhooks as svc
from simulcast.control.timeutil import now_ms
from simulcast.control.webhook_dispatcher import WebhookDispatcher
from simulcast.settings import Settings
from tests.support.webhook_receiver import Receiver

SECRET = "whsec_dispatch"


@dataclass
class World:
    """A database with one account, and a way to run dispatchers on it."""

    tmp_path: Path
    database_url: str
    engine: AsyncEngine
    db: async_sessionmaker[AsyncSession]
    account_id: int
    dispatchers: list[WebhookDispatcher]

    def settings(self, **overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "data_dir": self.tmp_path,
            "database_url": self.database_url,
            "webhooks_allow_http": True,
            "webhooks_allow_private": True,
            "webhook_retry_base_seconds": 0.2,
            "webhook_timeout_seconds": 2.0,
            "webhook_poll_seconds": 0.5,
        }
        values.update(overrides)
        return Settings(**values)

    async def dispatcher(self, **overrides: Any) -> WebhookDispatcher:
        dispatcher = WebhookDispatcher(self.settings(**overrides), self.db)
        self.dispatchers.append(dispatcher)
        await dispatcher.start()
        return dispatcher

    async def webhook(self, url: str, events: list[str], secret: str | None = SECRET) -> int:
        async with self.db.begin() as session:
            hook = await svc.create_webhook(
                session,
                account_id=self.account_id,
                url=url,
                events=events,
                secret=secret,
                stream_id=None,
            )
            return hook.id

    async def emit(self, event: str = "stream.started", **data: Any) -> list[str]:
        async with self.db.begin() as session:
            ids = await svc.enqueue_event(
                session, account_id=self.account_id, stream_id=None, event=event, data=data
            )
        for dispatcher in self.dispatchers:
            dispatcher.notify()
        return ids

    async def delivery(self, delivery_id: str) -> WebhookDelivery:
        async with self.db() as session:
            row = await session.get(WebhookDelivery, delivery_id)
        assert row is not None
        return row

    async def settled(self, delivery_id: str, within: float = 10.0) -> WebhookDelivery:
        return await until(
            lambda: self.delivery(delivery_id), lambda r: r.status != "pending", within
        )


async def until(
    get: Callable[[], Awaitable[WebhookDelivery]],
    done: Callable[[WebhookDelivery], bool],
    within: float,
) -> WebhookDelivery:
    async with asyncio.timeout(within):
        while True:
            row = await get()
            if done(row):
                return row
            await asyncio.sleep(0.05)


@pytest.fixture
async def world(tmp_path: Path, database_url: str) -> AsyncIterator[World]:
    engine = create_engine(Settings(data_dir=tmp_path, database_url=database_url))
    await upgrade_schema(engine)
    db = session_factory(engine)
    async with db.begin() as session:
        account = await auth.create_account(session, name="acct", password=None)
    w = World(tmp_path, database_url, engine, db, account.id, [])
    yield w
    for dispatcher in w.dispatchers:
        await dispatcher.stop()
    await w.engine.dispose()  # the test may have replaced the engine (a restart)


async def test_retries_500_twice_then_200_with_same_id_and_valid_signatures(world: World) -> None:
    async with Receiver(statuses=[500, 500, 200], secret=SECRET) as receiver:
        await world.dispatcher(webhook_response_cap_bytes=5)
        await world.webhook(receiver.url, ["stream.started"])
        (delivery_id,) = await world.emit(sessionId="S1")
        requests = await receiver.wait_for(3)
        row = await world.settled(delivery_id)
    assert [r.headers["x-simulcast-delivery"] for r in requests] == [delivery_id] * 3
    assert all(r.signature_ok for r in requests)
    assert {r.body for r in requests} == {row.body.encode()}
    first = requests[0]
    assert first.method == "POST" and first.path == "/hook"
    assert first.headers["x-simulcast-event"] == "stream.started"
    assert first.headers["content-type"] == "application/json"
    assert first.headers["user-agent"].startswith("Simulcast-Webhooks/")
    assert abs(int(first.headers["x-simulcast-timestamp"]) - time.time()) < 30
    body = first.json()
    assert body["id"] == delivery_id and body["event"] == "stream.started"
    assert body["data"] == {"sessionId": "S1"} and isinstance(body["createdAt"], int)
    assert (row.status, row.attempts, row.last_status_code) == ("delivered", 3, 200)
    assert row.last_response == '{"see'  # capped at webhook_response_cap_bytes
    assert row.delivered_ms is not None
    assert len(requests) == 3


async def test_no_signature_without_secret(world: World) -> None:
    async with Receiver() as receiver:
        await world.dispatcher()
        await world.webhook(receiver.url, ["stream.ended"], secret=None)
        (delivery_id,) = await world.emit("stream.ended")
        (request,) = await receiver.wait_for(1)
        await world.settled(delivery_id)
    assert "x-simulcast-signature" not in request.headers


async def test_hanging_receiver_times_out_and_retries_while_others_get_events(
    world: World,
) -> None:
    async with Receiver(hang=True) as slow, Receiver(secret=SECRET) as fast:
        # The slow receiver's first attempt hangs for the whole timeout; the fast receiver must
        # get both events inside it (generous, so a loaded CI machine cannot fake a failure).
        await world.dispatcher(webhook_timeout_seconds=3.0)
        slow_hook = await world.webhook(slow.url, ["stream.started"])
        await world.webhook(fast.url, ["stream.started"])
        started = time.monotonic()
        await world.emit(n=1)
        await fast.wait_for(1, within=2.5)
        await slow.wait_for(1, within=2.5)
        await world.emit(n=2)  # while the slow one is still hanging
        await fast.wait_for(2, within=2.5)
        assert time.monotonic() - started < 3.0
        await slow.wait_for(2, within=12)  # timed out, then retried
        async with world.db() as session:
            rows = await svc.list_deliveries(session, webhook_id=slow_hook, limit=10)
        first = next(r for r in rows if json.loads(r.body)["data"] == {"n": 1})
        assert first.last_error is not None and "timed out" in first.last_error
        assert first.attempts >= 1 and first.status == "pending"
    assert all(r.signature_ok for r in fast.requests)


async def test_one_webhook_is_fifo_by_event_time(world: World) -> None:
    async with Receiver(statuses=[500, 200]) as receiver:
        await world.webhook(receiver.url, ["stream.started", "stream.ended"])
        base = now_ms()
        async with world.db.begin() as session:
            ids = [
                (
                    await svc.enqueue_event(
                        session,
                        account_id=world.account_id,
                        stream_id=None,
                        event="stream.ended" if n % 2 else "stream.started",
                        data={"n": n},
                        created_ms=base + n,
                    )
                )[0]
                for n in (2, 0, 1)  # enqueued out of order: event time decides
            ]
        await world.dispatcher()
        requests = await receiver.wait_for(4)
        await world.settled(ids[0])
    order = [r.json()["data"]["n"] for r in requests]
    assert order == [0, 0, 1, 2]  # the retry of 0 holds back 1 and 2


async def test_pending_deliveries_survive_a_restart(world: World) -> None:
    async with Receiver(hang=True) as receiver:
        first = await world.dispatcher()
        await world.webhook(receiver.url, ["stream.started"])
        (delivery_id,) = await world.emit()
        await receiver.wait_for(1)
        await first.stop()  # killed mid-attempt, before any answer
        world.dispatchers.remove(first)
        # Rows written while no dispatcher runs are picked up too.
        (queued_id,) = await world.emit(event="stream.started", later=True)
        await world.engine.dispose()

        receiver.hang = False
        world.engine = create_engine(world.settings())
        world.db = session_factory(world.engine)
        await world.dispatcher()
        requests = await receiver.wait_for(3)
        row = await world.settled(delivery_id)
        queued = await world.settled(queued_id)
    assert [r.headers["x-simulcast-delivery"] for r in requests] == [
        delivery_id,
        delivery_id,
        queued_id,
    ]
    assert (row.status, row.attempts) == ("delivered", 2)
    assert (queued.status, queued.attempts) == ("delivered", 1)


async def test_send_time_guard_refuses_private_targets(world: World) -> None:
    async with Receiver() as receiver:
        # Created while private targets were allowed; the operator has since forbidden them.
        await world.webhook(receiver.url, ["stream.started"])
        await world.dispatcher(webhooks_allow_private=False, webhook_max_age_seconds=0.5)
        (delivery_id,) = await world.emit()
        row = await world.settled(delivery_id)
    assert row.status == "failed" and row.attempts >= 1
    assert row.last_error is not None and "private or reserved" in row.last_error
    assert receiver.requests == []


async def test_gives_up_after_the_retry_window(world: World) -> None:
    async with Receiver(statuses=[503]) as receiver:
        await world.dispatcher(webhook_max_age_seconds=1.0)
        await world.webhook(receiver.url, ["stream.started"])
        (delivery_id,) = await world.emit()
        row = await world.settled(delivery_id, within=5)
    assert row.status == "failed" and row.last_status_code == 503
    assert row.attempts == len(receiver.requests) >= 2


async def test_redirects_are_not_followed(world: World) -> None:
    async with Receiver(statuses=[302]) as receiver:
        await world.dispatcher(webhook_max_age_seconds=0.3)
        await world.webhook(receiver.url, ["stream.started"])
        (delivery_id,) = await world.emit()
        row = await world.settled(delivery_id)
    assert row.status == "failed" and row.last_status_code == 302
    assert all(r.path == "/hook" for r in receiver.requests)


async def test_two_dispatchers_share_the_outbox(world: World) -> None:
    """Two nodes on one database: every delivery is sent once, each webhook in order."""
    async with Receiver() as first, Receiver() as second:
        await world.dispatcher()
        await world.dispatcher()
        for receiver in (first, second):
            await world.webhook(receiver.url, ["stream.started"])
        for n in range(10):
            await world.emit(n=n)
        await first.wait_for(10)
        await second.wait_for(10)
        await asyncio.sleep(0.3)  # no duplicates trail in
    for receiver in (first, second):
        assert [r.json()["data"]["n"] for r in receiver.requests] == list(range(10))


async def test_a_2xx_whose_body_stalls_counts_as_delivered(world: World) -> None:
    async with Receiver(stall_body=True) as receiver:
        await world.dispatcher(webhook_timeout_seconds=0.5)
        await world.webhook(receiver.url, ["stream.started"])
        (delivery_id,) = await world.emit()
        row = await world.settled(delivery_id)
    assert (row.status, row.attempts, row.last_status_code) == ("delivered", 1, 200)
    assert row.last_response == '{"seen": 1}'
