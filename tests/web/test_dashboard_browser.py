"""The dashboard and the embeddable player in Debian's Chromium, against a real server.

One server and one browser for the module; the tests run in order as one streamer's visit:
sign in, create a stream with an RTMP destination (an in-test RTMP server) and a self-hosted
one, publish with ffmpeg and watch the page turn live by itself, play the preview, toggle a
destination, manage webhooks (a local receiver), then watch the player from a fresh context
until the publisher stops. Every page is checked for console errors and with axe-core, and
screenshotted (into ``tests.support.dashboard.SHOTS``).
"""

from __future__ import annotations

import json
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support import ServerProcess
from tests.support.browser import require_chromium, static_site
from tests.support.dashboard import (
    WAIT,
    check_page,
    dashboard,
    publish,
    screenshot,
    sign_in,
    stop,
    watch,
)

pytestmark = pytest.mark.media

require_chromium()  # the dashboard helpers drive Playwright


@dataclass
class Hooks:
    """A webhook receiver on loopback answering 200 and recording what arrives."""

    received: list[dict[str, Any]] = field(default_factory=list)
    url: str = ""


@dataclass
class Visit:
    """What the tests share: the server, the signed-in browser context, ids made on the way."""

    server: ServerProcess
    context: Any
    browser: Any
    errors: list[str]
    hooks: Hooks
    sink_port: int
    stream_id: int = 0
    public_key: str = ""
    publisher: subprocess.Popen[bytes] | None = None
    pages: dict[str, Any] = field(default_factory=dict)

    def page(self, name: str) -> Any:
        """A tab of the signed-in context, kept by name; console errors are collected."""
        if name not in self.pages:
            self.pages[name] = watch(self.context.new_page(), self.errors, name)
        return self.pages[name]


