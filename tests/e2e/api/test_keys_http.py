"""Keys over HTTP, replayed as a dashboard user does it against a real server: permanent keys
created, listed, used and revoked; dashboard sessions listed and logged out; a stream key and a
self-hosted destination's public key rotated. Revoked and rotated secrets never work again, also
after a restart."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import httpx
import imageio_ffmpeg

from tests.support import ServerProcess, make_server, wait_for


def api(server: ServerProcess, credential: str) -> httpx.Client:
    return httpx.Client(
        base_url=server.base_url + "/api",
        headers={"Authorization": f"Bearer {credential}"},
        timeout=30,
    )


def publisher(server: ServerProcess, key: str, seconds: int, query: str = "") -> subprocess.Popen:
    """ffmpeg publishing test video in real time on ``key``."""
    return subprocess.Popen(
        [
            imageio_ffmpeg.get_ffmpeg_exe(), "-loglevel", "error", "-re",
            "-f", "lavfi", "-i", "testsrc2=size=160x120:rate=15",
            "-t", str(seconds), "-pix_fmt", "yuv420p",
            "-c:v", "libx264", "-preset", "ultrafast", "-g", "15",
            "-f", "flv", server.rtmp_url(key) + query,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )  # fmt: skip


def test_permanent_keys_created_listed_used_revoked(server: ServerProcess, sk: str) -> None:
    owner = api(server, sk)
    created = owner.post("/keys", json={"label": "CI runner"})
    assert created.status_code == 200, created.text
    body = created.json()
    assert set(body) == {"id", "key", "label", "prefix", "createdAt"}
    assert body["key"].startswith("sk_") and body["label"] == "CI runner"
    assert body["key"].startswith(body["prefix"]) and len(body["prefix"]) < len(body["key"])
    assert abs(body["createdAt"] - time.time() * 1000) < 60_000

    listed = owner.get("/keys").json()
    assert [k["id"] for k in listed][-1] == body["id"] and len(listed) == 2
    mine = next(k for k in listed if k["id"] == body["id"])
    assert mine == {
        "id": body["id"],
        "prefix": body["prefix"],
        "label": "CI runner",
        "createdAt": body["createdAt"],
        "lastUsedAt": None,
    }
    assert body["key"] not in created.text.replace(body["key"], "", 1)  # shown once, here only
    assert body["key"] not in owner.get("/keys").text

    ci = api(server, body["key"])
    assert ci.get("/streams").status_code == 200
    used = next(k for k in owner.get("/keys").json() if k["id"] == body["id"])
    assert used["lastUsedAt"] is not None and used["lastUsedAt"] >= body["createdAt"]

    # Revoked by another key: refused from the next call.
    assert owner.delete(f"/keys/{body['id']}").json() == {"success": True}
    assert ci.get("/streams").status_code == 401
    assert [k["id"] for k in owner.get("/keys").json()] == [listed[0]["id"]]
    assert owner.delete(f"/keys/{body['id']}").status_code == 404

    # Revoking the key of the request itself works; its next call is 401.
    spare = owner.post("/keys", json={}).json()
    assert spare["label"] == ""
    spare_client = api(server, spare["key"])
    assert spare_client.delete(f"/keys/{spare['id']}").json() == {"success": True}
    assert spare_client.get("/keys").status_code == 401
    assert owner.get("/keys").status_code == 200


def test_keys_of_another_account_are_404_and_unchanged(server: ServerProcess, sk: str) -> None:
    owner = api(server, sk)
    stranger = api(server, server.create_account())
    key = owner.post("/keys", json={"label": "mine"}).json()
    stream = owner.post(
        "/streams", json={"label": "x", "destinations": [{"type": "self-hosted"}]}
    ).json()
    dest = stream["destinations"][0]

    assert stranger.delete(f"/keys/{key['id']}").status_code == 404
    assert stranger.post(f"/streams/{stream['id']}/rotate-key").status_code == 404
    assert stranger.post(f"/destinations/{dest['id']}/rotate-api-key").status_code == 404
    assert stranger.post("/destinations/999999999/rotate-api-key").status_code == 404
    assert all(k["id"] != key["id"] for k in stranger.get("/keys").json())

    assert api(server, key["key"]).get("/streams").status_code == 200
    assert owner.get(f"/streams/{stream['id']}").json()["streamKey"] == stream["streamKey"]
    status = httpx.get(
        server.base_url + "/api/public/stream/status", params={"apiKey": dest["apiKey"]}
    )
    assert status.status_code == 200

    # A public key cannot manage keys; a non-self-hosted destination has no key to rotate.
    assert api(server, dest["apiKey"]).get("/keys").status_code == 403
    rtmp = owner.post(
        f"/streams/{stream['id']}/destinations",
        json={"type": "rtmp", "config": {"url": "rtmp://a.example/app/k"}},
    ).json()
    refused = owner.post(f"/destinations/{rtmp['id']}/rotate-api-key")
    assert refused.status_code == 400 and "self-hosted" in refused.json()["error"]


def test_dashboard_sessions_listed_and_logged_out(server: ServerProcess) -> None:
    name = f"dash-{time.time_ns()}"
    server.create_account(name, password="correct horse battery")
    tokens = []
    for _ in range(2):
        login = httpx.post(
            server.base_url + "/api/auth/login",
            json={"username": name, "password": "correct horse battery"},
        )
        assert login.status_code == 200, login.text
        tokens.append(login.json()["token"])
    laptop, phone = (api(server, t) for t in tokens)

    sessions = laptop.get("/sessions").json()
    assert len(sessions) == 2
    assert set(sessions[0]) == {"id", "createdAt", "expiresAt", "lastUsedAt", "current"}
    assert [s["current"] for s in sessions] == [True, False]
    assert sessions[0]["lastUsedAt"] is not None and sessions[0]["expiresAt"] > time.time() * 1000
    assert tokens[0] not in laptop.get("/sessions").text

    # The laptop logs the phone out; the phone's token is refused from its next call.
    assert laptop.delete(f"/sessions/{sessions[1]['id']}").json() == {"success": True}
    assert phone.get("/streams").status_code == 401
    assert [s["id"] for s in laptop.get("/sessions").json()] == [sessions[0]["id"]]
    assert laptop.delete(f"/sessions/{sessions[1]['id']}").status_code == 404
    # Another account cannot see or end these sessions.
    stranger = api(server, server.create_account())
    assert stranger.get("/sessions").json() == []
    assert stranger.delete(f"/sessions/{sessions[0]['id']}").status_code == 404
    assert laptop.get("/sessions").status_code == 200


def test_rotated_public_key_keeps_the_playback_url(server: ServerProcess, sk: str) -> None:
    owner = api(server, sk)
    stream = owner.post(
        "/streams", json={"label": "watch", "destinations": [{"type": "self-hosted"}]}
    ).json()
    dest = stream["destinations"][0]
    before = owner.get(f"/streams/{stream['id']}").json()["destinations"][0]

    rotated = owner.post(f"/destinations/{dest['id']}/rotate-api-key")
    assert rotated.status_code == 200, rotated.text
    assert set(rotated.json()) == {"apiKey"}
    new_pk = rotated.json()["apiKey"]
    assert new_pk.startswith("pk_") and new_pk != dest["apiKey"]

    status_url = server.base_url + "/api/public/stream/status"
    assert httpx.get(status_url, params={"apiKey": dest["apiKey"]}).status_code == 401
    fresh = httpx.get(status_url, params={"apiKey": new_pk})
    assert fresh.status_code == 200 and fresh.json()["label"] == "watch"
    after = owner.get(f"/streams/{stream['id']}").json()["destinations"][0]
    assert after["playbackToken"] == before["playbackToken"] == dest["playbackToken"]
    assert after["url"] == before["url"]


def test_rotating_a_live_stream_key(server: ServerProcess) -> None:
    owner = api(server, server.create_account(sats=100_000))
    stream = owner.post("/streams", json={"label": "live"}).json()
    old_key = stream["streamKey"]
    first = publisher(server, old_key, 40)
    try:
        live = wait_for(
            lambda: owner.get(f"/streams/{stream['id']}").json()["sessionId"], 30, "live"
        )
        rotated = owner.post(f"/streams/{stream['id']}/rotate-key")
        assert rotated.status_code == 200, rotated.text
        body = rotated.json()
        assert body["id"] == stream["id"] and body["streamKey"] != old_key
        assert body["status"] == "active" and body["sessionId"] == live
        new_key = body["streamKey"]
        assert owner.get("/streams").json()[0]["streamKey"] == new_key

        # The old key may not take the live session over (stream shift) nor start another.
        shift = publisher(server, old_key, 5, "?shift=1")
        assert shift.wait(timeout=30) != 0
        assert first.poll() is None
        assert owner.get(f"/streams/{stream['id']}").json()["sessionId"] == live

        assert owner.post(f"/streams/{stream['id']}/stop").status_code == 200
        wait_for(
            lambda: owner.get(f"/streams/{stream['id']}").json()["status"] == "idle", 30, "idle"
        )
        again = publisher(server, old_key, 5)
        assert again.wait(timeout=30) != 0
        assert owner.get(f"/streams/{stream['id']}").json()["status"] == "idle"

        second = publisher(server, new_key, 30)
        try:
            wait_for(
                lambda: (
                    owner.get(f"/streams/{stream['id']}").json()["sessionId"] not in (None, live)
                ),
                30,
                "a session on the new key",
            )
        finally:
            second.kill()
            second.wait()
    finally:
        first.kill()
        first.wait()


def test_revoked_and_rotated_secrets_stay_dead_after_restart(
    tmp_path: Path, database_url: str
) -> None:
    server = make_server(tmp_path, database_url)
    server.start()
    try:
        name = f"restart-{time.time_ns()}"
        owner = api(server, server.create_account(name, password="pw-restart-1"))
        doomed = owner.post("/keys", json={"label": "doomed"}).json()
        assert owner.delete(f"/keys/{doomed['id']}").status_code == 200
        stream = owner.post(
            "/streams", json={"label": "r", "destinations": [{"type": "self-hosted"}]}
        ).json()
        old_pk = stream["destinations"][0]["apiKey"]
        new_pk = owner.post(
            f"/destinations/{stream['destinations'][0]['id']}/rotate-api-key"
        ).json()["apiKey"]
        new_key = owner.post(f"/streams/{stream['id']}/rotate-key").json()["streamKey"]
        token = httpx.post(
            server.base_url + "/api/auth/login",
            json={"username": name, "password": "pw-restart-1"},
        ).json()["token"]
        session_id = owner.get("/sessions").json()[0]["id"]
        assert owner.delete(f"/sessions/{session_id}").status_code == 200
    finally:
        server.stop()

    server.start()
    try:
        status_url = server.base_url + "/api/public/stream/status"
        assert api(server, doomed["key"]).get("/streams").status_code == 401
        assert api(server, token).get("/streams").status_code == 401
        assert httpx.get(status_url, params={"apiKey": old_pk}).status_code == 401
        assert httpx.get(status_url, params={"apiKey": new_pk}).status_code == 200
        assert owner.get(f"/streams/{stream['id']}").json()["streamKey"] == new_key
        refused = publisher(server, stream["streamKey"], 3)
        assert refused.wait(timeout=30) != 0
    finally:
        server.stop()
