"""Cloud archive end to end: ``simulcast serve`` recording real ffmpeg publishes and uploading
them to a real S3-compatible server (moto_server) on loopback; recording.ready to a real
webhook receiver; the object downloaded by its presigned URL and decoded with PyAV."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support import ServerProcess, make_server, poll_until
from tests.support.accounts import ApiAccount, query
from tests.support.archive import BUCKET, Moto, played
from tests.support.media import Processes
from tests.support.webhook_receiver import Receiver

pytestmark = pytest.mark.media

PART = 5 * 1024 * 1024
BASE_SETTINGS = {
    "webhooks_allow_http": "true",
    "webhooks_allow_private": "true",
    "webhook_retry_base_seconds": "0.2",
    "rate_limit_per_minute": "100000",
    "archive_part_size_bytes": str(PART),
    "archive_fragment_seconds": "1",
    "archive_retry_min_seconds": "0.2",
    "archive_retry_max_seconds": "1",
    "archive_poll_seconds": "0.5",
}
# About 8 Mb/s of constant bitrate (x264 pads with filler NAL units): a 5 MiB part every
# ~5 s, so a 20 s publish shows parts uploaded while it is still live.
CBR_8M = [
    "-c:v", "libx264", "-preset", "ultrafast", "-g", "30",
    "-b:v", "8M", "-minrate", "8M", "-maxrate", "8M", "-bufsize", "2M",
    "-x264-params", "nal-hrd=cbr:force-cfr=1",
]  # fmt: skip


class Client(ApiAccount):
    """An account with archived streams."""

    prefix = "arch"

    async def archived_stream(self, receiver: Receiver) -> dict[str, Any]:
        created = await self.api.post(
            "/api/streams",
            json={"label": "archived", "destinations": [{"type": "cloud-archive"}]},
        )
        assert created.status_code == 200, created.text
        hook = await self.api.post(
            "/api/webhooks", json={"url": receiver.url, "events": ["recording.ready"]}
        )
        assert hook.status_code == 200, hook.text
        return dict(created.json())

    async def archives(self) -> list[dict[str, Any]]:
        answer = await self.api.get("/api/archives")
        assert answer.status_code == 200, answer.text
        return list(answer.json())

    async def archive_when(self, status: str, within: float) -> dict[str, Any]:
        async def ready() -> dict[str, Any] | None:
            rows = await self.archives()
            return rows[0] if rows and rows[0]["status"] == status else None

        return dict(await poll_until(ready, within, f"an archive {status}"))


async def download(url: str, path: Path) -> int:
    async with httpx.AsyncClient(timeout=60) as client:
        answer = await client.get(url)
    assert answer.status_code == 200, answer.text[:300]
    await asyncio.to_thread(path.write_bytes, answer.content)
    return len(answer.content)


def new_server(tmp_path: Path, database_url: str = "", **settings: str) -> ServerProcess:
    data_dir = tmp_path / "server"
    data_dir.mkdir()
    return make_server(data_dir, database_url, **settings)


def object_parts(moto: Moto) -> int:
    """Parts uploaded so far to the one multipart upload in progress (0 if none)."""
    client = moto.client()
    uploads = client.list_multipart_uploads(Bucket=BUCKET).get("Uploads", [])
    if not uploads:
        return 0
    upload = uploads[0]
    listed = client.list_parts(Bucket=BUCKET, Key=upload["Key"], UploadId=upload["UploadId"])
    return len(listed.get("Parts", []))


async def start_recording(
    server: ServerProcess, receiver: Receiver, procs: Processes, seconds: int
) -> tuple[Client, dict[str, Any], Any, dict[str, Any]]:
    """A fresh account publishing ``seconds`` at ~8 Mb/s to an archived stream: the account,
    the stream, the publisher and the archive row once it is recording."""
    client = await Client.create(server)
    stream = await client.archived_stream(receiver)
    publisher = await procs.publish(
        server.rtmp_port, stream["streamKey"], seconds=seconds, video=CBR_8M
    )
    return client, stream, publisher, await client.archive_when("recording", 20)


async def announced_once(receiver: Receiver) -> None:
    """No second recording.ready trails in (webhook retries start at 0.2 s)."""
    await asyncio.sleep(1.5)
    assert len(receiver.requests) == 1, "recording.ready is sent once"


async def test_publish_is_recorded_uploaded_in_parts_and_plays(
    tmp_path: Path, moto: Moto, procs: Processes, database_url: str
) -> None:
    """20 s at ~8 Mb/s with 5 MiB parts: parts reach S3 while the session is live, the object
    plays 20 s +- 1 and decodes, recording.ready arrives once with a working presigned URL.

    (The issue's 2-minute publish is shortened to 20 s at a higher bitrate: the same number of
    bytes per part, a quarter of the suite time on a machine shared by several workers.) Runs
    on SQLite and, when reachable, PostgreSQL."""
    server = new_server(tmp_path, database_url, **BASE_SETTINGS, **moto.settings())
    server.start()
    try:
        async with Receiver() as receiver:
            client, stream, publisher, live = await start_recording(server, receiver, procs, 20)
            assert live["fileName"].startswith(f"archive_{stream['id']}_")
            # Parts go up while the publisher is still live.
            await poll_until(
                lambda: asyncio.to_thread(lambda: object_parts(moto) >= 2), 25, "two parts"
            )
            assert publisher.returncode is None, "the publish ended before two parts were up"
            during = await client.archives()
            assert during[0]["status"] == "recording" and during[0]["partsUploaded"] >= 2
            await publisher.wait()
            (ready,) = await receiver.wait_for(1, within=60)
            body = ready.json()
            assert body["event"] == "recording.ready"
            data = body["data"]
            assert data["fileName"] == live["fileName"]
            assert data["streamKeyId"] == stream["id"]
            assert data["sessionId"] == live["sessionId"]
            size = await download(data["url"], tmp_path / "object.mp4")
            assert size == data["sizeBytes"] > 3 * PART
            seconds, frames, audio = played(tmp_path / "object.mp4")
            assert abs(seconds - 20) <= 1, seconds
            assert abs(data["durationSeconds"] - 20) <= 1, data
            assert frames >= 19 * 30 and audio > 0
            (row,) = await client.archives()
            assert row["status"] == "uploaded" and row["sizeBytes"] == size
            assert row["url"] and row["error"] is None
            assert await download(row["url"], tmp_path / "again.mp4") == size
            assert not list((server.data_dir / "archives").glob("*.mp4")), "local copy deleted"
            await announced_once(receiver)
    finally:
        server.stop()


async def test_s3_outage_fails_the_archive_and_recover_uploads_it(
    tmp_path: Path, moto: Moto, procs: Processes
) -> None:
    """S3 goes away mid-session: the recording goes on, the upload fails after its retry
    budget; S3 comes back (empty); recover charges its fee (402 while the wallet cannot pay)
    and uploads the object; recording.ready arrives once."""
    settings = {
        **BASE_SETTINGS,
        **moto.settings(),
        "archive_upload_retry_seconds": "3",
        "archive_recovery_fee_sats": "50",
    }
    server = new_server(tmp_path, **settings)
    server.start()
    try:
        async with Receiver() as receiver:
            client, _, publisher, live = await start_recording(server, receiver, procs, 20)
            await poll_until(
                lambda: asyncio.to_thread(
                    lambda: bool(moto.client().list_multipart_uploads(Bucket=BUCKET).get("Uploads"))
                ),
                20,
                "the multipart upload to start",
            )
            moto.stop()
            failed = await client.archive_when("failed", 30)
            assert failed["error"], failed
            assert publisher.returncode is None, "recording went on while the upload failed"
            await publisher.wait()
            await asyncio.sleep(3)  # the session ends; nothing is uploaded meanwhile
            assert (await client.archives())[0]["status"] == "failed"
            moto.start()

            name = {"fileName": failed["fileName"]}
            broke = await client.api.post("/api/archives/recover", json=name)
            assert broke.status_code == 402, broke.text
            assert broke.json()["error"] == broke.json()["message"]
            stranger = await Client.create(server, funds=100)
            other = await stranger.api.post("/api/archives/recover", json=name)
            assert other.status_code == 404, other.text

            await asyncio.to_thread(server.cli, "wallet", "credit", "--account", client.name, "80")
            ok = await client.api.post("/api/archives/recover", json=name)
            assert ok.status_code == 200, ok.text
            assert ok.json() == {
                "success": True,
                "message": "Payment accepted. Archive recovery started.",
            }
            assert (await client.api.get("/api/wallet/balance")).json()["balance"] == 30
            (ready,) = await receiver.wait_for(1, within=60)
            data = ready.json()["data"]
            assert data["fileName"] == live["fileName"]
            again = await client.api.post("/api/archives/recover", json=name)
            assert again.status_code == 409, again.text
            size = await download(data["url"], tmp_path / "object.mp4")
            seconds, frames, _ = played(tmp_path / "object.mp4")
            assert abs(seconds - 20) <= 1 and frames >= 19 * 30, (seconds, frames)
            assert size == data["sizeBytes"]
            await announced_once(receiver)
    finally:
        server.stop()


async def test_kill_9_mid_session_uploads_what_was_recorded(
    tmp_path: Path, moto: Moto, procs: Processes
) -> None:
    """``kill -9`` of the server mid-session and mid-upload (parts already in S3): after a
    restart the archive is trimmed to its last complete fragment, the parts S3 holds are
    checked and kept, the rest uploaded; the object plays up to the kill; announced once."""
    server = new_server(tmp_path, **BASE_SETTINGS, **moto.settings())
    server.start()
    try:
        async with Receiver() as receiver:
            loop = asyncio.get_running_loop()
            client, _, publisher, live = await start_recording(server, receiver, procs, 60)
            on_air = loop.time()  # the publisher has been live since a little before this
            await poll_until(
                lambda: asyncio.to_thread(lambda: object_parts(moto) >= 1), 25, "a part"
            )
            await asyncio.sleep(2)
            server.stop(signal.SIGKILL)
            recorded_before_kill = loop.time() - on_air
            publisher.kill()
            await publisher.wait()
            local = server.data_dir / "archives" / live["fileName"]
            local_size = local.stat().st_size
            server.start()
            (ready,) = await receiver.wait_for(1, within=60)
            data = ready.json()["data"]
            assert data["fileName"] == live["fileName"]
            size = await download(data["url"], tmp_path / "object.mp4")
            assert 0 < size == data["sizeBytes"] <= local_size
            seconds, frames, audio = played(tmp_path / "object.mp4")
            # Everything recorded before the kill is there, up to the last complete fragment
            # (1 s fragments, plus the time the publisher took to reach its first keyframe).
            assert seconds >= recorded_before_kill - 2, (seconds, recorded_before_kill)
            assert abs(data["durationSeconds"] - seconds) <= 0.5, (data, seconds)
            resumed = [line for line in server.log().splitlines() if "resuming upload" in line]
            assert len(resumed) == 1 and "0 match" not in resumed[0], resumed
            assert frames >= int(seconds * 30) - 2 and audio > 0
            (row,) = await client.archives()
            assert row["status"] == "uploaded"
            await announced_once(receiver)
    finally:
        server.stop()


async def _recorded(client: Client, nbytes: int) -> bool:
    rows = await client.archives()
    return bool(rows) and rows[0]["sizeBytes"] >= nbytes


async def test_an_archive_pays_only_while_it_records_and_keeps_its_secret(
    tmp_path: Path, moto: Moto, procs: Processes
) -> None:
    """Every platform minute (2 s here) costs 2 sats (none free). A recording archive is
    charged; one whose recorder cannot create its file is ``failed`` at once with the reason and
    not charged; one whose bucket does not exist records but says so in its state from the
    session's start. A destination's own S3 secret is stored sealed and never returned."""
    settings = {
        **BASE_SETTINGS,
        **moto.settings(),
        "billing_minute_seconds": "2",
        "free_platforms": "0",
        "cost_per_platform": "2",
    }
    server = new_server(tmp_path, **settings)
    server.start()
    try:
        client = await Client.create(server, funds=1000)
        own = {
            "bucket": "no-such-bucket",
            "prefix": "mine/",
            "accessKeyId": "AKIDOWN",
            "secretAccessKey": "very-secret-value",
        }
        streams = []
        for config in ({}, {}, own):
            created = await client.api.post(
                "/api/streams",
                json={"destinations": [{"type": "cloud-archive", "config": config}]},
            )
            assert created.status_code == 200, created.text
            streams.append(created.json())
        ok, broken, elsewhere = streams
        shown = (await client.api.get(f"/api/streams/{elsewhere['id']}")).json()
        (dest,) = shown["destinations"]
        assert dest["bucket"] == "no-such-bucket" and dest["accessKeyId"] == "AKIDOWN"
        assert "very-secret-value" not in json.dumps(shown)
        stored = query(server, "SELECT config FROM destinations WHERE id = ?", dest["id"])
        assert "very-secret-value" not in stored[0][0] and "secretAccessKeySealed" in stored[0][0]

        # The broken stream's recording file cannot be created: a directory holds its name.
        now = int(time.time())
        for second in range(now, now + 60):
            (server.data_dir / "archives" / f"archive_{broken['id']}_{second}.mp4").mkdir(
                parents=True
            )
        for s in streams:
            await procs.publish(server.rtmp_port, s["streamKey"], seconds=60)

        async def states() -> dict[int, dict[str, Any]]:
            out = {}
            for s in streams:
                body = (await client.api.get(f"/api/streams/{s['id']}")).json()
                out[s["id"]] = body["destinations"][0] | {"status": body["status"]}
            return out

        async def settled() -> dict[int, dict[str, Any]] | None:
            now_states = await states()
            ready = (
                now_states[broken["id"]]["state"] == "failed"
                and now_states[ok["id"]]["state"] == "live"
                and "NoSuchBucket" in (now_states[elsewhere["id"]]["lastError"] or "")
            )
            return now_states if ready else None

        seen = await poll_until(settled, 30, "the three archive destinations' states")
        assert "cannot write recording" in seen[broken["id"]]["lastError"]
        assert seen[elsewhere["id"]]["state"] == "live"  # it records; only the upload fails
        # Two platform minutes charged to each recording archive while they are live.
        await poll_until(
            lambda: asyncio.to_thread(
                lambda: min(charged(server).get(s["id"], 0) for s in (ok, elsewhere)) >= 2 * 2
            ),
            30,
            "two minutes charged",
        )
        for s in streams:
            assert (await client.api.post(f"/api/streams/{s['id']}/stop")).status_code == 200
        await poll_until(
            lambda: _all_ended(client, [s["id"] for s in streams]), 20, "sessions ended"
        )
        charged_sats = charged(server)
        assert charged_sats[broken["id"]] == 0
        assert charged_sats[ok["id"]] >= 2 * 2 and charged_sats[elsewhere["id"]] >= 2 * 2
        balance = (await client.api.get("/api/wallet/balance")).json()["balance"]
        assert balance == 1000 - charged_sats[ok["id"]] - charged_sats[elsewhere["id"]]
    finally:
        server.stop()


def charged(server: ServerProcess) -> dict[int, int]:
    """Platform-minute sats charged so far, by stream (streams with a session only)."""
    rows = query(
        server,
        "SELECT s.stream_id, COALESCE(SUM(t.amount_sats), 0) FROM sessions s"
        " LEFT JOIN ledger_transactions t ON t.session_pk = s.id"
        " AND t.kind = 'stream_minute' GROUP BY s.stream_id",
    )
    return {int(stream_id): int(sats) for stream_id, sats in rows}


async def _all_ended(client: Client, stream_ids: list[int]) -> bool:
    for stream_id in stream_ids:
        body = (await client.api.get(f"/api/streams/{stream_id}")).json()
        if body["status"] != "idle":
            return False
    return True
