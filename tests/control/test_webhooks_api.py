"""The webhook management API on the real app (lifespan run, dispatcher live, real receivers)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from simulcast.control.services import auth
from simulcast.settings import Settings
from tests.support import free_port
from tests.support.webhook_receiver import Receiver

app_module = pytest.importorskip(
    "simulcast.app", reason="the app does not import yet", exc_type=ImportError
)

SECRET = "whsec_api"


@dataclass
class Api:
    """A running app and an authenticated client for a fresh account."""

    app: FastAPI
    client: httpx.AsyncClient

    async def new_account(self, name: str) -> dict[str, str]:
        async with self.app.state.ctx.db.begin() as session:
            account = await auth.create_account(session, name=name, password=None)
            key = await auth.create_api_key(session, account_id=account.id, kind="sk")
        return {"Authorization": f"Bearer {key}"}


@asynccontextmanager
async def running(tmp_path: Path, **overrides: Any) -> AsyncIterator[Api]:
    values: dict[str, Any] = {
        "data_dir": tmp_path,
        "http_host": "127.0.0.1",
        "http_port": free_port(),
        "rtmp_host": "127.0.0.1",
        "rtmp_port": free_port(),
        "srt_port": 0,
        "webhooks_allow_http": True,
        "webhooks_allow_private": True,
        "webhook_retry_base_seconds": 0.2,
        "rate_limit_per_minute": 10_000,
    }
    values.update(overrides)
    app = app_module.create_app(Settings(**values))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as client:
            yield Api(app, client)


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    async with running(tmp_path) as running_api:
        yield running_api


async def delivered(api: Api, headers: dict[str, str], hook_id: int) -> list[dict[str, Any]]:
    """The delivery log once nothing in it is pending."""
    async with asyncio.timeout(10):
        while True:
            response = await api.client.get(f"/api/webhooks/{hook_id}/deliveries", headers=headers)
            assert response.status_code == 200, response.text
            log: list[dict[str, Any]] = response.json()
            if log and all(d["status"] != "pending" for d in log):
                return log
            await asyncio.sleep(0.05)


async def test_create_list_test_log_delete(api: Api) -> None:
    headers = await api.new_account("owner")
    async with Receiver(secret=SECRET) as receiver:
        response = await api.client.post(
            "/api/webhooks",
            headers=headers,
            json={
                "url": receiver.url,
                "events": ["stream.started", "stream.ended"],
                "secret": SECRET,
            },
        )
        assert response.status_code == 200, response.text
        hook = response.json()
        assert hook["url"] == receiver.url and hook["hasSecret"] is True
        assert hook["events"] == ["stream.started", "stream.ended"]
        assert hook["streamKeyId"] is None and "secret" not in hook

        listed = (await api.client.get("/api/webhooks", headers=headers)).json()
        assert listed == [hook]

        response = await api.client.post(f"/api/webhooks/{hook['id']}/test", headers=headers)
        assert response.status_code == 200, response.text
        delivery_id = response.json()["deliveryId"]
        (request,) = await receiver.wait_for(1)
        assert request.headers["x-simulcast-delivery"] == delivery_id
        assert request.headers["x-simulcast-event"] == "test.ping"
        assert request.signature_ok is True
        assert request.json()["event"] == "test.ping" and request.json()["id"] == delivery_id

        (entry,) = await delivered(api, headers, hook["id"])
        assert entry["id"] == delivery_id and entry["event"] == "test.ping"
        assert (entry["status"], entry["attempts"], entry["lastStatusCode"]) == (
            "delivered",
            1,
            200,
        )
        assert entry["lastResponse"] == '{"seen": 1}' and entry["nextAttemptAt"] is None
        assert entry["deliveredAt"] >= entry["createdAt"]

        for _ in range(2):
            await api.client.post(f"/api/webhooks/{hook['id']}/test", headers=headers)
        await receiver.wait_for(3)
        log = await delivered(api, headers, hook["id"])
        assert [d["createdAt"] for d in log] == sorted((d["createdAt"] for d in log), reverse=True)
        short = await api.client.get(
            f"/api/webhooks/{hook['id']}/deliveries", headers=headers, params={"limit": 2}
        )
        assert [d["id"] for d in short.json()] == [d["id"] for d in log[:2]]

        other = await api.new_account("stranger")
        for method, path in (
            ("DELETE", f"/api/webhooks/{hook['id']}"),
            ("POST", f"/api/webhooks/{hook['id']}/test"),
            ("GET", f"/api/webhooks/{hook['id']}/deliveries"),
        ):
            response = await api.client.request(method, path, headers=other)
            assert response.status_code == 404 and "error" in response.json()
        assert (await api.client.get("/api/webhooks", headers=other)).json() == []

        response = await api.client.delete(f"/api/webhooks/{hook['id']}", headers=headers)
        assert response.status_code == 200 and response.json()["success"] is True
        assert (await api.client.get("/api/webhooks", headers=headers)).json() == []
        response = await api.client.post(f"/api/webhooks/{hook['id']}/test", headers=headers)
        assert response.status_code == 404


async def test_public_keys_are_refused_everywhere(api: Api) -> None:
    headers = await api.new_account("owner")
    response = await api.client.post(
        "/api/streams",
        headers=headers,
        json={"label": "s", "destinations": [{"type": "self-hosted"}]},
    )
    assert response.status_code == 200, response.text
    pk = response.json()["destinations"][0]["apiKey"]
    assert pk.startswith("pk_")
    for method, path in (
        ("GET", "/api/webhooks"),
        ("POST", "/api/webhooks"),
        ("DELETE", "/api/webhooks/1"),
        ("POST", "/api/webhooks/1/test"),
        ("GET", "/api/webhooks/1/deliveries"),
    ):
        response = await api.client.request(
            method,
            path,
            headers={"X-API-Key": pk},
            json={"url": "https://x.example/", "events": ["test.ping"]},
        )
        assert response.status_code == 403, (method, path)
        assert "sk_" in response.json()["error"]
    response = await api.client.get("/api/webhooks")
    assert response.status_code == 401


async def test_validation_errors_name_the_field(api: Api) -> None:
    headers = await api.new_account("owner")
    other = await api.new_account("other")
    foreign = (await api.client.post("/api/streams", headers=other, json={"label": "x"})).json()
    good = {"url": "https://hooks.example/cb", "events": ["stream.started"]}
    cases: list[tuple[dict[str, Any], str]] = [
        ({"events": ["stream.started"]}, "url"),
        ({**good, "url": "ftp://hooks.example/"}, "url"),
        ({**good, "url": "https://"}, "url"),
        ({"url": good["url"]}, "events"),
        ({**good, "events": []}, "events"),
        ({**good, "events": ["stream.started", "nope"]}, "events"),
        ({**good, "stream_key_id": foreign["id"]}, "stream_key_id"),
        ({**good, "stream_key_id": "abc"}, "stream_key_id"),
        ({**good, "colour": "red"}, "colour"),
    ]
    for body, field in cases:
        response = await api.client.post("/api/webhooks", headers=headers, json=body)
        assert response.status_code == 400, (body, response.text)
        error = response.json()
        assert error["field"] == field, (body, error)
        assert field in error["error"], error
    mine = (await api.client.post("/api/streams", headers=headers, json={"label": "m"})).json()
    response = await api.client.post(
        "/api/webhooks", headers=headers, json={**good, "streamKeyId": mine["id"]}
    )
    assert response.status_code == 200 and response.json()["streamKeyId"] == mine["id"]
    assert (await api.client.get("/api/webhooks", headers=other)).json() == []


async def test_https_and_private_address_guard_at_creation(tmp_path: Path) -> None:
    async with running(tmp_path, webhooks_allow_http=False, webhooks_allow_private=False) as api:
        headers = await api.new_account("owner")
        for url, words in (
            ("http://hooks.example/cb", "https"),
            ("https://127.0.0.1/cb", "private"),
            ("https://localhost:8443/cb", "private"),
            ("https://169.254.169.254/latest/meta-data", "private"),
            ("https://[fd00:ec2::254]/", "private"),
            ("https://10.0.0.7/", "private"),
        ):
            response = await api.client.post(
                "/api/webhooks", headers=headers, json={"url": url, "events": ["test.ping"]}
            )
            assert response.status_code == 400, url
            assert response.json()["field"] == "url" and words in response.json()["error"]
        assert (await api.client.get("/api/webhooks", headers=headers)).json() == []
