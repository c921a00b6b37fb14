"""The status endpoint's ``usedGB`` on the real app: bytes served count the moment they are
served, and a flush that moves them from the counter to the database never hides them, even
while the endpoint's one-second memo of the database is fresh."""

from __future__ import annotations

from pathlib import Path

import httpx

from simulcast.app import create_app
from simulcast.control.services import auth
from tests.support import loopback_settings

SIX_MB = 6_000_000  # 0.006 GB: 0.01 with the endpoint's two decimals, rounded half up


async def test_a_flush_inside_the_status_memo_does_not_hide_the_bytes(tmp_path: Path) -> None:
    # The periodic flush waits its longest (5 s); the test flushes when it wants one.
    app = create_app(loopback_settings(tmp_path, bandwidth_flush_seconds=5))
    async with app.router.lifespan_context(app):
        async with app.state.ctx.db.begin() as session:
            account = await auth.create_account(session, name="a", password=None)
            sk = await auth.create_api_key(session, account_id=account.id, kind="sk")
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as client:
            made = await client.post(
                "/api/streams",
                headers={"Authorization": f"Bearer {sk}"},
                json={"label": "Main", "destinations": [{"type": "self-hosted"}]},
            )
            assert made.status_code in (200, 201), made.text
            hosted = made.json()["destinations"][0]

            async def used_gb() -> str:
                status = await client.get(
                    "/api/public/stream/status", params={"apiKey": hosted["apiKey"]}
                )
                assert status.status_code == 200, status.text
                return str(status.json()["bandwidth"]["usedGB"])

            assert await used_gb() == "0.00"  # memoizes what the database holds: nothing
            served = app.state.hls_playback.served
            served.add(account_id=account.id, destination_id=hosted["id"], nbytes=SIX_MB)
            assert await used_gb() == "0.01"  # unflushed bytes count at once
            await served.flush()  # now in the database, no longer unflushed
            assert await used_gb() == "0.01"  # within the memo's second: still counted
