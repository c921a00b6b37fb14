"""The dashboard's security over plain HTTP: CSRF, cookies, CSP, login limits, static caching,
and the live event stream, against a real server."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import httpx
import pytest

from tests.support import ServerProcess, make_server

USER, PASSWORD = "dash", "correct horse battery"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    server = make_server(tmp_path_factory.mktemp("dashboard-http"), rate_limit_per_minute="1000")
    server.start()
    server.create_account(USER, PASSWORD, sats=1000)
    yield server
    server.stop()


def login_nonce(client: httpx.Client) -> str:
    page = client.get("/")
    assert page.status_code == 200
    match = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert match
    return match[1]


def signed_in(server: ServerProcess) -> tuple[httpx.Client, str]:
    """A client holding the session cookie, and the CSRF token its pages carry."""
    client = httpx.Client(base_url=server.base_url)
    nonce = login_nonce(client)
    answer = client.post("/login", data={"username": USER, "password": PASSWORD, "csrf": nonce})
    assert answer.status_code == 303 and answer.headers["location"] == "/streams"
    page = client.get("/streams")
    match = re.search(r'name="csrf-token" content="([^"]+)"', page.text)
    assert match
    return client, match[1]


def test_login_sets_an_http_only_same_site_cookie(server: ServerProcess) -> None:
    client = httpx.Client(base_url=server.base_url)
    nonce = login_nonce(client)
    answer = client.post("/login", data={"username": USER, "password": PASSWORD, "csrf": nonce})
    cookie = next(v for k, v in answer.headers.multi_items() if "simulcast_session=" in v)
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie
    assert "Secure" not in cookie  # plain http here; https sets Secure (see auth.is_https)


def test_login_form_refuses_a_post_without_its_nonce(server: ServerProcess) -> None:
    client = httpx.Client(base_url=server.base_url)
    answer = client.post("/login", data={"username": USER, "password": PASSWORD})
    assert answer.status_code == 200 and "form expired" in answer.text
    assert "simulcast_session" not in client.cookies


def test_cookie_changes_need_the_csrf_header(server: ServerProcess) -> None:
    client, csrf = signed_in(server)
    refused = client.post("/api/streams", json={"label": "forged"})
    assert refused.status_code == 403
    assert "X-CSRF-Token" in refused.json()["error"]
    wrong = client.post("/api/streams", json={"label": "forged"}, headers={"X-CSRF-Token": "x"})
    assert wrong.status_code == 403
    assert client.get("/api/streams").status_code == 200  # reads need no token
    made = client.post("/api/streams", json={"label": "real"}, headers={"X-CSRF-Token": csrf})
    assert made.status_code == 200
    assert client.delete(f"/api/streams/{made.json()['id']}").status_code == 403
    # A token named explicitly (header) is no cookie a browser attaches: no CSRF token needed.
    token = client.cookies["simulcast_session"]
    bearer = httpx.post(
        server.base_url + "/api/streams",
        json={"label": "bearer"},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert bearer.status_code == 200


def test_logout_form_needs_the_csrf_token(server: ServerProcess) -> None:
    client, csrf = signed_in(server)
    client.post("/logout", data={"csrf": "forged"})
    assert client.get("/api/streams").status_code == 200  # still signed in
    assert client.post("/api/auth/logout").status_code == 403
    client.post("/logout", data={"csrf": csrf})
    assert client.get("/api/streams").status_code == 401
    assert client.get("/streams").status_code == 303  # pages send you to the login page


def test_pages_carry_a_content_security_policy(server: ServerProcess) -> None:
    client, _ = signed_in(server)
    for path in (
        "/",
        "/streams",
        "/wallet",
        "/developer",
        "/streams/999",
        "/instances",
        "/instances/x",
    ):
        answer = client.get(path, follow_redirects=True)
        csp = answer.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp, path
        assert answer.headers["x-frame-options"] == "DENY"
        assert "unsafe-inline" not in csp
    assert client.get("/streams/999").status_code == 404  # another's or no stream: not found
    assert client.get("/instances/x").status_code == 404  # nor another's or no instance
    player = httpx.get(server.base_url + "/player?apiKey=pk_x")
    assert "frame-ancestors *" in player.headers["content-security-policy"]
    assert "x-frame-options" not in player.headers  # embeddable


def test_static_files_are_cached_by_content_hash(server: ServerProcess) -> None:
    client, _ = signed_in(server)
    page = client.get("/streams").text
    match = re.search(r'src="(/static/js/common\.js\?v=[0-9a-f]+)"', page)
    assert match
    hashed = client.get(match[1])
    assert hashed.status_code == 200
    assert hashed.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert hashed.headers["content-type"].startswith("text/javascript")
    assert client.get("/static/js/common.js").headers["cache-control"] == "no-cache"
    assert client.get("/static/../__init__.py").status_code == 404
    assert client.get("/static/vendor/hls.min.js").status_code == 200
    element = client.get("/player.js")
    assert "customElements.define" in element.text and "max-age" in element.headers["cache-control"]


def test_event_stream_says_hello_with_the_live_sessions(server: ServerProcess) -> None:
    client, _ = signed_in(server)  # EventSource sends the cookie: a GET needs no CSRF token
    with client.stream("GET", "/api/events") as events:
        assert events.headers["content-type"].startswith("text/event-stream")
        lines = events.iter_lines()
        event = next(line for line in lines if line.startswith("event:"))
        data = next(lines)
    assert event == "event: hello"
    assert json.loads(data.removeprefix("data: ")) == {"streams": {}}


def test_wallet_ledger_lists_postings_with_signed_amounts(server: ServerProcess) -> None:
    sk = server.create_account(sats=700)
    server.cli("wallet", "credit", "--account", USER, "5", "--reference", "second")
    headers = {"Authorization": f"Bearer {sk}"}
    rows = httpx.get(server.base_url + "/api/wallet/ledger", headers=headers).json()
    assert [(r["kind"], r["amountSats"]) for r in rows] == [("credit", 700)]  # own wallet only
    client, _ = signed_in(server)
    mine = client.get("/api/wallet/ledger", params={"limit": 1}).json()
    assert [(r["kind"], r["amountSats"]) for r in mine] == [("credit", 5)]  # newest first
    assert client.get("/api/wallet/ledger", params={"limit": 0}).status_code == 400


def test_login_is_rate_limited(server: ServerProcess) -> None:  # last: it uses up the limit
    client = httpx.Client(base_url=server.base_url, headers={"X-Forwarded-For": "ignored"})
    messages = []
    for _ in range(22):
        nonce = login_nonce(client)
        answer = client.post("/login", data={"username": USER, "password": "no", "csrf": nonce})
        messages.append("Too many login attempts" in answer.text)
    assert messages[0] is False and messages[-1] is True
    # The JSON endpoint shares the limit (same client address).
    answer = client.post("/api/auth/login", json={"username": USER, "password": PASSWORD})
    assert answer.status_code == 429
