"""The seed's curl and Python examples, replayed against a real server with only the base URL
changed; every field's presence and type compared with the seed's sample responses."""

from __future__ import annotations

import pytest
import requests

from tests.support import ServerProcess

OFFLINE_STATUS = {
    "isLive": bool,
    "hlsReady": bool,
    "hlsUrl": type(None),
    "streamKeyLabel": str,
    "label": str,
    "startedAt": type(None),
    "playbackToken": type(None),
    "dvr": dict,
    "bandwidth": dict,
}
DVR = {"enabled": bool, "windowSeconds": int, "maxWindowSeconds": int, "availableFrom": type(None)}
BANDWIDTH = {
    "usedGB": str,
    "limitGB": int,
    "remainingGB": str,
    "overageGB": str,
    "overageSats": int,
    "hourStart": int,
}


def assert_shape(obj: dict[str, object], shape: dict[str, type]) -> None:
    for key, kind in shape.items():
        assert key in obj, f"missing {key} in {obj}"
        assert isinstance(obj[key], kind), f"{key}: {obj[key]!r} is not {kind}"


def create_stream(base: str, token: str, label: str) -> dict[str, object]:
    """The seed's Python ``create_stream``."""
    response = requests.post(
        f"{base}/streams",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        json={"label": label},
    )
    data: dict[str, object] = response.json()
    print(f"Created stream: {data['id']}, Key: {data['streamKey']}")
    return data


def add_destination(base: str, token: str, stream_id: object, dest_type: str, url: str) -> dict:
    """The seed's Python ``add_destination``."""
    response = requests.post(
        f"{base}/streams/{stream_id}/destinations",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        json={"type": dest_type, "config": {"url": url}},
    )
    data: dict[str, object] = response.json()
    print(f"Added destination: {data['id']}")
    return data


