"""Webhook service: subscriptions, the outbox rows enqueue writes, the address guard, pinning."""

from __future__ import annotations

import ipaddress
import json

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from simulcast.control.db.models import WebhookDelivery
from simulcast.control.services import auth, streams
from simulcast.control.services import webhooks as svc
from simulcast.control.webhook_dispatcher import pinned_request
from tests.support.webhook_receiver import Receiver


async def test_enqueue_writes_one_row_per_matching_webhook(
    own_db: async_sessionmaker[AsyncSession],
) -> None:
    async with own_db.begin() as session:
        account = await auth.create_account(session, name="a", password=None)
        other = await auth.create_account(session, name="b", password=None)
        s1 = await streams.create_stream(session, account_id=account.id, label="one")
        s2 = await streams.create_stream(session, account_id=account.id, label="two")
        url = "https://hooks.example/x"

        async def hook(account_id: int, events: list[str], stream_id: int | None = None) -> int:
            created = await svc.create_webhook(
                session,
                account_id=account_id,
                url=url,
                events=events,
                secret=None,
                stream_id=stream_id,
            )
            return created.id

        all_streams = await hook(account.id, ["stream.started", "stream.ended"])
        only_s1 = await hook(account.id, ["stream.started"], s1.id)
        await hook(account.id, ["stream.started"], s2.id)
        await hook(account.id, ["stream.ended"])
        await hook(other.id, ["stream.started"])
        gone = await svc.get_webhook(
            session, account_id=account.id, webhook_id=await hook(account.id, ["stream.started"])
        )
        assert gone is not None
        await svc.delete_webhook(session, webhook=gone)

        ids = await svc.enqueue_event(
            session,
            account_id=account.id,
            stream_id=s1.id,
            event="stream.started",
            data={"sessionId": "S1"},
            created_ms=1234,
        )
    assert len(ids) == 2 and len(set(ids)) == 2
    async with own_db() as session:
        rows = (await session.scalars(select(WebhookDelivery))).all()
    assert sorted(r.webhook_id for r in rows) == sorted([all_streams, only_s1])
    for row in rows:
        assert json.loads(row.body) == {
            "id": row.id,
            "event": "stream.started",
            "createdAt": 1234,
            "data": {"sessionId": "S1"},
        }
        assert (row.status, row.attempts, row.created_ms) == ("pending", 0, 1234)

    async with own_db.begin() as session:
        hook = await svc.get_webhook(session, account_id=account.id, webhook_id=only_s1)
        assert hook is not None
        await svc.delete_webhook(session, webhook=hook)
    async with own_db() as session:
        rows = (await session.scalars(select(WebhookDelivery))).all()
    assert {r.webhook_id: (r.status, r.last_error) for r in rows} == {
        all_streams: ("pending", None),
        only_s1: ("failed", "webhook deleted"),
    }


