"""Scale-out, replayed with real processes on loopback: one API node and two media nodes on one
PostgreSQL database and one Redis (a namespace of its own per test). A publisher reaches a media
node, the API node stops it through the control bus, the registry shows both nodes, and a media
node killed with SIGKILL has its session closed ``node_lost`` exactly once by the API node, and
its instance (launched with ``restartOnFailure``) running again on the other one within the
lease timeout + 10 s, with the same input keys."""

from __future__ import annotations

import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import redis

from tests.support import (
    ServerProcess,
    free_port,
    fresh_postgres_database,
    imported_modules,
    make_server,
    nginx_rtmp_sink,
    postgres_reachable,
    publisher,
    wait_for,
)
from tests.support.fleet import (
    REDIS_URL,
    RedisServer,
    closed_session,
    fleet_nodes,
    minutes_charged_once,
    query,
    redis_reachable,
    session_rows,
)

pytestmark = pytest.mark.media

if not postgres_reachable():
    pytest.skip("PostgreSQL is not reachable on 127.0.0.1:5432", allow_module_level=True)
if not redis_reachable():
    pytest.skip("Redis is not reachable on 127.0.0.1:6379", allow_module_level=True)


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Callable[..., ServerProcess]]:
    """Start nodes of one fleet (shared database, Redis namespace and secret key)."""
    with fresh_postgres_database() as url, fleet_nodes(tmp_path, url) as start:
        start.database_url = url  # type: ignore[attr-defined]
        yield start


def self_hosted_stream(api: httpx.Client, label: str) -> dict[str, Any]:
    """A new stream of one self-hosted destination, created through ``api``."""
    response = api.post(
        "/streams", json={"label": label, "destinations": [{"type": "self-hosted"}]}
    )
    response.raise_for_status()
    stream: dict[str, Any] = response.json()
    return stream


def wait_active(api: httpx.Client, stream: dict[str, Any], what: str) -> None:
    """Wait (30 s at most) until ``api`` shows ``stream`` active."""
    wait_for(lambda: api.get(f"/streams/{stream['id']}").json()["status"] == "active", 30, what)


def stop_through_the_reconnected_bus(api: httpx.Client, stream: dict[str, Any]) -> None:
    """Wait (15 s at most) until ``api`` answers a stop of ``stream``: the command reached the
    media node, so the control bus is back."""
    wait_for(
        lambda: api.post(f"/streams/{stream['id']}/stop").status_code == 200,
        15,
        "a stop through the reconnected bus",
    )


def test_multi_node_role_refuses_to_start_without_postgres_and_redis(tmp_path: Path) -> None:
    server = make_server(tmp_path, role="media")
    out = subprocess.run(
        [sys.executable, "-m", "simulcast", "serve"],
        env=server.env,
        capture_output=True,
        timeout=60,
    )
    assert out.returncode != 0
    lines = out.stderr.decode().strip().splitlines()
    assert len(lines) == 1, lines
    assert "SIMULCAST_DATABASE_URL" in lines[0] and "SIMULCAST_REDIS_URL" in lines[0]


