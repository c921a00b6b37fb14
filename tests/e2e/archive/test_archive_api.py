"""The archive endpoints and cloud-archive destination settings over HTTP, on a real server
(SQLite, and PostgreSQL when reachable)."""

from __future__ import annotations

import json

import httpx

from tests.support import ServerProcess


def client(server: ServerProcess, sk: str) -> httpx.Client:
    return httpx.Client(
        base_url=server.base_url, headers={"Authorization": f"Bearer {sk}"}, timeout=10
    )


def test_archives_start_empty_and_recover_answers_errors_with_a_message(
    server: ServerProcess, sk: str
) -> None:
    with client(server, sk) as api:
        assert api.get("/api/archives").json() == []
        missing = api.post("/api/archives/recover", json={"fileName": "archive_1_1.mp4"})
        assert missing.status_code == 404
        assert missing.json()["error"] == missing.json()["message"] == "Archive not found"
        extra = api.post("/api/archives/recover", json={"fileName": "a.mp4", "x": 1})
        assert extra.status_code == 400 and "error" in extra.json()
    assert httpx.get(server.base_url + "/api/archives").status_code == 401


def test_cloud_archive_config_is_validated_and_its_secret_never_returned(
    server: ServerProcess, sk: str
) -> None:
    with client(server, sk) as api:
        stream = api.post("/api/streams", json={"label": "a"}).json()
        path = f"/api/streams/{stream['id']}/destinations"
        no_secret = api.post(
            path, json={"type": "cloud-archive", "config": {"accessKeyId": "AKID"}}
        )
        assert no_secret.status_code == 400
        assert no_secret.json()["field"] == "config.secretAccessKey"
        bad_bucket = api.post(path, json={"type": "cloud-archive", "config": {"bucket": "A_B"}})
        assert bad_bucket.status_code == 400 and bad_bucket.json()["field"] == "config.bucket"
        bad_endpoint = api.post(
            path, json={"type": "cloud-archive", "config": {"endpointUrl": "ftp://x"}}
        )
        assert bad_endpoint.status_code == 400
        assert bad_endpoint.json()["field"] == "config.endpointUrl"

        config = {
            "bucket": "my-bucket",
            "prefix": "shows/",
            "endpointUrl": "https://s3.example.com",
            "accessKeyId": "AKIDEXAMPLE",
            "secretAccessKey": "s3cr3t-never-shown",
        }
        created = api.post(path, json={"type": "cloud-archive", "config": config})
        assert created.status_code == 200, created.text
        dest_id = created.json()["id"]
        patched = api.patch(f"{path}/{dest_id}", json={"config": {"prefix": "other/"}})
        assert patched.status_code == 200, patched.text
        view = api.get(f"/api/streams/{stream['id']}").json()
        (dest,) = view["destinations"]
        assert dest["platform"] == "Cloud Archive" and dest["state"] == "idle"
        assert (dest["bucket"], dest["prefix"], dest["accessKeyId"]) == (
            "my-bucket",
            "other/",
            "AKIDEXAMPLE",
        )
        assert "s3cr3t-never-shown" not in json.dumps(view)
        assert "s3cr3t-never-shown" not in patched.text + created.text
