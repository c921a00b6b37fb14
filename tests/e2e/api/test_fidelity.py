"""What a new user of the seed's API hits first, replayed against real servers: absolute URLs
from another machine's point of view, self-hosted never billed per minute, history pages, the
DVR default, `message` in error bodies, and a refused webhook target naming its setting."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import av
import httpx
import pytest

from tests.support import REPO, ServerProcess, free_port, make_server, publisher, wait_for

pytestmark = pytest.mark.media


@pytest.fixture
def started(tmp_path: Path) -> Iterator[Callable[..., ServerProcess]]:
    """Start servers with given settings; all stopped at teardown."""
    servers: list[ServerProcess] = []

    def start(**settings: str) -> ServerProcess:
        server = make_server(tmp_path / f"s{len(servers)}", **settings)
        server.data_dir.mkdir()
        server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


def test_hls_url_names_the_address_it_was_asked_through(
    started: Callable[..., ServerProcess],
) -> None:
    # The default bind (all addresses); the client reaches it through a second loopback address
    # standing in for "another machine": the URL must name that address, and play from it.
    server = started(http_host="0.0.0.0", hls_segment_seconds="1")
    sk = server.create_account(sats=10_000)
    other = f"http://127.0.0.2:{server.http_port}"
    api = httpx.Client(base_url=other + "/api", headers={"X-API-Key": sk}, timeout=30)
    stream = api.post(
        "/streams", json={"label": "far", "destinations": [{"type": "self-hosted"}]}
    ).json()
    pk = stream["destinations"][0]["apiKey"]
    assert (
        api.get(f"/streams/{stream['id']}")
        .json()["destinations"][0]["url"]
        .startswith(other + "/hls/")
    )
    ffmpeg = publisher(server, stream["streamKey"], 30)
    try:

        def viewer_status(**headers: str) -> dict[str, Any]:
            """What the seed's player page asks, with the pk_ key, through 127.0.0.2."""
            response = httpx.get(
                f"{other}/api/public/stream/status", params={"apiKey": pk}, headers=headers
            )
            body: dict[str, Any] = response.json()
            return body

        status = wait_for(lambda: (s := viewer_status())["hlsReady"] and s, 30, "hlsReady")
        assert status["hlsUrl"].startswith(other + "/hls/"), status["hlsUrl"]
        # Asked through 127.0.0.1, the same server names 127.0.0.1.
        near = httpx.get(
            f"{server.base_url}/api/public/stream/status", params={"apiKey": pk}
        ).json()
        assert near["hlsUrl"].startswith(server.base_url + "/hls/")
        # Forwarded headers are ignored unless the operator trusts a proxy.
        spoofed = viewer_status(
            **{"X-Forwarded-Host": "evil.example", "X-Forwarded-Proto": "https"}
        )
        assert spoofed["hlsUrl"].startswith(other + "/hls/")
        with av.open(status["hlsUrl"], timeout=20) as container:
            frames = 0
            for _frame in container.decode(video=0):
                frames += 1
                if frames >= 15:
                    break
        assert frames >= 15
    finally:
        ffmpeg.kill()
        ffmpeg.wait()


def _account_with_a_self_hosted_stream(
    server: ServerProcess,
) -> tuple[httpx.Client, dict[str, Any]]:
    """A new account's API client on ``server``, and its new stream of one self-hosted
    destination."""
    sk = server.create_account()
    api = httpx.Client(base_url=server.base_url + "/api", headers={"X-API-Key": sk})
    stream = api.post(
        "/streams", json={"label": "p", "destinations": [{"type": "self-hosted"}]}
    ).json()
    return api, stream


def test_forwarded_host_only_behind_a_trusted_proxy(
    started: Callable[..., ServerProcess],
) -> None:
    server = started(trust_proxy_headers="true")
    api, stream = _account_with_a_self_hosted_stream(server)
    proxied = api.get(
        f"/streams/{stream['id']}",
        headers={"X-Forwarded-Host": "live.example.org", "X-Forwarded-Proto": "https"},
    ).json()
    assert proxied["destinations"][0]["url"].startswith("https://live.example.org/hls/")
    # A forwarded host that could end the URL's authority is not used.
    odd = api.get(
        f"/streams/{stream['id']}", headers={"X-Forwarded-Host": "a.example/@evil"}
    ).json()
    assert odd["destinations"][0]["url"].startswith(server.base_url + "/hls/")

    fixed = started(public_url="https://cdn.example.net/")
    api2, s2 = _account_with_a_self_hosted_stream(fixed)
    url = api2.get(f"/streams/{s2['id']}").json()["destinations"][0]["url"]
    assert url.startswith("https://cdn.example.net/hls/")