def test_api_node_controls_streams_on_media_nodes_and_buries_a_lost_one(
    fleet: Callable[..., ServerProcess],
) -> None:
    api_node = fleet("api", "api-1")
    media_a = fleet("media", "media-a")
    media_b = fleet("media", "media-b")
    database_url: str = fleet.database_url  # type: ignore[attr-defined]
    name = f"op-{secrets.token_hex(3)}"
    out = api_node.cli("accounts", "create", name, "--admin")
    sk = next(ln.split()[-1] for ln in out.splitlines() if "sk_" in ln)
    api_node.cli("wallet", "credit", "--account", name, "10000")
    api = httpx.Client(base_url=api_node.base_url + "/api", headers={"X-API-Key": sk}, timeout=30)

    # The registry shows both media nodes, with their advertised RTMP URLs.
    nodes = wait_for(
        lambda: [n for n in api.get("/admin/nodes").json() if n["state"] == "live"],
        20,
        "two live nodes",
    )
    assert {n["id"] for n in nodes} == {"media-a", "media-b"}
    by_id = {n["id"]: n for n in nodes}
    assert by_id["media-a"]["rtmpUrl"] == f"rtmp://127.0.0.1:{media_a.rtmp_port}"
    metrics = httpx.get(api_node.base_url + "/metrics").text
    assert 'simulcast_fleet_nodes{state="live"} 2.0' in metrics

    # Publish to media-a; the API node sees the session live and stops it over the bus.
    first = self_hosted_stream(api, "one")
    pub = publisher(media_a, first["streamKey"], 60)
    try:
        wait_active(api, first, "the stream live through the API node")
        # The API node's live view comes from the media nodes' snapshots.
        wait_for(
            lambda: httpx.get(api_node.base_url + "/healthz").json()["liveSessions"] == 1,
            10,
            "the API node's view of the fleet's live sessions",
        )
        # hlsUrl through the API node: redirected to media-a, where it plays.
        dest = first["destinations"][0]
        path = f"/hls/{dest['playbackToken']}/index.m3u8?apiKey={dest['apiKey']}"
        moved = httpx.get(api_node.base_url + path)
        assert moved.status_code == 307, moved.text
        assert moved.headers["Location"] == media_a.base_url + path
        wait_for(
            lambda: httpx.get(api_node.base_url + path, follow_redirects=True).status_code == 200,
            30,
            "the playlist through the API node's redirect",
        )
        # A destination added through the API node starts on media-a (a dead RTMP ingest: the
        # output tries and retries), and stops there when it is disabled.
        dead = f"rtmp://127.0.0.1:{free_port()}/app/live_1"
        added = api.post(
            f"/streams/{first['id']}/destinations", json={"type": "rtmp", "config": {"url": dead}}
        )
        assert added.status_code in (200, 201), added.text
        dest_id = added.json()["id"]

        def dest_state() -> str:
            dests = api.get(f"/streams/{first['id']}").json()["destinations"]
            return str(next(d["state"] for d in dests if d["id"] == dest_id))

        wait_for(lambda: dest_state() != "idle", 5, "the new output running on media-a")
        # Disabled: the output is gone from media-a's session (its state is no longer the
        # output's own, but "disabled").
        disabled = api.patch(
            f"/streams/{first['id']}/destinations/{dest_id}", json={"enabled": False}
        )
        assert disabled.status_code == 200, disabled.text
        wait_for(lambda: dest_state() == "disabled", 5, "the output stopped on media-a")
        asked = time.monotonic()
        stopped = api.post(f"/streams/{first['id']}/stop")
        assert stopped.status_code == 200, stopped.text
        assert time.monotonic() - asked < 2.0
        rows = wait_for(
            lambda: query(
                database_url,
                "SELECT node_id, end_reason FROM sessions WHERE stream_id = $1 "
                "AND ended_ms IS NOT NULL",
                first["id"],
            ),
            10,
            "the session closed",
        )
        assert [(r["node_id"], r["end_reason"]) for r in rows] == [("media-a", "stopped")]
        assert api.post(f"/streams/{first['id']}/stop").status_code == 409
    finally:
        pub.kill()
        pub.wait()

    # An instance launched through the API node (restartOnFailure) is claimed by a media node;
    # a stream published to that same node; then the node is killed.
    v1 = httpx.Client(
        base_url=api_node.base_url + "/api/v1", headers={"Authorization": f"Bearer {sk}"}
    )
    config = v1.post(
        "/configurations",
        json={
            "name": "relay",
            "elements": [
                {"id": "inputstream-1", "type": "inputstream"},
                {"id": "outputstream-1", "type": "outputstream", "inputs": ["inputstream-1"]},
            ],
        },
    )
    assert config.status_code == 201, config.text
    launched = v1.post(
        f"/configurations/{config.json()['id']}/instances", json={"restartOnFailure": True}
    )
    assert launched.status_code == 202, launched.text
    instance_id = launched.json()["instances"][0]

    def instance_row() -> asyncpg.Record | None:
        rows = query(
            database_url,
            "SELECT status, node_id, input_keys, stop_reason FROM v1_instances WHERE id = $1",
            instance_id,
        )
        return rows[0] if rows and rows[0]["status"] == "RUNNING" else None

    claimed = wait_for(instance_row, 20, "the instance claimed by a media node")

    # Through the API node: the instance's live state (from its node's snapshot), and its
    # outputs turned LIVE on the node that runs it (over the bus).
    def output_state() -> dict[str, Any] | None:
        elements = v1.get(f"/instances/{instance_id}").json()["state"]["elements"]
        return next((e["state"] for e in elements if e["id"] == "outputstream-1"), None)

    assert wait_for(output_state, 10, "the instance's state through the API node")["live"] is False
    put = v1.put(f"/instances/{instance_id}/outputs", json={"outputs": "LIVE"})
    assert put.status_code == 200, put.text
    wait_for(lambda: (state := output_state()) and state["live"], 5, "outputs LIVE on the node")
    victim, survivor = (
        (media_a, "media-b") if claimed["node_id"] == "media-a" else (media_b, "media-a")
    )
    lost_id = claimed["node_id"]
    second = self_hosted_stream(api, "two")
    pub = publisher(victim, second["streamKey"], 60)
    try:
        wait_active(api, second, "the second stream live")
        killed_at = time.monotonic()
        victim.stop(signal.SIGKILL)
        rows = wait_for(
            lambda: query(
                database_url,
                "SELECT node_id, end_reason, started_ms, ended_ms, metered_minutes "
                "FROM sessions WHERE stream_id = $1 AND ended_ms IS NOT NULL",
                second["id"],
            ),
            3 + 10,
            "the lost node's session closed",
        )
    finally:
        pub.kill()
        pub.wait()
    assert len(rows) == 1
    row = rows[0]
    assert (row["node_id"], row["end_reason"]) == (lost_id, "node_lost")
    # At its last metered minute (billing minutes are 60 s here).
    assert row["ended_ms"] == row["started_ms"] + row["metered_minutes"] * 60_000
    # The instance runs again on the survivor, with the same input keys, within lease + 10 s.
    again = wait_for(
        lambda: (r := instance_row()) is not None and r["node_id"] == survivor and r,
        max(1.0, 3 + 10 - (time.monotonic() - killed_at)),
        "the instance running again on the survivor",
    )
    assert again["input_keys"] == claimed["input_keys"]
    lost = wait_for(
        lambda: [n for n in api.get("/admin/nodes").json() if n["state"] == "lost"],
        10,
        "the killed node shown lost",
    )
    assert [n["id"] for n in lost] == [lost_id]
    assert api_node.log().count(f"node {lost_id} lost") == 1
    assert any(n["id"] == survivor and n["state"] == "live" for n in api.get("/admin/nodes").json())


