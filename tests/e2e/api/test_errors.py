"""Error bodies and codes exactly as API.md says, and bad input that changes nothing."""

from __future__ import annotations

import httpx
import pytest

from tests.support import ServerProcess

MISSING = (
    "API key required. Provide via X-API-Key header, Authorization: Bearer header, "
    "or ?apiKey= query parameter."
)


@pytest.fixture
def client(server: ServerProcess, sk: str) -> httpx.Client:
    return httpx.Client(base_url=server.base_url, headers={"Authorization": f"Bearer {sk}"})


def new_stream(client: httpx.Client, **body: object) -> dict[str, object]:
    response = client.post("/api/streams", json={"label": "s", **body})
    assert response.status_code == 200, response.text
    data: dict[str, object] = response.json()
    return data


def test_missing_and_invalid_keys(server: ServerProcess) -> None:
    for path in ("/api/public/stream/status", "/api/streams", "/api/wallet/balance"):
        response = httpx.get(server.base_url + path)
        assert response.status_code == 401
        assert response.json() == {"error": MISSING}
        for headers in ({"X-API-Key": "pk_nope"}, {"Authorization": "Bearer sk_nope"}):
            response = httpx.get(server.base_url + path, headers=headers)
            assert response.status_code == 401
            assert response.json() == {"error": "Invalid API key or destination disabled"}


def test_public_key_is_read_only(server: ServerProcess, client: httpx.Client) -> None:
    created = new_stream(client, destinations=[{"type": "self-hosted"}])
    pk = created["destinations"][0]["apiKey"]  # type: ignore[index]
    for method, path in (
        ("GET", "/api/streams"),
        ("POST", "/api/streams"),
        ("GET", "/api/wallet/balance"),
        ("GET", "/api/stream-history"),
    ):
        response = httpx.request(
            method, server.base_url + path, headers={"X-API-Key": pk}, json={"label": "x"}
        )
        assert response.status_code == 403, path
        assert "sk_" in response.json()["error"]


def test_disabled_destination_key_is_refused(server: ServerProcess, client: httpx.Client) -> None:
    created = new_stream(client, destinations=[{"type": "self-hosted"}])
    dest = created["destinations"][0]  # type: ignore[index]
    status = server.base_url + "/api/public/stream/status"
    assert httpx.get(status, headers={"X-API-Key": dest["apiKey"]}).status_code == 200
    response = client.patch(
        f"/api/streams/{created['id']}/destinations/{dest['id']}", json={"enabled": False}
    )
    assert response.status_code == 200 and response.json()["enabled"] is False
    response = httpx.get(status, headers={"X-API-Key": dest["apiKey"]})
    assert response.status_code == 401
    assert response.json() == {"error": "Invalid API key or destination disabled"}
    client.delete(f"/api/destinations/{dest['id']}")
    assert httpx.get(status, headers={"X-API-Key": dest["apiKey"]}).status_code == 401


def test_rate_limit(server: ServerProcess, client: httpx.Client) -> None:
    first = client.get("/api/wallet/balance")
    assert first.headers["X-RateLimit-Limit"] == "60"
    assert int(first.headers["X-RateLimit-Remaining"]) == 59
    assert int(first.headers["X-RateLimit-Reset"]) > 0
    for _ in range(59):
        assert client.get("/api/wallet/balance").status_code == 200
    response = client.get("/api/wallet/balance")
    assert response.status_code == 429
    body = response.json()
    assert body["error"] == "Rate limit exceeded. Maximum 60 requests per minute."
    assert isinstance(body["retryAfter"], int) and 1 <= body["retryAfter"] <= 60
    assert response.headers["Retry-After"] == str(body["retryAfter"])


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"label": 123}, "label"),
        ({"label": "x" * 201}, "label"),
        ({"label": ""}, "label"),
        ({"label": "ok", "destinations": [{"type": "ftp", "config": {}}]}, "destinations.0.type"),
        (
            {"label": "ok", "destinations": [{"type": "rtmp", "config": {"url": "http://x/a/b"}}]},
            "destinations.0.config.url",
        ),
        (
            {"label": "ok", "destinations": [{"type": "rtmp", "config": {"url": "rtmp:///app/k"}}]},
            "destinations.0.config.url",
        ),
        (
            {"label": "ok", "destinations": [{"type": "twitch", "config": {}}]},
            "destinations.0.config.key",
        ),
    ],
)
def test_bad_stream_bodies(client: httpx.Client, body: dict[str, object], field: str) -> None:
    before = client.get("/api/streams").json()
    response = client.post("/api/streams", json=body)
    assert response.status_code == 400, response.text
    assert response.json()["field"] == field
    assert field.split(".")[-1] in response.json()["error"]
    assert client.get("/api/streams").json() == before


