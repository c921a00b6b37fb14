"""Hostile HTTP input (issue 20): chunked bodies over the limit, lax integers."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator

import httpx
import pytest

from tests.support import ServerProcess


@pytest.fixture
def api(server: ServerProcess, sk: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base_url, headers={"X-API-Key": sk}, timeout=30) as c:
        yield c


def test_chunked_body_over_the_limit_is_413(api: httpx.Client) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"label": "'
        for _ in range(80):
            yield b"x" * 16384  # 1.25 MiB in all, with no Content-Length
        yield b'"}'

    r = api.post("/api/streams", content=chunks(), headers={"Content-Type": "application/json"})
    assert r.status_code == 413, r.text
    assert r.json() == {"error": "Request body too large (limit 1 MiB)"}


@pytest.mark.parametrize("value", [True, False, "5", 5.5, "1e3"])
def test_booleans_and_numeric_strings_are_not_integers(api: httpx.Client, value: object) -> None:
    stream = api.post("/api/streams", json={"label": "ints"}).json()
    r = api.post(f"/api/streams/{stream['id']}/limits", json={"maxSats": value})
    assert r.status_code == 400, r.text
    assert r.json()["field"] == "maxSats" and "maxSats" in r.json()["error"]
    assert api.post(f"/api/streams/{stream['id']}/limits", json={"maxSats": 5}).status_code == 200


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GARBAGE\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n",
        b"GET /\xff\xfe HTTP/1.1\r\nHost: x\r\n\r\n",
    ],
)
def test_malformed_http_gets_the_json_error_shape(
    server: ServerProcess, request_bytes: bytes
) -> None:
    with socket.create_connection(("127.0.0.1", server.http_port), timeout=5) as conn:
        conn.sendall(request_bytes)
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400") and b"application/json" in head.lower()
    assert json.loads(body)["error"]
