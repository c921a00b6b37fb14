"""The Instances pages (v1 dialect) in Debian's Chromium, against a real server.

One streamer's visit, in order: sign in, create a configuration from the "multistream"
template, save a destination pointing at an in-test RTMP sink, launch, set the destination on
the output through the overrides editor (a bad override shows the API's error first), publish
with ffmpeg to the key the controls page shows, watch the input turn live, toggle the output
LIVE (the sink receives media) and OFFLINE, then stop. Both pages pass axe-core, log no console
error and are screenshotted (into ``tests.support.dashboard.SHOTS``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.support import ServerProcess
from tests.support.browser import require_chromium
from tests.support.dashboard import WAIT, check_page, dashboard, publish, sign_in, stop, watch

pytestmark = pytest.mark.media

require_chromium()  # the dashboard helpers drive Playwright


@dataclass
class Visit:
    """The server, the signed-in page, the RTMP sink and what the tests make on the way."""

    server: ServerProcess
    page: Any
    sink: Any
    errors: list[str]
    destination_id: str = ""
    instance_id: str = ""
    publisher: Any = None


@pytest.fixture(scope="module")
def visit(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Visit]:
    with dashboard(
        tmp_path_factory.mktemp("instances"),
        rate_limit_per_minute="1000",
        push_retry_min_seconds="0.3",
        push_retry_max_seconds="1",
    ) as (server, context, sink):
        errors: list[str] = []
        state = Visit(server, watch(context.new_page(), errors, "instances"), sink, errors)
        try:
            yield state
        finally:
            stop(state.publisher)


def test_sign_in_and_open_instances(visit: Visit) -> None:
    page = visit.page
    page.goto(visit.server.base_url + "/")
    sign_in(page)
    page.wait_for_url("**/streams")
    page.click("nav >> text=Instances")
    page.wait_for_url("**/instances")
    assert page.get_attribute("nav a[href='/instances']", "aria-current") == "page"


def test_create_configuration_and_destination_then_launch(visit: Visit) -> None:
    page = visit.page
    page.wait_for_selector("#template option[value=multistream]", state="attached")
    page.select_option("#template", "multistream")
    assert "destinations" in (page.text_content("#template-description") or "")
    page.fill("#config-name", "Sunday show")
    page.click("#template-form button[type=submit]")
    row = page.locator("#configurations tbody tr", has_text="Sunday show")
    row.wait_for()
    assert "inputstream-1 → outputstream-1" in (row.text_content() or "")

    page.fill("#v1-dest-name", "Test sink")
    page.fill("#v1-dest-url", f"rtmp://127.0.0.1:{visit.sink.port}/app")
    page.fill("#v1-dest-key", "sink-key")
    page.click("#v1-dest-form button[type=submit]")
    dest = page.locator("#v1-destinations tbody tr", has_text="Test sink")
    dest.wait_for()
    assert "sink-key" not in (page.text_content("#v1-destinations") or "")  # key never shown
    visit.destination_id = dest.get_attribute("data-destination-id") or ""
    assert visit.destination_id

    row.locator("button:has-text('Launch')").click()
    running = page.locator("#instances tbody tr[data-status=running]")
    running.wait_for(timeout=WAIT)
    assert running.locator(".outputs").text_content() == "OFFLINE"  # a new instance sends nothing
    visit.instance_id = running.get_attribute("data-instance-id") or ""
    check_page(page, "instances.png")


def test_controls_page_overrides_publish_live_offline_stop(visit: Visit) -> None:
    page = visit.page
    page.click(f"#instances tbody tr[data-instance-id='{visit.instance_id}'] a")
    page.wait_for_url(f"**/instances/{visit.instance_id}")
    page.wait_for_selector("#instance-status[data-status=RUNNING]", timeout=WAIT)
    out = "#outputs [data-element-id=outputstream-1]"
    page.wait_for_selector(f"{out} button.toggle")

    # The overrides editor: the API's error is shown, then a good override applies.
    seen = len(visit.errors)
    page.fill("#overrides-json", json.dumps({"outputstream-1": {"volume": 3}}))
    page.click("#overrides-form button[type=submit]")
    page.wait_for_function("() => document.getElementById('overrides-error').textContent !== ''")
    assert "outputstream-1" in (page.text_content("#overrides-error") or "")
    # Chromium logs the refused PATCH (HTTP 400) itself; that one line is expected.
    visit.errors[seen:] = [e for e in visit.errors[seen:] if "status of 400" not in e]
    body = {"outputstream-1": {"destinations": [visit.destination_id]}}
    page.fill("#overrides-json", json.dumps(body))
    page.click("#overrides-form button[type=submit]")
    dest = f"{out} tr[data-destination-id='{visit.destination_id}']"
    page.wait_for_selector(dest, timeout=WAIT)
    assert page.text_content("#overrides-error") == ""
    assert json.loads(page.input_value("#overrides-json")) == body

    # The ingest key is hidden until revealed; publish to exactly what the page shows.
    card = "#inputs [data-element-id=inputstream-1]"
    assert "•" in (page.text_content(f"{card} code.secret") or "")
    page.click(f"{card} button:has-text('Reveal')")
    key = page.text_content(f"{card} code.secret") or ""
    server = page.text_content("#server-inputstream-1") or ""
    assert len(key) == 32 and server.endswith("/inputstream-1/")
    page.click(f"{card} button:has-text('Hide')")  # hidden again (and in the screenshot)
    visit.publisher = publish(server + key, 60)
    page.wait_for_selector(f"{card} .live-badge[data-state=live]", timeout=WAIT)
    assert visit.sink.publishes == 0  # OFFLINE: received, nothing sent

    page.click(f"{out} button.toggle")
    page.wait_for_selector(f"{out} button.toggle[aria-pressed=true]", timeout=WAIT)
    page.wait_for_selector(f"{dest} [data-state=live]", timeout=WAIT)
    page.wait_for_selector("#instance-outputs[data-state=live]", timeout=WAIT)
    deadline = time.monotonic() + WAIT / 1000
    while len(visit.sink.messages) < 30 and time.monotonic() < deadline:
        page.wait_for_timeout(200)  # the sink is fed from another thread: look again
    assert visit.sink.publishes >= 1 and len(visit.sink.messages) >= 30
    check_page(page, "instance.png")

    page.click(f"{out} button.toggle")
    page.wait_for_selector(f"{out} button.toggle[aria-pressed=false]", timeout=WAIT)
    page.wait_for_selector("#instance-outputs[data-state=offline]", timeout=WAIT)
    page.wait_for_function(
        f"() => document.querySelector(\"{dest} [data-state]\").dataset.state !== 'live'",
        timeout=WAIT,
    )

    page.click("#stop")
    page.wait_for_selector("#instance-status[data-status=STOPPED]", timeout=WAIT)
    visit.publisher.terminate()
    visit.publisher.wait(10)
    assert page.is_disabled(f"{out} button.toggle")
    page.goto(visit.server.base_url + "/instances")
    page.wait_for_selector(f"#instances tbody tr[data-instance-id='{visit.instance_id}']")
    assert (
        page.get_attribute(
            f"#instances tbody tr[data-instance-id='{visit.instance_id}']", "data-status"
        )
        == "stopped"
    )


def test_switch_input_selector(visit: Visit) -> None:
    page = visit.page
    page.select_option("#template", "two devices")
    page.fill("#config-name", "Two cameras")
    page.click("#template-form button[type=submit]")
    row = page.locator("#configurations tbody tr", has_text="Two cameras")
    row.locator("button:has-text('Launch')").click()
    link = page.locator("#instances tbody tr[data-status=running] a", has_text="Two cameras")
    link.click(timeout=WAIT)
    page.wait_for_selector("#instance-status[data-status=RUNNING]", timeout=WAIT)
    page.select_option("#switch-1-input", "inputstream-2")
    page.wait_for_selector("#elements tr[data-element-id=switch-1] >> text=on inputstream-2")
    assert json.loads(page.input_value("#overrides-json")) == {
        "switch-1": {"input": "inputstream-2"}
    }
    # Restart: the same instance comes back running with its overrides.
    page.click("#restart")
    page.wait_for_selector("#toast.show:has-text('Instance restarting')")
    page.wait_for_selector("#instance-status[data-status=RUNNING]", timeout=WAIT)
    page.wait_for_selector("#elements tr[data-element-id=switch-1] >> text=on inputstream-2")
    page.click("#stop")
    page.wait_for_selector("#instance-status[data-status=STOPPED]", timeout=WAIT)


def test_phone_viewport_and_unknown_instance(visit: Visit) -> None:
    page = visit.page
    page.set_viewport_size({"width": 390, "height": 844})
    pages = {
        f"/instances/{visit.instance_id}": "#instance-status[data-status=STOPPED]",
        "/instances": "#configurations tbody tr",
    }
    for path, ready in pages.items():
        page.goto(visit.server.base_url + path)
        page.wait_for_selector(ready)
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"{path} is {overflow}px wider than a phone"
    page.set_viewport_size({"width": 1100, "height": 800})
    seen = len(visit.errors)
    missing = page.goto(f"{visit.server.base_url}/instances/nope")
    assert missing is not None and missing.status == 404
    assert "Instance not found" in (page.text_content("h1") or "")
    # Chromium logs a 404 document as a console error; that one line is expected.
    visit.errors[seen:] = [e for e in visit.errors[seen:] if "status of 404" not in e]


def test_no_console_errors(visit: Visit) -> None:
    assert visit.errors == []