@pytest.fixture(scope="module")
def hooks() -> Iterator[Hooks]:
    state = Hooks()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", 0)))
            state.received.append(json.loads(body))
            self.send_response(200)
            self.send_header("content-length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    yield state
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def visit(tmp_path_factory: pytest.TempPathFactory, hooks: Hooks) -> Iterator[Visit]:
    with dashboard(
        tmp_path_factory.mktemp("dashboard"),
        hls_segment_seconds="1",
        rate_limit_per_minute="1000",
        webhooks_allow_http="true",
        webhooks_allow_private="true",
    ) as (server, context, sink):
        state = Visit(server, context, context.browser, [], hooks, sink.port)
        try:
            yield state
        finally:
            stop(state.publisher)


def test_sign_in(visit: Visit) -> None:
    page = visit.page("main")
    response = page.goto(visit.server.base_url + "/")
    assert "script-src 'self'" in response.headers["content-security-policy"]
    check_page(page, "login.png")
    sign_in(page, "wrong password")
    page.wait_for_selector("#login-error")
    assert "Invalid username or password" in page.text_content("#login-error")
    sign_in(page)
    page.wait_for_url("**/streams")
    cookie = next(c for c in visit.context.cookies() if c["name"] == "simulcast_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Lax"


def test_create_stream_with_rtmp_and_self_hosted_destinations(visit: Visit) -> None:
    page = visit.page("main")
    page.fill("#new-label", "Launch party")
    first = page.locator(".dest-row").nth(0)
    first.locator("select").first.select_option("rtmp")
    first.locator("input[id$=-url]").fill(f"rtmp://127.0.0.1:{visit.sink_port}/app")
    first.locator("input[id$=-key]").fill("sink-key")
    page.click("#add-dest-row")
    second = page.locator(".dest-row").nth(1)
    second.locator("select").first.select_option("self-hosted")
    second.locator("select[id$=-mode]").select_option("production")
    second.locator("input[id$=-dvr]").fill("60")
    page.click("#create-form button[type=submit]")
    page.wait_for_selector("#created:not([hidden])")
    visit.public_key = page.text_content("#created-keys code.secret") or ""
    assert visit.public_key.startswith("pk_")
    page.wait_for_selector("#streams-table tbody tr")
    check_page(page, "streams.png")
    href = page.get_attribute("#created-link", "href") or ""
    visit.stream_id = int(href.rsplit("/", 1)[1])
    assert page.text_content("#streams-table tbody tr [data-state]") == "idle"


def test_publish_turns_live_without_reload(visit: Visit) -> None:
    streams = visit.page("main")  # the list stays open: it must turn live by itself too
    page = visit.page("stream")
    page.goto(f"{visit.server.base_url}/streams/{visit.stream_id}")
    page.wait_for_selector("#dest-table tbody tr[data-destination-id]")
    # Protection off, so stopping the publisher ends the session at once (player test below).
    page.uncheck("#protection-enabled")
    page.click("#protection-form button[type=submit]")
    page.wait_for_function("() => !document.getElementById('protection-enabled').checked")
    page.wait_for_function("() => document.documentElement.dataset.events === 'open'")
    streams.wait_for_function("() => document.documentElement.dataset.events === 'open'")
    key = page.evaluate("document.getElementById('stream-key').textContent")
    assert "•" in key
    page.click("#reveal-key")
    stream_key = page.text_content("#stream-key") or ""
    assert len(stream_key) == 32
    page.click("#reveal-key")

    visit.publisher = publish(visit.server.rtmp_url(stream_key), 90)
    page.wait_for_selector("#stream-state[data-state=active]", timeout=WAIT)
    streams.wait_for_selector(
        "#streams-table tbody tr [data-state=active]", timeout=WAIT
    )  # no reload
    rtmp = "#dest-table tr[data-type=rtmp]"
    page.wait_for_selector(f"{rtmp} [data-state=live]", timeout=WAIT)
    page.wait_for_function(
        f"() => document.querySelector('{rtmp} td.num').textContent.includes('kb/s')", timeout=WAIT
    )
    page.wait_for_function(
        "() => document.getElementById('preview').currentTime > 1", timeout=WAIT
    )  # the HLS preview plays
    start = page.evaluate("document.getElementById('preview').currentTime")
    page.wait_for_function(
        f"() => document.getElementById('preview').currentTime > {start + 2}", timeout=WAIT
    )
    assert page.is_enabled("#stop")
    check_page(page, "stream.png")


def test_disable_and_enable_a_destination_while_live(visit: Visit) -> None:
    page = visit.page("stream")
    rtmp = "#dest-table tr[data-type=rtmp]"
    page.click(f"{rtmp} button:has-text('Disable')")
    page.wait_for_selector(f"{rtmp} [data-state=disabled]", timeout=WAIT)
    page.click(f"{rtmp} button:has-text('Enable')")
    page.wait_for_selector(f"{rtmp} [data-state=live]", timeout=WAIT)


def test_add_and_delete_a_destination_while_live(visit: Visit) -> None:
    page = visit.page("stream")
    form = page.locator("#add-dest-form")
    form.locator("select").first.select_option("rtmp")
    form.locator("input[id$=-url]").fill(f"rtmp://127.0.0.1:{visit.sink_port}/app/second")
    form.locator("button[type=submit]").click()
    rows = page.locator("#dest-table tr[data-type=rtmp]")
    page.wait_for_function(
        "() => document.querySelectorAll('#dest-table tr[data-type=rtmp]').length == 2"
    )
    added = rows.nth(1)
    added.locator("[data-state=live]").wait_for(timeout=WAIT)
    added.locator("button:has-text('Delete')").click()
    page.wait_for_function(
        "() => document.querySelectorAll('#dest-table tr[data-type=rtmp]').length == 1"
    )


def test_set_limits(visit: Visit) -> None:
    page = visit.page("stream")
    page.fill("#max-sats", "5000")
    page.fill("#max-minutes", "120")
    page.click("#limits-form button[type=submit]")
    page.wait_for_selector("#toast.show:has-text('Limits saved')")
    page.reload()
    page.wait_for_function("() => document.getElementById('max-sats').value === '5000'")
    assert page.input_value("#max-minutes") == "120"


def test_create_and_revoke_an_api_key(visit: Visit) -> None:
    page = visit.page("main")
    page.goto(visit.server.base_url + "/developer")
    page.wait_for_selector("#sessions tbody tr")
    assert "This browser" in (page.text_content("#sessions tbody") or "")
    before = page.locator("#keys tbody tr").count()
    page.fill("#key-name", "CI deploys")
    page.click("#key-form button[type=submit]")
    page.wait_for_selector("#key-created:not([hidden]) #new-key")
    secret = page.text_content("#new-key") or ""
    assert secret.startswith("sk_")
    row = page.locator("#keys tbody tr", has_text="CI deploys")
    row.wait_for()
    assert secret not in (page.text_content("#keys") or "")  # the list never shows a secret
    api = f"{visit.server.base_url}/api/streams"
    auth = {"Authorization": f"Bearer {secret}"}
    assert httpx.get(api, headers=auth).status_code == 200
    row.locator("button:has-text('Revoke')").click()
    row.wait_for(state="detached")
    assert page.locator("#keys tbody tr").count() == before
    assert httpx.get(api, headers=auth).status_code == 401


def test_webhook_test_delivery_shows_in_the_log(visit: Visit) -> None:
    page = visit.page("main")
    page.goto(visit.server.base_url + "/developer")
    page.fill("#webhook-url", visit.hooks.url)
    page.fill("#webhook-secret", "whsec_dashboard")
    page.click("#webhook-form button[type=submit]")
    row = page.locator("#webhooks tbody tr").first
    row.wait_for()
    row.locator("button:has-text('Send test')").click()
    page.wait_for_selector("#deliveries tr[data-status=delivered]", timeout=WAIT)
    assert "HTTP 200" in (page.text_content("#deliveries tr[data-status=delivered]") or "")
    assert any(body["event"] == "test.ping" for body in visit.hooks.received)
    page.wait_for_selector("#embeds .embed")
    assert "/player?apiKey=" in (page.text_content("#embeds") or "")
    check_page(page, "developer.png")
    # A new public key for the embed: the player test below plays with it, the old one is dead.
    old_key = visit.public_key
    page.click("#embeds .embed button:has-text('Rotate public key')")
    page.wait_for_selector("#embeds .embed .reveal code")
    visit.public_key = page.text_content("#embeds .embed .reveal code") or ""
    assert visit.public_key.startswith("pk_") and visit.public_key != old_key
    assert visit.public_key in (page.text_content("#embeds pre") or "")
    status = f"{visit.server.base_url}/api/public/stream/status"
    assert httpx.get(status, params={"apiKey": old_key}).status_code == 401


def test_wallet_shows_balance_ledger_and_charts(visit: Visit) -> None:
    page = visit.page("main")
    page.goto(visit.server.base_url + "/wallet")
    page.wait_for_function("() => document.getElementById('balance').textContent !== '…'")
    page.wait_for_selector("#ledger tbody tr")
    assert "credit" in (page.text_content("#ledger tbody") or "")
    page.wait_for_selector("#chart-minutes canvas")
    page.wait_for_selector("#chart-bandwidth canvas")
    check_page(page, "wallet.png")


def test_phone_sized_viewport(visit: Visit) -> None:
    phone = watch(
        visit.context.browser.new_context(viewport={"width": 390, "height": 844}).new_page(),
        visit.errors,
        "phone",
    )
    phone.context.add_cookies(visit.context.cookies())
    phone.goto(f"{visit.server.base_url}/streams/{visit.stream_id}")
    phone.wait_for_selector("#dest-table tbody tr[data-destination-id]")
    overflow = phone.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, f"page is {overflow}px wider than a phone"
    screenshot(phone, "stream-phone.png")
    phone.context.close()


def test_player_plays_then_shows_offline_when_the_publisher_stops(
    visit: Visit, tmp_path: Path
) -> None:
    fresh = visit.browser.new_context(viewport={"width": 800, "height": 450})
    errors: list[str] = []
    page = watch(fresh.new_page(), errors, "player")
    page.goto(f"{visit.server.base_url}/player?apiKey={visit.public_key}")
    page.wait_for_selector("#player[data-state=live]", timeout=WAIT)
    page.wait_for_function("() => document.getElementById('video').currentTime > 1", timeout=WAIT)
    start = page.evaluate("document.getElementById('video').currentTime")
    page.wait_for_function(
        f"() => document.getElementById('video').currentTime > {start + 2}", timeout=WAIT
    )
    # DVR: rewind into the window, "Go live" appears and brings the viewer back to the edge.
    page.wait_for_function(
        "() => { const v = document.getElementById('video');"
        " return v.seekable.length && v.seekable.end(0) - v.seekable.start(0) > 12; }",
        timeout=WAIT,
    )
    page.evaluate(
        "() => { const v = document.getElementById('video');"
        " v.currentTime = v.seekable.start(0) + 1; }"
    )
    page.wait_for_selector("#go-live:not([hidden])", timeout=WAIT)
    check_page(page, "player.png")
    page.click("#go-live")
    page.wait_for_selector("#go-live[hidden]", state="attached", timeout=WAIT)

    # The same player as a tag, on a page of another site.
    site = tmp_path / "site"
    site.mkdir()
    (site / "index.html").write_text(
        f'<!doctype html><title>Fan site</title><script src="{visit.server.base_url}/player.js">'
        f'</script><simulcast-player api-key="{visit.public_key}"></simulcast-player>'
    )
    with static_site(site) as url:
        fan = watch(fresh.new_page(), errors, "fan site")
        fan.goto(url + "/index.html")
        frame = fan.frame_locator("simulcast-player iframe")
        frame.locator("#player[data-state=live]").wait_for(timeout=WAIT)
        fan.close()

    assert visit.publisher is not None
    seen = len(visit.errors)
    visit.publisher.terminate()
    visit.publisher.wait(15)
    page.wait_for_selector("#player[data-state=offline]", timeout=45_000)
    assert page.is_visible("#offline")
    visit.page("stream").wait_for_selector("#stream-state[data-state=idle]", timeout=WAIT)
    check_page(page, "player-offline.png")
    # When a stream ends its playlist answers 404: Chromium logs that request, and it is how
    # hls.js (player and preview) learns the stream is gone. Nothing else may be logged.
    assert [e for e in errors if "status of 404" not in e] == []
    visit.errors[seen:] = [
        e for e in visit.errors[seen:] if not (e.startswith("stream:") and "status of 404" in e)
    ]
    fresh.close()


def test_rotate_the_stream_key(visit: Visit) -> None:
    page = visit.page("stream")
    page.wait_for_selector("#stream-state[data-state=idle]", timeout=WAIT)
    page.click("#reveal-key")
    old = page.text_content("#stream-key")
    page.click("#reveal-key")
    page.click("#rotate-key")
    page.wait_for_function(
        f"() => !['{old}', ''].includes(document.getElementById('stream-key').textContent)"
        " && !document.getElementById('stream-key').textContent.includes('•')"
    )
    assert len(page.text_content("#stream-key") or "") == 32


def test_no_console_errors_on_any_dashboard_page(visit: Visit) -> None:
    assert visit.errors == []