def test_malformed_and_oversize_bodies(client: httpx.Client) -> None:
    response = client.post(
        "/api/streams", content=b'{"label": ', headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400
    assert response.json() == {"error": "Malformed JSON body"}
    response = client.post("/api/streams", json={"label": "x" * (1024 * 1024 + 10)})
    assert response.status_code == 413
    assert "error" in response.json()


def test_limits_validation_and_clearing(client: httpx.Client) -> None:
    stream = new_stream(client)
    url = f"/api/streams/{stream['id']}/limits"
    response = client.post(url, json={"maxSats": -1})
    assert response.status_code == 400 and response.json()["field"] == "maxSats"
    assert client.post(url, json={"maxSats": 10, "maxDurationMinutes": 5}).json() == {
        "success": True
    }
    assert client.post(url, json={"maxSats": None}).status_code == 200
    limits = client.get(f"/api/streams/{stream['id']}").json()["limits"]
    assert limits == {"maxDurationMinutes": 5}


def test_other_accounts_objects_are_invisible(server: ServerProcess, client: httpx.Client) -> None:
    mine = new_stream(client, destinations=[{"type": "rtmp", "config": {"url": "rtmp://h/app/k"}}])
    dest_id = mine["destinations"][0]["id"]  # type: ignore[index]
    other = httpx.Client(
        base_url=server.base_url, headers={"Authorization": f"Bearer {server.create_account()}"}
    )
    for method, path in (
        ("GET", f"/api/streams/{mine['id']}"),
        ("GET", f"/api/streams/{mine['id']}/destinations"),
        ("POST", f"/api/streams/{mine['id']}/stop"),
        ("DELETE", f"/api/destinations/{dest_id}"),
        ("DELETE", f"/api/streams/{mine['id']}/destinations/{dest_id}"),
    ):
        response = other.request(method, path)
        assert response.status_code == 404, (method, path)
        assert "error" in response.json()
    response = other.post(f"/api/streams/{mine['id']}/limits", json={"maxSats": 1})
    assert response.status_code == 404
    assert client.get(f"/api/streams/{mine['id']}").json()["limits"] == {}
    assert len(client.get(f"/api/streams/{mine['id']}/destinations").json()) == 1


def test_destination_delete_paths(client: httpx.Client) -> None:
    a = new_stream(client, destinations=[{"type": "rtmp", "config": {"url": "rtmp://h/app/k"}}])
    b = new_stream(client)
    dest_id = a["destinations"][0]["id"]  # type: ignore[index]
    assert client.delete(f"/api/streams/{b['id']}/destinations/{dest_id}").status_code == 404
    assert client.delete(f"/api/streams/{a['id']}/destinations/{dest_id}").json() == {
        "success": True
    }
    assert client.delete(f"/api/destinations/{dest_id}").status_code == 404


@pytest.mark.parametrize(
    ("dest", "platform", "masked"),
    [
        (
            {"type": "twitch", "config": {"key": "live_abc"}},
            "Twitch",
            "rtmp://live.twitch.tv/app/****",
        ),
        (
            {"type": "rtmp", "config": {"url": "rtmp://a.rtmp.youtube.com/live2/xyz"}},
            "YouTube",
            "rtmp://a.rtmp.youtube.com/live2/****",
        ),
        (
            {
                "type": "rtmp",
                "config": {
                    "url": "rtmps://fa723fc1b171.global-contribute.live-video.net:443/app/",
                    "key": "sk_us-west",
                },
            },
            "Kick",
            "rtmps://fa723fc1b171.global-contribute.live-video.net:443/app/****",
        ),
        (
            {"type": "rtmp", "config": {"url": "rtmps://live-api-s.facebook.com:443/rtmp/FB-1"}},
            "Facebook",
            "rtmps://live-api-s.facebook.com:443/rtmp/****",
        ),
        (
            {"type": "rtmp", "config": {"url": "rtmp://example.org/live/inst/k"}},
            "Custom",
            "rtmp://example.org/live/inst/****",
        ),
    ],
)
def test_platforms_and_masking(
    client: httpx.Client, dest: dict[str, object], platform: str, masked: str
) -> None:
    stream = new_stream(client, destinations=[dest])
    (out,) = client.get(f"/api/streams/{stream['id']}/destinations").json()
    assert out["platform"] == platform
    assert out["url"] == masked


def test_login_logout(server: ServerProcess) -> None:
    server.create_account("dash-user", "correct horse")
    bad = httpx.post(
        server.base_url + "/api/auth/login", json={"username": "dash-user", "password": "nope"}
    )
    assert bad.status_code == 401 and "error" in bad.json()
    login = httpx.post(
        server.base_url + "/api/auth/login",
        json={"username": "dash-user", "password": "correct horse"},
    ).json()
    headers = {"Authorization": f"Bearer {login['token']}"}
    assert login["expiresAt"] > 0
    assert httpx.get(server.base_url + "/api/streams", headers=headers).status_code == 200
    assert httpx.post(server.base_url + "/api/auth/logout", headers=headers).status_code == 200
    assert httpx.get(server.base_url + "/api/streams", headers=headers).status_code == 401


def test_not_found_is_json(server: ServerProcess) -> None:
    response = httpx.get(server.base_url + "/nope")
    assert response.status_code == 404 and response.json() == {"error": "Not found"}
    response = httpx.put(server.base_url + "/api/streams")
    assert response.status_code in (401, 405) and "error" in response.json()
