"""Disconnect protection through the whole stack in one process: the API's stream settings and
live state, the HLS playlist growing through the gap, and the webhooks a real receiver gets."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import httpx
import m3u8
import pytest

from simulcast.app import create_app
from simulcast.control.services import auth
from tests.support import loopback_settings, poll_until
from tests.support.hls import complete
from tests.support.media import Processes
from tests.support.webhook_receiver import Receiver

pytestmark = pytest.mark.media


async def test_api_hls_and_webhooks_through_a_protected_gap(
    tmp_path: Any, procs: Processes
) -> None:
    settings = loopback_settings(
        tmp_path,
        hls_segment_seconds=1.0,
        webhooks_allow_http=True,
        webhooks_allow_private=True,
        webhook_retry_base_seconds=0.2,
    )
    app = create_app(settings)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as api,
        Receiver() as receiver,
    ):
        async with app.state.ctx.db.begin() as session:
            account = await auth.create_account(session, name="p", password=None)
            key = await auth.create_api_key(session, account_id=account.id, kind="sk")
        api.headers["Authorization"] = f"Bearer {key}"

        default = (await api.post("/api/streams", json={"label": "d"})).json()
        assert default["protection"] == {"enabled": True, "graceSeconds": 120}
        too_long = await api.post("/api/streams", json={"protection": {"graceSeconds": 1801}})
        assert too_long.status_code in (400, 422)
        created = (
            await api.post(
                "/api/streams",
                json={
                    "label": "protected",
                    "protection": {"graceSeconds": 5},
                    "destinations": [{"type": "self-hosted", "config": {"mode": "production"}}],
                },
            )
        ).json()
        sid = created["id"]
        patched = await api.patch(f"/api/streams/{sid}", json={"protection": {"graceSeconds": 20}})
        assert patched.json()["protection"] == {"enabled": True, "graceSeconds": 20}
        hls = created["destinations"][0]
        events = ["stream.started", "stream.disconnected", "stream.resumed", "stream.ended"]
        hook = await api.post(
            "/api/webhooks", json={"url": receiver.url, "events": events, "stream_key_id": sid}
        )
        assert hook.status_code == 200, hook.text

        async def segments() -> int:
            response = await api.get(
                f"/hls/{hls['playbackToken']}/index.m3u8", params={"apiKey": hls["apiKey"]}
            )
            if response.status_code != 200:
                return 0
            parsed = m3u8.loads(response.text)
            return int(parsed.media_sequence or 0) + len(parsed.segments)

        first = await procs.publish(settings.rtmp_port, created["streamKey"], seconds=60)
        await poll_until(lambda: _at_least(segments, 3), 15, "HLS segments")
        first.kill()

        async def protecting() -> dict[str, Any] | None:
            body: dict[str, Any] = (await api.get(f"/api/streams/{sid}")).json()
            return body if body["protecting"] else None

        body = await poll_until(protecting, 5, "protecting")
        assert body["status"] == "active" and 15 <= body["protectionSecondsLeft"] <= 20
        assert body["destinations"][0]["protecting"] is True
        assert body["destinations"][0]["state"] == "live"
        before = await segments()
        await asyncio.sleep(5)  # a gap of 5 s (the resumed webhook's gapSeconds is checked)
        # The slate is more segments (one per 2 s slate GOP), not a stall.
        assert await segments() >= before + 2

        second = await procs.publish(settings.rtmp_port, created["streamKey"], seconds=60)
        await receiver.wait_for(3, within=15)
        body = (await api.get(f"/api/streams/{sid}")).json()
        assert not body["protecting"] and body["protectionSecondsLeft"] is None
        resumed_at = await segments()
        await poll_until(lambda: _at_least(segments, resumed_at + 2), 15, "live segments again")
        playlist = await api.get(
            f"/hls/{hls['playbackToken']}/index.m3u8", params={"apiKey": hls["apiKey"]}
        )
        # Live -> slate -> live at the same size: new init sections, no discontinuity.
        assert "#EXT-X-DISCONTINUITY\n" not in playlist.text
        assert len({s.init_section.uri for s in complete(m3u8.loads(playlist.text))}) >= 2
        stopped = await api.post(f"/api/streams/{sid}/stop")
        assert stopped.status_code == 200
        await receiver.wait_for(4, within=15)
        with contextlib.suppress(ProcessLookupError):  # kicked by the stop, it may be gone
            second.kill()

    names = [r.headers["x-simulcast-event"] for r in receiver.requests]
    assert names == events
    lost, resumed, ended = (r.json()["data"] for r in receiver.requests[1:])
    assert lost["graceSeconds"] == 20 and lost["reason"] == "publisher_disconnected"
    assert resumed["shift"] is False and 4 <= resumed["gapSeconds"] <= 10
    assert ended["reason"] == "stopped"


async def _at_least(count: Any, n: int) -> bool:
    return bool(await count() >= n)