def test_self_hosted_is_never_a_platform_minute_and_history_pages(
    started: Callable[..., ServerProcess],
) -> None:
    # Minutes of one second; FREE_PLATFORMS=1, COST_PER_PLATFORM=2 (defaults).
    server = started(billing_minute_seconds="1", push_retry_max_seconds="1")
    sk = server.create_account(sats=10_000)
    api = httpx.Client(base_url=server.base_url + "/api", headers={"X-API-Key": sk}, timeout=30)
    dead = f"rtmp://127.0.0.1:{free_port()}/app/live_123"  # a Twitch-like RTMP ingest, down
    stream = api.post(
        "/streams",
        json={
            "label": "two",
            "destinations": [
                {"type": "rtmp", "config": {"url": dead}},
                {"type": "self-hosted", "config": {"mode": "production"}},
            ],
        },
    ).json()
    sid = stream["id"]

    def cost() -> dict[str, Any]:
        body: dict[str, Any] = api.get("/public/streams/active/cost").json()
        return body

    ffmpeg = publisher(server, stream["streamKey"], 60)
    try:
        wait_for(lambda: cost()["hasActiveStream"], 30, "live")
        assert cost()["streams"][0]["ratePerMinute"] == 0
        started_at = cost()["streams"][0]["startedAt"]
        wait_for(lambda: time.time() * 1000 - started_at > 4_000, 10, "four billing minutes")
        assert cost()["streams"][0]["totalCharged"] == 0
        assert api.get("/wallet/balance").json()["balance"] == 10_000

        # A second platform does cost: the meter is running, self-hosted just isn't a minute.
        api.post(f"/streams/{sid}/destinations", json={"type": "rtmp", "config": {"url": dead}})
        wait_for(lambda: cost()["streams"][0]["ratePerMinute"] == 2, 10, "rate 2")
        wait_for(lambda: cost()["streams"][0]["totalCharged"] >= 4, 15, "two paid minutes")
        assert api.post(f"/streams/{sid}/stop").status_code == 200
        wait_for(lambda: not cost()["hasActiveStream"], 20, "ended")
    finally:
        ffmpeg.kill()
        ffmpeg.wait()

    # A second session, so history has four rows (two sessions x two platforms).
    again = publisher(server, stream["streamKey"], 60)
    try:
        wait_for(lambda: cost()["hasActiveStream"], 30, "live again")
        assert api.post(f"/streams/{sid}/stop").status_code == 200
        wait_for(lambda: not cost()["hasActiveStream"], 20, "ended again")
    finally:
        again.kill()
        again.wait()

    everything = api.get("/stream-history").json()
    assert len(everything) == 4 and "Link" not in api.get("/stream-history").headers
    for row in everything:
        if row["platform"] == "Self-Hosted":
            assert row["totalCostSats"] == 0
    assert (
        sum(r["totalCostSats"] for r in everything)
        == 10_000 - api.get("/wallet/balance").json()["balance"]
    )

    pages, url = [], f"{server.base_url}/api/stream-history?limit=1&platform=custom"
    while url:
        response = api.get(url)
        assert len(response.json()) == 1
        pages.append(response.json()[0]["id"])
        url = response.links.get("next", {}).get("url")
        assert url is None or url.startswith(server.base_url + "/api/stream-history?")
    assert pages == [r["id"] for r in everything if r["platform"] == "Custom"]
    first_two = api.get("/stream-history", params={"limit": 3})
    assert [r["id"] for r in first_two.json()] == [r["id"] for r in everything[:3]]
    rest = api.get(first_two.links["next"]["url"]).json()
    assert [r["id"] for r in rest] == [everything[3]["id"]]
    assert api.get("/stream-history", params={"limit": 1001}).status_code == 400
    assert api.get("/stream-history", params={"before": 10**9}).status_code == 400


def test_error_bodies_a_new_user_reads(server: ServerProcess, sk: str) -> None:
    api = httpx.Client(base_url=server.base_url + "/api", headers={"X-API-Key": sk})
    missing = api.post("/archives/recover", json={"fileName": "nope.mp4"})
    assert missing.status_code == 404
    assert missing.json() == {"error": "Archive not found", "message": "Archive not found"}

    refused = api.post(
        "/webhooks", json={"url": "https://127.0.0.1:9/hook", "events": ["stream.started"]}
    )
    assert refused.status_code == 400
    assert "SIMULCAST_WEBHOOKS_ALLOW_PRIVATE" in refused.json()["error"]
    plain = api.post(
        "/webhooks", json={"url": "http://example.com/hook", "events": ["stream.started"]}
    )
    assert plain.status_code == 400 and "SIMULCAST_WEBHOOKS_ALLOW_HTTP" in plain.json()["error"]
    readme = (REPO / "README.md").read_text()
    assert "SIMULCAST_WEBHOOKS_ALLOW_PRIVATE" in readme

    # The DVR window of a default self-hosted destination is the seed's hour.
    stream = api.post(
        "/streams", json={"label": "dvr", "destinations": [{"type": "self-hosted"}]}
    ).json()
    pk = stream["destinations"][0]["apiKey"]
    status = httpx.get(server.base_url + "/api/public/stream/status", params={"apiKey": pk}).json()
    assert status["dvr"]["maxWindowSeconds"] == 3600 and status["dvr"]["windowSeconds"] == 0
    detail = api.get(f"/streams/{stream['id']}").json()
    assert detail["destinations"][0]["dvrWindowSeconds"] == 3600
    short = api.post(
        f"/streams/{stream['id']}/destinations",
        json={"type": "self-hosted", "config": {"dvrWindowSeconds": 600}},
    ).json()
    short_status = httpx.get(
        server.base_url + "/api/public/stream/status", params={"apiKey": short["apiKey"]}
    ).json()
    assert short_status["dvr"]["maxWindowSeconds"] == 600
    too_long = api.post(
        f"/streams/{stream['id']}/destinations",
        json={"type": "self-hosted", "config": {"dvrWindowSeconds": 3601}},
    )
    assert too_long.status_code == 400 and "dvrWindowSeconds" in too_long.json()["error"]
