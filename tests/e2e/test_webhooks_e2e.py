"""End to end: a real ffmpeg publish drives stream.started and stream.ended to a real receiver."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from simulcast.control.services import auth
from tests.support import loopback_settings
from tests.support.webhook_receiver import Receiver

pytest.importorskip("simulcast.media.local_engine", reason="the media engine has not landed")
app_module = pytest.importorskip(
    "simulcast.app", reason="the app does not import yet", exc_type=ImportError
)
imageio_ffmpeg = pytest.importorskip("imageio_ffmpeg")

pytestmark = pytest.mark.media

SECRET = "whsec_e2e"


async def publish(rtmp_port: int, stream_key: str) -> asyncio.subprocess.Process:
    """ffmpeg publishing test video and a tone in real time (until stopped)."""
    return await asyncio.create_subprocess_exec(
        imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-nostats", "-re",
        "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=30",
        "-f", "lavfi", "-i", "sine=frequency=440",
        "-pix_fmt", "yuv420p", "-c:v", "libx264", "-preset", "ultrafast", "-g", "30",
        "-c:a", "aac", "-t", "30",
        "-f", "flv", f"rtmp://127.0.0.1:{rtmp_port}/live/{stream_key}",
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


async def test_publish_and_stop_deliver_signed_events(tmp_path: Path) -> None:
    settings = loopback_settings(
        tmp_path,
        webhooks_allow_http=True,
        webhooks_allow_private=True,
        webhook_retry_base_seconds=0.2,
    )
    app = app_module.create_app(settings)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://api.test"
        ) as client,
        Receiver(secret=SECRET) as receiver,
    ):
        async with app.state.ctx.db.begin() as session:
            account = await auth.create_account(session, name="e2e", password=None)
            key = await auth.create_api_key(session, account_id=account.id, kind="sk")
        headers = {"Authorization": f"Bearer {key}"}
        stream = (await client.post("/api/streams", headers=headers, json={"label": "E2E"})).json()
        response = await client.post(
            "/api/webhooks",
            headers=headers,
            json={
                "url": receiver.url,
                "events": ["stream.started", "stream.ended"],
                "secret": SECRET,
                "stream_key_id": stream["id"],
            },
        )
        assert response.status_code == 200, response.text
        hook_id = response.json()["id"]

        publisher = await publish(settings.rtmp_port, stream["streamKey"])
        try:
            (started,) = await receiver.wait_for(1, within=15)
            began = time.monotonic()
            await asyncio.sleep(1.5)
            response = await client.post(f"/api/streams/{stream['id']}/stop", headers=headers)
            assert response.status_code == 200, response.text
            _, ended = await receiver.wait_for(2, within=15)
            elapsed = time.monotonic() - began
        finally:
            with contextlib.suppress(ProcessLookupError):
                publisher.kill()
            await publisher.wait()
        await asyncio.sleep(0.5)  # nothing else may arrive
        log: list[dict[str, Any]] = (
            await client.get(f"/api/webhooks/{hook_id}/deliveries", headers=headers)
        ).json()

    assert len(receiver.requests) == 2
    assert [r.headers["x-simulcast-event"] for r in receiver.requests] == [
        "stream.started",
        "stream.ended",
    ]
    assert all(r.signature_ok for r in receiver.requests)
    start, end = started.json(), ended.json()
    assert start["event"] == "stream.started" and end["event"] == "stream.ended"
    assert start["id"] == started.headers["x-simulcast-delivery"]
    session_id = start["data"]["sessionId"]
    assert start["data"] == {
        "sessionId": session_id,
        "streamKeyId": stream["id"],
        "label": "E2E",
        "startedAt": start["createdAt"],
    }
    data = end["data"]
    assert data["sessionId"] == session_id and data["streamKeyId"] == stream["id"]
    assert data["reason"] == "stopped" and data["totalCostSats"] == 0
    assert data["endedAt"] == end["createdAt"] >= data["startedAt"]
    assert 1 <= data["durationSeconds"] <= elapsed + 2
    assert [d["event"] for d in log] == ["stream.ended", "stream.started"]
    assert all(d["status"] == "delivered" and d["attempts"] == 1 for d in log)