def test_the_control_bus_reconnects_after_redis_drops_its_connections(
    fleet: Callable[..., ServerProcess],
) -> None:
    api_node = fleet("api", "api-1")
    media = fleet("media", "media-a")
    prefix = api_node.env["SIMULCAST_BUS_PREFIX"]
    sk = api_node.create_account(sats=10_000)
    api = httpx.Client(base_url=api_node.base_url + "/api", headers={"X-API-Key": sk}, timeout=30)
    created = self_hosted_stream(api, "r")
    pub = publisher(media, created["streamKey"], 60)
    try:
        wait_active(api, created, "live")
        # Redis drops every connection of this fleet (as a Redis restart would).
        admin = redis.Redis.from_url(REDIS_URL)
        ids = [c["id"] for c in admin.client_list() if c["name"].startswith(f"{prefix}:")]
        assert ids, "the fleet's Redis connections are named after its prefix"
        for client_id in ids:
            admin.client_kill_filter(_id=client_id)
        admin.close()
        # Commands reach the media node again once its subscription is back.
        stop_through_the_reconnected_bus(api, created)
    finally:
        pub.kill()
        pub.wait()
    assert "control bus:" in media.log()  # the drop was noticed and logged


def sink_publishers(sink_log: Path, name: str) -> tuple[list[str], list[str]]:
    """nginx-rtmp's connections (ids from its log) whose publish of ``/live/{name}`` it
    accepted, in order, and those of them still publishing (not disconnected)."""
    text = sink_log.read_text(errors="replace") if sink_log.exists() else ""
    conn = re.compile(r"\*(\d+) (.*?), client")
    asked, refused, gone = [], set(), set()
    for match in conn.finditer(text):
        cid, what = match.groups()
        if what.startswith(f"publish: name='{name}'"):
            asked.append(cid)
        elif "already publishing" in what:
            refused.add(cid)
        elif what == "disconnect":
            gone.add(cid)
    accepted = [c for c in asked if c not in refused]
    return accepted, [c for c in accepted if c not in gone]


