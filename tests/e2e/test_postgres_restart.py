"""PostgreSQL restarted under a live fleet: ``pg_ctl stop -m fast``, then ``start`` again, of a
PostgreSQL server the test runs itself (never the machine's on 5432), while an API node and a
media node (on it and the CI's Redis) relay three metered streams published with ffmpeg.

Across the restart (longer than several billing minutes, 1 s here) one stream goes on
publishing, one publisher leaves (its session is closed while the database is down), and one
drops and comes back (disconnect protection). Afterwards the nodes work again and every session
has exactly one charge per completed minute of its paid destination, and every event exactly one
webhook delivery, received (a retry would carry the same delivery id)."""

from __future__ import annotations

import os
import shutil
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support import nginx_rtmp_sink, publisher, wait_for
from tests.support.background import BackgroundLoop
from tests.support.fleet import (
    PostgresServer,
    closed_session,
    fleet_nodes,
    minutes_charged_once,
    postgres_bindir,
    query,
    redis_reachable,
    session_rows,
)
from tests.support.webhook_receiver import Receiver

pytestmark = pytest.mark.media

SECRET = "whsec_pg_restart"
MINUTE_S = 1.0
"""The billing minute of this test's nodes."""
FLEET = {
    "billing_minute_seconds": str(MINUTE_S),
    # Longer than the outage: the media node must keep its sessions (not fence itself).
    "node_lease_seconds": "30",
    "rate_limit_per_minute": "100000",
    "webhooks_allow_http": "true",
    "webhooks_allow_private": "true",
    "webhook_poll_seconds": "0.5",
    "webhook_retry_base_seconds": "0.2",
    "webhook_retry_max_seconds": "1",
}