def stop_stream(
    base: str, token: str, stream_id: object, capsys: pytest.CaptureFixture[str]
) -> dict[str, object]:
    """The seed's Python ``stop_stream`` (arguments made explicit), checking what it prints."""
    response = requests.post(
        f"{base}/streams/{stream_id}/stop", headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 409
    data: dict[str, object] = response.json()
    capsys.readouterr()
    print(f"Stream stopped: {data['message']}")
    assert capsys.readouterr().out == "Stream stopped: Stream is not live\n"
    return data


def test_management_examples(
    server: ServerProcess, sk: str, capsys: pytest.CaptureFixture[str]
) -> None:
    base = server.base_url + "/api"
    stream = create_stream(base, sk, "My Event Stream")
    assert isinstance(stream["id"], int) and isinstance(stream["streamKey"], str)
    assert stream["label"] == "My Event Stream"
    assert stream["status"] == "idle" and stream["limits"] == {}

    added = add_destination(base, sk, stream["id"], "rtmp", "rtmp://live.twitch.tv/app/SECRETKEY")
    assert added["success"] is True and isinstance(added["id"], int)

    response = requests.post(
        f"{base}/streams/{stream['id']}/limits",
        headers={"Authorization": f"Bearer {sk}", "Content-Type": "application/json"},
        json={"maxSats": 1000, "maxDurationMinutes": 60},
    )
    assert response.json() == {"success": True}

    listed = requests.get(f"{base}/streams", headers={"Authorization": f"Bearer {sk}"}).json()
    assert [s["id"] for s in listed] == [stream["id"]]
    assert_shape(
        listed[0], {"id": int, "streamKey": str, "label": str, "status": str, "createdAt": int}
    )

    detail = requests.get(
        f"{base}/streams/{stream['id']}", headers={"Authorization": f"Bearer {sk}"}
    ).json()
    assert_shape(
        detail,
        {
            "id": int,
            "streamKey": str,
            "label": str,
            "status": str,
            "limits": dict,
            "createdAt": int,
            "destinations": list,
        },
    )
    assert detail["limits"] == {"maxSats": 1000, "maxDurationMinutes": 60}
    assert detail["startedAt"] is None
    (dest,) = detail["destinations"]
    assert dest == {
        **dest,
        "id": added["id"],
        "type": "rtmp",
        "platform": "Twitch",
        "enabled": True,
        "url": "rtmp://live.twitch.tv/app/****",
    }
    assert "SECRETKEY" not in str(detail)

    dests = requests.get(
        f"{base}/streams/{stream['id']}/destinations", headers={"Authorization": f"Bearer {sk}"}
    ).json()
    assert [d["id"] for d in dests] == [added["id"]]

    # Not live: 409 as API.md decides, and the seed's stop_stream still prints (no KeyError).
    data = stop_stream(base, sk, stream["id"], capsys)
    assert data == {"error": "Stream is not live", "message": "Stream is not live"}

    balance = requests.get(f"{base}/wallet/balance", headers={"Authorization": f"Bearer {sk}"})
    assert_shape(balance.json(), {"balance": int, "cached": bool})


def test_unified_creation(server: ServerProcess, sk: str) -> None:
    response = requests.post(
        f"{server.base_url}/api/streams",
        headers={"Authorization": f"Bearer {sk}"},
        json={
            "label": "My Awesome Stream",
            "destinations": [
                {
                    "type": "rtmp",
                    "config": {"url": "rtmp://live.twitch.tv/app/live_123", "key": ""},
                },
                {"type": "self-hosted"},
            ],
        },
    )
    assert response.status_code == 200, response.text
    data = response.json()
    assert_shape(data, {"id": int, "streamKey": str, "label": str, "destinationsCount": int})
    assert data["destinationsCount"] == 2
    hosted = data["destinations"][1]
    assert hosted["apiKey"].startswith("pk_")


def public_key(server: ServerProcess, sk: str, label: str = "My Gaming Stream") -> str:
    response = requests.post(
        f"{server.base_url}/api/streams",
        headers={"Authorization": f"Bearer {sk}"},
        json={"label": label, "destinations": [{"type": "self-hosted"}]},
    )
    key: str = response.json()["destinations"][0]["apiKey"]
    return key


def test_public_examples(server: ServerProcess, sk: str) -> None:
    api_key = public_key(server, sk)
    api_url = f"{server.base_url}/api/public/stream/status"

    # "Using header (recommended)"
    response = requests.get(api_url, headers={"X-API-Key": api_key})
    assert response.status_code == 200
    data = response.json()
    assert_shape(data, OFFLINE_STATUS)
    assert_shape(data["dvr"], DVR)
    assert_shape(data["bandwidth"], BANDWIDTH)
    assert data["isLive"] is False and data["label"] == "My Gaming Stream"
    assert data["bandwidth"]["usedGB"] == "0.00" and data["bandwidth"]["remainingGB"] == "10.00"
    assert data["bandwidth"]["hourStart"] % 3600 == 0

    # curl "...?apiKey=", ?key=, and Authorization: Bearer all work the same.
    for url, headers in (
        (f"{api_url}?apiKey={api_key}", {}),
        (f"{api_url}?key={api_key}", {}),
        (api_url, {"Authorization": f"Bearer {api_key}"}),
    ):
        assert requests.get(url, headers=headers).json()["label"] == "My Gaming Stream"

    cost = requests.get(
        f"{server.base_url}/api/public/streams/active/cost", headers={"X-API-Key": api_key}
    ).json()
    assert cost == {"hasActiveStream": False, "totalCost": 0, "streams": []}

    config = requests.get(f"{server.base_url}/api/public/config").json()
    assert config["pricing"] == {
        "BANDWIDTH_LIMIT_GB_PER_HOUR": 10,
        "BANDWIDTH_OVERAGE_SATS_PER_GB": 5,
        "COST_PER_PLATFORM": 2,
        "FREE_PLATFORMS": 1,
        "INSTANCE_SATS_PER_HOUR": 400,  # V1.md's addition (v1 instances)
    }
    assert isinstance(config["version"], str) and isinstance(config["timestamp"], int)


def test_money_reading_shapes(server: ServerProcess, sk: str) -> None:
    headers = {"Authorization": f"Bearer {sk}"}
    base = server.base_url + "/api"
    usage = requests.get(f"{base}/bandwidth/usage?filter=all", headers=headers).json()
    assert_shape(
        usage,
        {
            "totalGB": (int, float),
            "overageGB": (int, float),  # type: ignore[dict-item]
            "overageSats": int,
        },
    )
    stats = requests.get(f"{base}/dashboard/stats?filter=week", headers=headers).json()
    assert_shape(stats, {"totalMinutes": (int, float), "totalSatsSpent": int})  # type: ignore[dict-item]
    history = requests.get(f"{base}/stream-history", headers=headers).json()
    assert history == []