def dest_states(api: httpx.Client, stream_id: int) -> list[str]:
    return [str(d["state"]) for d in api.get(f"/streams/{stream_id}").json()["destinations"]]


def test_a_stream_key_has_one_owner_and_shifts_across_nodes(
    fleet: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    fast = {
        "billing_minute_seconds": "1",
        "push_retry_max_seconds": "1",
        "rate_limit_per_minute": "100000",
    }
    api_node = fleet("api", "api-1", **fast)
    media_a = fleet("media", "media-a", **fast)
    media_b = fleet("media", "media-b", **fast)
    database_url: str = fleet.database_url  # type: ignore[attr-defined]
    sk = api_node.create_account(sats=100_000)
    api = httpx.Client(base_url=api_node.base_url + "/api", headers={"X-API-Key": sk}, timeout=30)
    with nginx_rtmp_sink(tmp_path / "sink") as (sink_port, _records):
        sink_log = tmp_path / "sink" / "error.log"
        # Two platform destinations: the first is free, the second costs a minute (1 s here).
        body = {
            "label": "shift",
            "destinations": [
                {"type": "rtmp", "config": {"url": f"rtmp://127.0.0.1:{sink_port}/live/one"}},
                {"type": "rtmp", "config": {"url": f"rtmp://127.0.0.1:{sink_port}/live/two"}},
            ],
        }
        created = api.post("/streams", json=body)
        assert created.status_code in (200, 201), created.text
        stream = created.json()
        key = stream["streamKey"]
        first = publisher(media_a, key, 120)
        second = refused = None
        try:
            wait_for(lambda: dest_states(api, stream["id"]) == ["live", "live"], 30, "live on A")
            [row] = session_rows(database_url, stream["id"])
            assert row["node_id"] == "media-a"

            # The same key on the other node: refused (one owner), the session stays on A.
            refused = publisher(media_b, key, 30)
            assert refused.wait(timeout=30) != 0
            assert [
                (r["session_id"], r["node_id"]) for r in session_rows(database_url, stream["id"])
            ] == [(row["session_id"], "media-a")]
            assert first.poll() is None

            # With ?shift=1 it takes over: the same session goes on, owned and metered by B.
            metered_on_a = session_rows(database_url, stream["id"])[0]["metered_minutes"]
            second = publisher(media_b, f"{key}?shift=1", 120)
            moved = wait_for(
                lambda: [r for r in session_rows(database_url, stream["id"])
                         if r["node_id"] == "media-b"],
                30,
                "the session taken over by media-b",
            )  # fmt: skip
            assert [(r["session_id"], r["ended_ms"]) for r in moved] == [(row["session_id"], None)]
            assert first.wait(timeout=15) is not None  # A disconnected its publisher
            wait_for(lambda: "handed over to node media-b" in media_a.log(), 10, "A handing over")
            wait_for(
                lambda: dest_states(api, stream["id"]) == ["live", "live"], 30, "live again on B"
            )
            wait_for(
                lambda: (
                    session_rows(database_url, stream["id"])[0]["metered_minutes"]
                    > metered_on_a + 2
                ),
                15,
                "B metering the session",
            )
            # Each destination saw exactly one reconnect: A's publish, then B's, never both.
            for name in ("one", "two"):
                accepted, publishing = sink_publishers(sink_log, name)
                assert len(accepted) == 2 and publishing == accepted[1:], (name, accepted)
            stopped = api.post(f"/streams/{stream['id']}/stop")
            assert stopped.status_code == 200, stopped.text
        finally:
            for proc in (first, refused, second):
                if proc is not None:
                    proc.kill()
                    proc.wait()
    closed = closed_session(database_url, stream["id"], 15)
    assert (closed["node_id"], closed["end_reason"]) == ("media-b", "stopped")
    # Billed in one session: every completed minute of the paid destination exactly once.
    keys = minutes_charged_once(database_url, closed)
    assert len({k.split(":")[2] for k in keys}) == 1  # the paid destination only


def test_a_partitioned_media_node_that_comes_back_stops_what_it_lost(
    fleet: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    fast = {"push_retry_max_seconds": "1", "rate_limit_per_minute": "100000"}
    api_node = fleet("api", "api-1", **fast)
    media = fleet("media", "media-a", **fast)
    other = fleet("media", "media-b", **fast)
    database_url: str = fleet.database_url  # type: ignore[attr-defined]
    out = api_node.cli("accounts", "create", f"op-{secrets.token_hex(3)}", "--admin")
    sk = next(ln.split()[-1] for ln in out.splitlines() if "sk_" in ln)
    api = httpx.Client(base_url=api_node.base_url + "/api", headers={"X-API-Key": sk}, timeout=30)
    with nginx_rtmp_sink(tmp_path / "sink") as (sink_port, _records):
        # nginx-rtmp refuses a second publisher of a live name, as a platform does: the
        # survivor's output gets on air only once the cut-off node let go of it.
        url = f"rtmp://127.0.0.1:{sink_port}/live/platform"
        sink_log = tmp_path / "sink" / "error.log"
        body = {"label": "p", "destinations": [{"type": "rtmp", "config": {"url": url}}]}
        created = api.post("/streams", json=body).json()
        pub = publisher(media, created["streamKey"], 120)
        again = None
        try:
            wait_for(lambda: dest_states(api, created["id"]) == ["live"], 30, "live on A")
            [from_a] = wait_for(lambda: sink_publishers(sink_log, "platform")[1], 10, "A on air")
            assert media.proc is not None
            media.proc.send_signal(signal.SIGSTOP)  # cut off: no heartbeat, no bus
            try:
                wait_for(
                    lambda: (
                        [r["end_reason"] for r in session_rows(database_url, created["id"])]
                        == ["node_lost"]
                    ),
                    15,
                    "the cut-off node's session closed by the API node",
                )
                # The publisher comes back through the load balancer, on the survivor.
                pub.kill()
                again = publisher(other, created["streamKey"], 120)
                wait_for(
                    lambda: [r["node_id"] for r in session_rows(database_url, created["id"])
                             if r["ended_ms"] is None] == ["media-b"],
                    30,
                    "a new session on media-b",
                )  # fmt: skip
                # The frozen node still holds the platform's name: the survivor is refused.
                wait_for(
                    lambda: "already publishing" in sink_log.read_text(errors="replace"),
                    20,
                    "the platform refusing the survivor's output",
                )
                assert sink_publishers(sink_log, "platform")[1] == [from_a]
            finally:
                media.proc.send_signal(signal.SIGCONT)
            # Back: it notices (its lease ran out, or its session row is closed, or it was
            # declared lost: whichever it sees first) and stops publishing what it lost, so the
            # survivor's output gets on air.
            wait_for(
                lambda: (on_air := sink_publishers(sink_log, "platform")[1]) and on_air != [from_a],
                20,
                "the survivor on air, alone",
            )
            assert len(sink_publishers(sink_log, "platform")[1]) == 1
            fenced = ("lease not renewed", "no longer the owner", "declared lost")
            assert any(line in media.log() for line in fenced)
            nodes = wait_for(
                lambda: sorted(n["id"] for n in api.get("/admin/nodes").json()
                               if n["state"] == "live") == ["media-a", "media-b"],
                15,
                "the node registered again",
            )  # fmt: skip
            assert nodes
            # Closed once: the node's own ending did not reopen or re-close it.
            rows = session_rows(database_url, created["id"])
            assert [(r["node_id"], r["end_reason"]) for r in rows] == [
                ("media-a", "node_lost"),
                ("media-b", None),
            ]
        finally:
            for proc in (pub, again):
                if proc is not None:
                    proc.kill()
                    proc.wait()


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    server = RedisServer(tmp_path / "redis")
    server.start()
    try:
        yield server
    finally:
        server.kill()


def test_rate_limits_fail_open_or_closed_while_redis_restarts(
    own_redis: RedisServer, tmp_path: Path
) -> None:
    servers = {}
    for mode in ("open", "closed"):
        server = make_server(
            tmp_path / mode,
            rate_limit_storage_uri=own_redis.url,
            rate_limit_on_redis_down=mode,
            rate_limit_per_minute="1000",
        )
        server.data_dir.mkdir()
        server.start()
        servers[mode] = server
    try:
        keys = {mode: server.create_account() for mode, server in servers.items()}

        def streams(mode: str) -> httpx.Response:
            url = servers[mode].base_url + "/api/streams"
            return httpx.get(url, headers={"X-API-Key": keys[mode]}, timeout=10)

        for mode in servers:  # counted in Redis
            counted = streams(mode)
            assert counted.status_code == 200, counted.text
            assert int(counted.headers["X-RateLimit-Remaining"]) < 1000
        own_redis.kill()
        assert streams("open").status_code == 200
        refused = streams("closed")
        assert refused.status_code == 429, refused.text
        assert int(refused.headers["Retry-After"]) > 0
        for server in servers.values():
            assert "rate limit storage unreachable" in server.log()
        own_redis.start()  # restarted empty: counting starts again, on both
        for mode in servers:
            wait_for(
                lambda mode=mode: (
                    (r := streams(mode)).status_code == 200
                    and int(r.headers["X-RateLimit-Remaining"]) == 999
                ),
                15,
                f"limits counted again ({mode})",
            )
    finally:
        for server in servers.values():
            server.stop()


def test_the_control_bus_reconnects_after_a_redis_restart(
    fleet: Callable[..., ServerProcess], own_redis: RedisServer
) -> None:
    api_node = fleet("api", "api-1", redis_url=own_redis.url)
    media = fleet("media", "media-a", redis_url=own_redis.url)
    sk = api_node.create_account(sats=10_000)
    api = httpx.Client(base_url=api_node.base_url + "/api", headers={"X-API-Key": sk}, timeout=30)
    created = self_hosted_stream(api, "r")
    pub = publisher(media, created["streamKey"], 90)

    def live_sessions() -> int:
        return int(httpx.get(api_node.base_url + "/healthz").json()["liveSessions"])

    try:
        wait_for(lambda: live_sessions() == 1, 30, "live through the API node")
        own_redis.kill()
        # Snapshots expire with Redis gone: the API node sees nothing live meanwhile.
        wait_for(lambda: live_sessions() == 0, 15, "the live view gone with Redis")
        own_redis.start()
        wait_for(lambda: live_sessions() == 1, 15, "the live view back after the restart")
        stop_through_the_reconnected_bus(api, created)
    finally:
        pub.kill()
        pub.wait()
    assert "control bus:" in media.log()


def test_postgres_connections_dropped_mid_session_lose_and_double_no_charge(
    fleet: Callable[..., ServerProcess],
) -> None:
    """PostgreSQL restarting, as the nodes see it: every connection of the fleet's database
    terminated (``pg_terminate_backend``) several times while a billed session is live."""
    fast = {"billing_minute_seconds": "1", "rate_limit_per_minute": "100000"}
    api_node = fleet("api", "api-1", **fast)
    media = fleet("media", "media-a", **fast)
    database_url: str = fleet.database_url  # type: ignore[attr-defined]
    sk = api_node.create_account(sats=100_000)
    api = httpx.Client(base_url=api_node.base_url + "/api", headers={"X-API-Key": sk}, timeout=30)
    dead = [f"rtmp://127.0.0.1:{free_port()}/live/{n}" for n in ("free", "paid")]
    body = {"label": "pg", "destinations": [{"type": "rtmp", "config": {"url": u}} for u in dead]}
    created = api.post("/streams", json=body).json()
    pub = publisher(media, created["streamKey"], 120)

    def metered() -> int:
        rows = session_rows(database_url, created["id"])
        return int(rows[0]["metered_minutes"]) if rows else -1

    try:
        wait_for(lambda: metered() >= 2, 30, "the session metered")
        for _ in range(3):
            before = metered()
            dropped = query(
                database_url,
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()",
            )
            assert dropped
            wait_for(lambda b=before: metered() >= b + 2, 30, "metering again after the drop")
        query(
            database_url,
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()",
        )
        wait_for(
            lambda: api.post(f"/streams/{created['id']}/stop").status_code == 200,
            15,
            "a stop right after the drop",
        )
    finally:
        pub.kill()
        pub.wait()
    closed = closed_session(database_url, created["id"], 30)
    assert closed["end_reason"] == "stopped"
    keys = minutes_charged_once(database_url, closed)
    charged = 100_000 - int(api.get("/wallet/balance").json()["balance"])
    assert charged == 2 * len(keys)  # one paid destination, 2 sats a minute


LEAN_FORBIDDEN = (
    "fastapi",
    "jinja2",
    "alembic",
    "av",
    "playwright",
    "boto3",
    "httpx",
    "simulcast.app",
    "simulcast.control.api.routes",
    "simulcast.control.api.deps",
    "simulcast.control.schemas",
    "simulcast.control.webhook_dispatcher",
    "simulcast.control.topups",
    "typer",
    # watchfiles itself shows as imported (the import serve blocks is reported): its Rust core
    "watchfiles._rust_notify",
)
"""What a media node must never import: the API's framework, templates, schemas and routes,
migrations, media decoding, the overlay browser, S3, webhook delivery, Lightning, the admin
command line and uvicorn's reloader."""


def test_a_media_node_relays_and_serves_hls_without_the_api_stack(
    fleet: Callable[..., ServerProcess],
) -> None:
    api_node = fleet("api", "api-1")  # migrates the database, so the media node need not
    media = fleet("media", "media-lean", env={"PYTHONPROFILEIMPORTTIME": "1"})
    sk = api_node.create_account(sats=10_000)
    api = httpx.Client(base_url=api_node.base_url + "/api", headers={"X-API-Key": sk}, timeout=30)
    stream = self_hosted_stream(api, "l")
    dest = stream["destinations"][0]
    playlist = media.base_url + f"/hls/{dest['playbackToken']}/index.m3u8?apiKey={dest['apiKey']}"
    pub = publisher(media, stream["streamKey"], 60)
    try:
        # Served by the media node's own small app: credentials checked, playlist and segment.
        body = wait_for(
            lambda: (r := httpx.get(playlist)).status_code == 200 and ".m4s" in r.text and r.text,
            30,
            "the playlist from the media node",
        )
        segment = next(ln for ln in body.splitlines() if ".m4s" in ln)
        assert httpx.get(media.base_url + f"/hls/{dest['playbackToken']}/{segment}").is_success
        assert (
            httpx.get(media.base_url + f"/hls/{dest['playbackToken']}/index.m3u8").status_code
            == 401
        )
        assert httpx.get(media.base_url + "/api/streams").status_code == 404
        gauges = {
            line.split()[0]: float(line.split()[1])
            for line in httpx.get(media.base_url + "/metrics").text.splitlines()
            if line.startswith(("simulcast_gop_cache_bytes", "simulcast_output_queued"))
        }
        assert gauges["simulcast_gop_cache_bytes"] > 0, gauges
        assert "simulcast_output_queued_bytes" in gauges
        health = httpx.get(media.base_url + "/healthz").json()
        assert health["ok"] is True and health["liveSessions"] == 1, health
        assert {"node-heartbeat", "billing-meter"} <= {job["name"] for job in health["jobs"]}, (
            health
        )
    finally:
        pub.kill()
        pub.wait()
    media.stop()
    modules = imported_modules(media.log())
    assert "simulcast.roles" in modules and "simulcast.media.local_engine" in modules
    loaded = sorted(
        m for m in modules if any(m == f or m.startswith(f + ".") for f in LEAN_FORBIDDEN)
    )
    assert not loaded, f"a media node imported {loaded}"
