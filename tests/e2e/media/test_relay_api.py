"""The whole stack: ffmpeg publishes to ``simulcast serve``; the control plane (real database,
real API) decides the outputs; real RTMP receivers record what the pushes deliver."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support import ServerProcess, poll_until, server_fixture
from tests.support.media import Processes, probe

pytestmark = pytest.mark.media


server = server_fixture(push_retry_min_seconds="0.3", push_retry_max_seconds="1")


async def test_publish_fans_out_and_the_api_steers_live_outputs(
    server: ServerProcess, procs: Processes, tmp_path: Path
) -> None:
    sk = await asyncio.to_thread(server.create_account, None, None, 1_000_000)
    api = httpx.AsyncClient(base_url=server.base_url, headers={"Authorization": f"Bearer {sk}"})
    port_a, rec_a = await procs.receiver(tmp_path / "a.flv")
    port_b, rec_b = await procs.receiver(tmp_path / "b.flv")
    created = (
        await api.post(
            "/api/streams",
            json={
                "label": "fan-out",
                "destinations": [
                    {"type": "rtmp", "config": {"url": f"rtmp://127.0.0.1:{port_a}/app/k"}},
                    {"type": "rtmp", "config": {"url": f"rtmp://127.0.0.1:{port_b}/app/k"}},
                ],
            },
        )
    ).json()
    stream_id = created["id"]
    dest_a, dest_b = (d["id"] for d in created["destinations"])
    publisher = await procs.publish(server.rtmp_port, created["streamKey"], seconds=30)

    async def live_destinations() -> dict[int, dict[str, Any]] | None:
        body = (await api.get(f"/api/streams/{stream_id}")).json()
        states = {d["id"]: d for d in body["destinations"]}
        if body["status"] == "active" and all(
            d["state"] == "live" and d["bytesSent"] > 0 for d in states.values()
        ):
            return states
        return None

    states = await poll_until(live_destinations, 10, "both pushes live")
    assert states[dest_a]["url"] == f"rtmp://127.0.0.1:{port_a}/app/****"

    # A destination added while live starts pushing at once.
    port_c, rec_c = await procs.receiver(tmp_path / "c.flv")
    added = (
        await api.post(
            f"/api/streams/{stream_id}/destinations",
            json={"type": "rtmp", "config": {"url": f"rtmp://127.0.0.1:{port_c}/app/k"}},
        )
    ).json()
    after_add = (await api.get(f"/api/streams/{stream_id}/destinations")).json()
    assert {d["id"]: d["state"] for d in after_add}[added["id"]] in ("connecting", "live")

    async def c_live() -> bool:
        rows = (await api.get(f"/api/streams/{stream_id}/destinations")).json()
        return any(d["id"] == added["id"] and d["state"] == "live" for d in rows)

    await poll_until(c_live, 3, "the added destination live")

    # Disabling a destination stops its push: the receiver sees its publisher leave and exits.
    await api.patch(f"/api/streams/{stream_id}/destinations/{dest_b}", json={"enabled": False})
    await asyncio.wait_for(rec_b.wait(), 5)
    await asyncio.sleep(2)  # let the others record a little more

    # Stop: publisher and remaining pushes end.
    stop = await api.post(f"/api/streams/{stream_id}/stop")
    assert stop.json() == {"success": True, "message": "Stop signal sent"}
    await asyncio.wait_for(publisher.wait(), 5)
    await asyncio.wait_for(asyncio.gather(rec_a.wait(), rec_c.wait()), 10)

    # The stop is answered once the media plane has ended the session; the control plane
    # records that end from its event queue just after (on a loaded machine, after the pushes'
    # receivers have already exited).
    async def c_idle() -> dict[str, Any] | None:
        body: dict[str, Any] = (await api.get(f"/api/streams/{stream_id}")).json()
        return body if body["status"] == "idle" else None

    body = await poll_until(c_idle, 10, "the stopped stream idle")
    assert body["startedAt"] is None
    history = (await api.get("/api/stream-history", params={"streamKeyId": stream_id})).json()
    assert {row["platform"] for row in history} == {"Custom"}
    assert all(row["endedAt"] is not None for row in history)

    for path in ("a.flv", "b.flv", "c.flv"):
        media = probe(tmp_path / path)
        assert media.video_frames > 15, path
        assert media.audio_packets > 0, path
        assert media.first_video_keyframe, path
        assert media.monotonic, path
    # c joined later, starting at the GOP cached from the last keyframe.
    assert probe(tmp_path / "a.flv").video_frames >= probe(tmp_path / "c.flv").video_frames
    await api.aclose()


async def test_unknown_key_is_refused_and_a_live_key_cannot_publish_twice(
    server: ServerProcess, procs: Processes
) -> None:
    sk = await asyncio.to_thread(server.create_account)
    api = httpx.AsyncClient(base_url=server.base_url, headers={"Authorization": f"Bearer {sk}"})
    bad = await procs.publish(server.rtmp_port, "not-a-key", seconds=2)
    assert await asyncio.wait_for(bad.wait(), 10) != 0

    created = (await api.post("/api/streams", json={"label": "solo"})).json()
    first = await procs.publish(server.rtmp_port, created["streamKey"], seconds=15)

    async def active() -> bool:
        return bool((await api.get(f"/api/streams/{created['id']}")).json()["status"] == "active")

    await poll_until(active, 10, "the stream active")
    second = await procs.publish(server.rtmp_port, created["streamKey"], seconds=2)
    assert await asyncio.wait_for(second.wait(), 10) != 0
    assert first.returncode is None
    await api.post(f"/api/streams/{created['id']}/stop")
    await asyncio.wait_for(first.wait(), 5)
    await api.aclose()
