"""A stream's SRT passphrase through the whole stack in one process: set and cleared through the
streams API, sealed at rest, and enforced on libsrt callers (ffmpeg) publishing encrypted."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from simulcast.app import create_app
from simulcast.control.services import auth
from tests.support import loopback_settings, poll_until
from tests.support.accounts import stored_bytes
from tests.support.media import Processes
from tests.support.srt import publish_srt

pytestmark = pytest.mark.media

SECRET = "IRL-backpack-passphrase"


async def test_srt_passphrase_set_sealed_and_enforced(tmp_path: Path, procs: Processes) -> None:
    settings = loopback_settings(tmp_path, srt_host="127.0.0.1")
    app = create_app(settings)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as api,
    ):
        ctx = app.state.ctx
        async with ctx.db.begin() as session:
            account = await auth.create_account(session, name="p", password=None)
            key = await auth.create_api_key(session, account_id=account.id, kind="sk")
        api.headers["Authorization"] = f"Bearer {key}"

        for bad in ("short", "x" * 80):  # SRT takes 10 to 79 characters
            response = await api.post("/api/streams", json={"srtPassphrase": bad})
            assert response.status_code in (400, 422), response.text
            assert "srtPassphrase" in response.text
        created = (await api.post("/api/streams", json={"srtPassphrase": SECRET})).json()
        assert created["srtPassphrase"] == SECRET
        sid, stream_key = created["id"], created["streamKey"]
        # Absent leaves it; null clears it; a new one replaces it.
        kept = await api.patch(f"/api/streams/{sid}", json={"label": "irl"})
        assert kept.json()["srtPassphrase"] == SECRET
        cleared = await api.patch(f"/api/streams/{sid}", json={"srtPassphrase": None})
        assert cleared.json()["srtPassphrase"] is None
        again = await api.patch(f"/api/streams/{sid}", json={"srtPassphrase": SECRET})
        assert again.json()["srtPassphrase"] == SECRET
        data = stored_bytes(tmp_path)
        assert SECRET.encode() not in data  # sealed at rest

        port = app.state.instance_runner.engine.srt.port  # the LocalEngine behind the API
        stream_id = f"publish:{stream_key}"
        for name, options in (
            ("clear", ""),
            ("wrong", "&passphrase=not-the-passphrase&pbkeylen=32"),
        ):
            log = tmp_path / f"{name}.log"
            refused = await publish_srt(procs, port, stream_id, 2, log, options=options)
            assert await asyncio.wait_for(refused.wait(), 20) != 0
        assert (await api.get(f"/api/streams/{sid}")).json()["status"] == "idle"

        publisher = await publish_srt(
            procs, port, stream_id, 30, tmp_path / "ok.log", options=f"&passphrase={SECRET}"
        )

        async def live() -> bool:
            return bool((await api.get(f"/api/streams/{sid}")).json()["status"] == "active")

        await poll_until(live, 15, "the encrypted SRT publish to go live")
        publisher.terminate()
        await publisher.wait()