async def test_create_validates_events_and_stream_ownership(
    own_db: async_sessionmaker[AsyncSession],
) -> None:
    async with own_db.begin() as session:
        account = await auth.create_account(session, name="a", password=None)
        other = await auth.create_account(session, name="b", password=None)
        foreign = await streams.create_stream(session, account_id=other.id, label="x")
        cases: list[tuple[list[str], int | None, str]] = [
            ([], None, "events"),
            (["stream.started", "stream.exploded"], None, "events"),
            (["stream.started"], foreign.id, "stream_key_id"),
            (["stream.started"], 999, "stream_key_id"),
        ]
        for events, stream_id, culprit in cases:
            with pytest.raises(svc.WebhookError) as info:
                await svc.create_webhook(
                    session,
                    account_id=account.id,
                    url="https://x.example/",
                    events=events,
                    secret=None,
                    stream_id=stream_id,
                )
            assert info.value.field == culprit
        hook = await svc.create_webhook(
            session,
            account_id=account.id,
            url="https://x.example/",
            events=["stream.ended", "stream.ended", "test.ping"],
            secret="",
            stream_id=None,
        )
        assert hook.events == ["stream.ended", "test.ping"] and hook.secret is None


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",
        "100.64.0.1",
        "0.0.0.0",
        "224.0.0.1",
        "::1",
        "fd00:ec2::254",
        "fe80::1",
        "::ffff:127.0.0.1",
        "::ffff:169.254.169.254",
    ],
)
def test_forbidden_addresses(address: str) -> None:
    assert svc.forbidden_address(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", ["93.184.216.34", "1.1.1.1", "2606:4700:4700::1111"])
def test_public_addresses_allowed(address: str) -> None:
    assert not svc.forbidden_address(ipaddress.ip_address(address))


@pytest.mark.parametrize(
    ("url", "allow_http"),
    [
        ("http://hooks.example/x", False),
        ("ftp://hooks.example/x", True),
        ("https:///nohost", False),
        ("https://user:pw@hooks.example/", False),
        ("https://hooks.example:99999/", False),
        ("not a url", False),
    ],
)
def test_url_shape_refusals(url: str, allow_http: bool) -> None:
    with pytest.raises(svc.WebhookError) as info:
        svc.check_url_shape(url, allow_http=allow_http)
    assert info.value.field == "url"


def test_url_shape_accepts() -> None:
    assert svc.check_url_shape("https://h.example/p?q=1", allow_http=False) == (
        "https",
        "h.example",
        443,
    )
    assert svc.check_url_shape("http://h.example:8080/", allow_http=True)[2] == 8080


async def test_guard_resolves_names() -> None:
    for url in ("https://localhost/x", "https://127.0.0.1/x", "https://[::1]:8443/x"):
        with pytest.raises(svc.WebhookError, match="private or reserved"):
            await svc.check_url(url, allow_http=False, allow_private=False)
        await svc.check_url(url, allow_http=False, allow_private=True)
    with pytest.raises(svc.WebhookError, match="does not resolve"):
        await svc.check_url("https://nonexistent.invalid/x", allow_http=False, allow_private=False)


def test_pinned_request_keeps_host_and_sni() -> None:
    url, headers, ext = pinned_request("https://hooks.example:8443/a/b?c=1", "203.0.113.7")
    assert url == "https://203.0.113.7:8443/a/b?c=1"
    assert headers == {"Host": "hooks.example:8443"}
    assert ext == {"sni_hostname": "hooks.example"}
    url, headers, _ = pinned_request("https://hooks.example", "2001:db8::1")
    assert url == "https://[2001:db8::1]/" and headers == {"Host": "hooks.example"}


async def test_pinned_request_reaches_the_pinned_address() -> None:
    async with Receiver() as receiver:
        port = receiver.url.split(":")[2].split("/")[0]
        url, headers, ext = pinned_request(f"http://hooks.invalid:{port}/hook", "127.0.0.1")
        async with httpx.AsyncClient() as client:
            response = await client.post(url, headers=headers, extensions=ext, content=b"{}")
        assert response.status_code == 200
        assert receiver.requests[0].headers["host"] == f"hooks.invalid:{port}"


async def test_an_event_queued_again_with_its_once_key_is_refused_not_doubled(
    own_db: async_sessionmaker[AsyncSession],
) -> None:
    """A transaction tried again after its commit may have landed: the same ``once`` key
    makes the same delivery ids, so the second try fails instead of queueing the event twice."""
    async with own_db.begin() as session:
        account = await auth.create_account(session, name="a", password=None)
        for url in ("https://one.example/x", "https://two.example/x"):
            await svc.create_webhook(
                session,
                account_id=account.id,
                url=url,
                events=["stream.disconnected"],
                secret=None,
                stream_id=None,
            )

    async def enqueue(once: str) -> list[str]:
        async with own_db.begin() as session:
            return await svc.enqueue_event(
                session,
                account_id=account.id,
                stream_id=None,
                event="stream.disconnected",
                data={"sessionId": "S1"},
                created_ms=1234,
                once=once,
            )

    first = await enqueue("k1")
    assert len(set(first)) == 2
    with pytest.raises(IntegrityError):
        await enqueue("k1")
    other = await enqueue("k2")  # another event at the same moment: its own deliveries
    assert not set(other) & set(first)
    async with own_db() as session:
        rows = (await session.scalars(select(WebhookDelivery))).all()
    assert sorted(r.id for r in rows) == sorted(first + other)
    assert all(json.loads(r.body)["id"] == r.id for r in rows)
