"""``destination.failed`` end to end: a real server pushes a real ffmpeg publish to two broken
destinations (one down, one refusing the stream key) and a real receiver gets one event for each,
once, while both pushes keep retrying."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path
from typing import Any

import httpx
import imageio_ffmpeg
import pytest

from tests.support import free_port, make_server, poll_until
from tests.support.rtmp_sink import RtmpSink
from tests.support.webhook_receiver import Receiver

pytestmark = pytest.mark.media

FAIL_AFTER = 6.0


async def test_down_and_refusing_destinations_are_reported_once(tmp_path: Path) -> None:
    server = make_server(
        tmp_path,
        webhooks_allow_http="true",
        webhooks_allow_private="true",
        webhook_retry_base_seconds="0.2",
        push_fail_after_seconds=str(FAIL_AFTER),
        push_retry_min_seconds="0.2",
        push_retry_max_seconds="1",
    )
    await asyncio.to_thread(server.start)
    sink = RtmpSink(refuse_key=True)
    await sink.start()
    ffmpeg = None
    try:
        sk = await asyncio.to_thread(server.create_account, sats=10_000)
        async with (
            Receiver() as receiver,
            httpx.AsyncClient(
                base_url=server.base_url + "/api", headers={"X-API-Key": sk}, timeout=30
            ) as api,
        ):
            down = f"rtmp://127.0.0.1:{free_port()}/app/live_down"
            refusing = f"rtmp://127.0.0.1:{sink.port}/app/wrong_key"
            stream = (
                await api.post(
                    "/streams",
                    json={
                        "label": "broken pushes",
                        "destinations": [
                            {"type": "rtmp", "config": {"url": down}},
                            {"type": "rtmp", "config": {"url": refusing}},
                            {"type": "self-hosted"},
                        ],
                    },
                )
            ).json()
            down_id, refusing_id, _ = (d["id"] for d in stream["destinations"])
            hook = await api.post(
                "/webhooks",
                json={"url": receiver.url, "events": ["destination.failed", "stream.started"]},
            )
            assert hook.status_code == 200, hook.text

            ffmpeg = await asyncio.create_subprocess_exec(
                imageio_ffmpeg.get_ffmpeg_exe(), "-loglevel", "error", "-re",
                "-f", "lavfi", "-i", "testsrc2=size=160x120:rate=15",
                "-t", "60", "-pix_fmt", "yuv420p",
                "-c:v", "libx264", "-preset", "ultrafast", "-g", "15",
                "-f", "flv", server.rtmp_url(stream["streamKey"]),
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip

            def failed() -> list[dict[str, Any]]:
                return [
                    r.json()["data"]
                    for r in receiver.requests
                    if r.headers.get("x-simulcast-event") == "destination.failed"
                ]

            async def both() -> list[dict[str, Any]]:
                return failed() if len(failed()) >= 2 else []

            events = await poll_until(both, 60, "two destination.failed events")
            by_id = {e["destinationId"]: e for e in events}
            assert set(by_id) == {down_id, refusing_id}
            (started,) = [
                r.json()["data"]
                for r in receiver.requests
                if r.headers.get("x-simulcast-event") == "stream.started"
            ]
            refused = by_id[refusing_id]
            assert refused["platform"] == "Custom" and refused["sessionId"] == started["sessionId"]
            assert "Invalid stream key" in refused["lastError"], refused
            # A refused key is reported at once; a destination that is down after FAIL_AFTER.
            assert refused["failedAt"] - started["startedAt"] < FAIL_AFTER * 1000
            unreachable = by_id[down_id]
            assert unreachable["lastError"] and unreachable["streamKeyId"] == stream["id"]
            assert unreachable["failedAt"] - started["startedAt"] >= FAIL_AFTER * 1000

            # Both pushes keep retrying, and nothing more is reported for this session.
            before = {
                d["id"]: d["attempt"]
                for d in (await api.get(f"/streams/{stream['id']}")).json()["destinations"]
            }
            refusals = sink.refused
            await asyncio.sleep(FAIL_AFTER + 2)
            after = (await api.get(f"/streams/{stream['id']}")).json()
            assert after["status"] == "active"
            states = {d["id"]: d for d in after["destinations"]}
            for dest_id in (down_id, refusing_id):
                assert states[dest_id]["state"] in ("connecting", "retrying"), states[dest_id]
                assert states[dest_id]["attempt"] > before[dest_id]
            assert sink.refused > refusals
            assert len(failed()) == 2
    finally:
        if ffmpeg is not None and ffmpeg.returncode is None:
            ffmpeg.kill()
            await ffmpeg.wait()
        await sink.close()
        await asyncio.to_thread(server.stop)