@pytest.fixture
def postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL server of this test only, with one empty database."""
    bindir = postgres_bindir()
    if bindir is None:
        pytest.skip("PostgreSQL's server binaries (initdb, pg_ctl) are not installed")
    if not redis_reachable():
        pytest.skip("Redis is not reachable on 127.0.0.1:6379")
    if os.geteuid() == 0 and not shutil.which("runuser"):
        pytest.skip("PostgreSQL refuses root, and runuser is missing to run it as postgres")
    try:
        server = PostgresServer(bindir)
    except KeyError:
        pytest.skip("PostgreSQL refuses root, and there is no postgres user to run it as")
    try:
        server.create()
        yield server
    finally:
        server.destroy()


def test_postgres_restart_loses_and_doubles_no_charge_and_no_webhook(
    postgres: PostgresServer, tmp_path: Path
) -> None:
    url = postgres.url
    with (
        fleet_nodes(tmp_path, url, **FLEET) as start,
        nginx_rtmp_sink(tmp_path / "sink") as (sink_port, _records),
        BackgroundLoop() as loop,
    ):
        api_node = start("api", "api-1")
        media = start("media", "media-a")
        receiver = Receiver(secret=SECRET)
        loop.run(receiver.__aenter__())
        try:
            sk = api_node.create_account(sats=100_000)
            api = httpx.Client(
                base_url=api_node.base_url + "/api", headers={"X-API-Key": sk}, timeout=30
            )
            hook = api.post(
                "/webhooks",
                json={
                    "url": receiver.url,
                    "secret": SECRET,
                    "events": ["stream.started", "stream.ended", "stream.disconnected",
                               "stream.resumed"],
                },
            )  # fmt: skip
            assert hook.status_code in (200, 201), hook.text

            def stream(label: str, protection: bool) -> dict[str, Any]:
                # Two platform destinations: the first is free, the second costs a minute.
                dests = [
                    {"type": "rtmp", "config": {"url": f"rtmp://127.0.0.1:{sink_port}/live/{n}"}}
                    for n in (f"{label}-free", f"{label}-paid")
                ]
                body = {"label": label, "destinations": dests,
                        "protection": {"enabled": protection}}  # fmt: skip
                created = api.post("/streams", json=body)
                assert created.status_code in (200, 201), created.text
                return dict(created.json())

            # on: publishes throughout; ends: its publisher leaves while PostgreSQL is down (no
            # protection: the session ends then); back: drops then, and comes back after.
            streams = {name: stream(name, name != "ends") for name in ("on", "ends", "back")}
            pubs = {name: publisher(media, s["streamKey"], 120) for name, s in streams.items()}
            try:
                for name, s in streams.items():
                    wait_for(
                        lambda s=s: (
                            (rows := session_rows(url, s["id"])) and rows[0]["metered_minutes"] >= 2
                        ),
                        30,
                        f"stream {name} live and metered",
                    )
                wait_for(lambda: len(receiver.requests) >= 3, 15, "three stream.started")
                on_before = session_rows(url, streams["on"]["id"])[0]["metered_minutes"]

                postgres.stop()
                stopped_at = time.monotonic()
                for name in ("ends", "back"):
                    pubs[name].kill()
                    pubs[name].wait()
                # The session whose publisher left is closed while the database is down: its
                # node keeps trying.
                wait_for(
                    lambda: "not recorded yet" in media.log(), 15, "the close retried on media-a"
                )
                # Down across billing minutes: each is charged once the database is back.
                time.sleep(max(0.0, stopped_at + 3 * MINUTE_S - time.monotonic()))
                postgres.start()

                # The nodes work again: the API answers, the media node meters and heartbeats.
                wait_for(
                    lambda: (
                        session_rows(url, streams["on"]["id"])[0]["metered_minutes"]
                        >= on_before + 4
                    ),
                    30,
                    "the live stream metered across the outage",
                )
                assert pubs["on"].poll() is None, "the live publisher was cut"
                assert api.get(f"/streams/{streams['on']['id']}").json()["status"] == "active"
                wait_for(
                    lambda: session_rows(url, streams["ends"]["id"])[0]["ended_ms"],
                    30,
                    "the session closed once the database is back",
                )
                pubs["back"] = publisher(media, streams["back"]["streamKey"], 120)
                wait_for(
                    lambda: any(r.json()["event"] == "stream.resumed" for r in receiver.requests),
                    30,
                    "the publisher back within disconnect protection",
                )
                for name in ("on", "back"):
                    stopped = api.post(f"/streams/{streams[name]['id']}/stop")
                    assert stopped.status_code == 200, stopped.text
            finally:
                for proc in pubs.values():
                    proc.kill()
                    proc.wait()

            # Money: per session, one charge per completed minute of its paid destination,
            # charged from its start to its end (none lost in the outage), none twice.
            charged = 0
            for name, s in streams.items():
                row = closed_session(url, s["id"], 30)
                completed = (row["ended_ms"] - row["started_ms"]) // int(MINUTE_S * 1000)
                assert row["metered_minutes"] == completed, (name, row)
                keys = minutes_charged_once(url, row)
                assert len({k.split(":")[2] for k in keys}) == 1  # the paid destination only
                charged += 2 * completed
            assert 100_000 - int(api.get("/wallet/balance").json()["balance"]) == charged

            # Webhooks: one delivery per event, each delivered, and received under its id.
            def outbox() -> list[dict[str, Any]]:
                rows = query(url, "SELECT id, event, status, body FROM webhook_deliveries")
                return [dict(r) for r in rows]

            expected = Counter(
                {"stream.started": 3, "stream.ended": 3, "stream.disconnected": 1,
                 "stream.resumed": 1}
            )  # fmt: skip
            rows = wait_for(
                lambda: (
                    (rows := outbox())
                    and Counter(r["event"] for r in rows) == expected
                    and all(r["status"] == "delivered" for r in rows)
                    and rows
                ),
                30,
                f"the outbox delivered: {expected}",
            )
            by_id = {r.headers["x-simulcast-delivery"]: r.json() for r in receiver.requests}
            assert set(by_id) == {r["id"] for r in rows}
            assert all(r.signature_ok for r in receiver.requests)
            per_session = Counter((b["event"], b["data"]["sessionId"]) for b in by_id.values())
            assert set(per_session.values()) == {1}, per_session
        finally:
            loop.run(receiver.__aexit__(None, None, None))
