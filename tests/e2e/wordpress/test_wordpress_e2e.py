"""The plugin in a real WordPress, watched in Chromium: a page with ``[simulcast_player]`` plays
the live stream from our server, a tip gets an invoice from the streamer's own NWC wallet (the
Lightning tests' wire-level wallet services) which, paid by another wallet, queues
``tip.received`` and shows the thank-you; the offline card follows the publisher's stop.

WordPress is Debian's package with MariaDB run by the test (see ``site.py``); the installer, the
login, plugin activation, the settings form (with its nonce) and page creation go over HTTP."""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import bolt11
import httpx
import pytest

from tests.support import ServerProcess
from tests.support.browser import ARGS, CHROMIUM, HAVE_CHROMIUM
from tests.support.dashboard import AXE, SHOTS
from tests.support.lightning import Streamer, Wallets, query, start_server
from tests.support.wallets import WalletService
from tests.support.wordpress import ADMIN, HAVE_WORDPRESS, MariaDb, WordPress
from tests.support.wordpress import PASSWORD as WP_PASSWORD

pytestmark = [
    pytest.mark.media,
    pytest.mark.timeout(420),
    pytest.mark.skipif(
        not HAVE_WORDPRESS, reason="Debian's wordpress, php-cli, php-mysql or MariaDB missing"
    ),
    pytest.mark.skipif(not HAVE_CHROMIUM, reason="Debian chromium is not installed"),
]
playwright = pytest.importorskip("playwright.async_api")
WAIT = 45_000  # ms; the machine is shared
PASSWORD = "a streamer passphrase"


@pytest.fixture
async def site(tmp_path: Path) -> AsyncIterator[WordPress]:
    db = MariaDb(tmp_path)
    wp = WordPress(tmp_path, db)
    try:
        await asyncio.to_thread(db.start)
        await asyncio.to_thread(wp.start)
        await asyncio.to_thread(wp.activate_plugin)
        yield wp
    finally:
        await asyncio.to_thread(wp.stop)
        await asyncio.to_thread(db.stop)
    debug = tmp_path / "debug.log"
    if debug.exists():
        ours = [line for line in debug.read_text().splitlines() if "simulcast-player" in line]
        assert ours == [], "\n".join(ours)


@pytest.fixture
async def live_server(tmp_path: Path, wallets: Wallets) -> AsyncIterator[ServerProcess]:
    proc = await start_server(
        tmp_path, operator_nwc_uri=wallets.operator.uri(), hls_segment_seconds="1"
    )
    try:
        yield proc
    finally:
        await asyncio.to_thread(proc.stop)


async def _frame(page: Any) -> Any:
    """The player's frame inside ``<simulcast-player>``."""
    await page.wait_for_selector("simulcast-player iframe", timeout=WAIT)
    handle = await page.query_selector("simulcast-player iframe")
    frame = await handle.content_frame()
    await frame.wait_for_selector("#player", timeout=WAIT)
    return frame


async def test_the_shortcode_page_plays_takes_a_tip_and_goes_offline(
    site: WordPress, live_server: ServerProcess, wallets: Wallets
) -> None:
    from tests.support.dashboard import publish

    server = live_server
    name = f"wp-{secrets.token_hex(3)}"
    key = await asyncio.to_thread(server.create_account, name, PASSWORD, 100_000)
    streamer = Streamer(server, name, key)
    made = await streamer.api.post(
        "/api/streams", json={"label": "WordPress", "destinations": [{"type": "self-hosted"}]}
    )
    assert made.status_code in (200, 201), made.text
    pk, stream_key = made.json()["destinations"][0]["apiKey"], made.json()["streamKey"]
    connected = await streamer.api.post("/api/wallet/nwc", json={"uri": wallets.streamer.uri()})
    assert connected.status_code == 200, connected.text
    tipping = await streamer.api.put(
        "/api/wallet/tips/settings", json={"enabled": True, "minSats": 100, "maxSats": 10_000}
    )
    assert tipping.json()["available"] is True, tipping.text
    await streamer.webhook(["tip.received"])

    # The settings form: a nonce'd post; an sk_ key and a post without the nonce are refused.
    settings = {"server_url": server.base_url, "api_key": pk, "autoplay": "1", "muted": "1"}
    refused = await asyncio.to_thread(site.save_settings, {**settings, "api_key": "sk_" + "x" * 43})
    assert "never an sk_ key" in refused.text
    forged = await asyncio.to_thread(site.save_settings, settings, nonce=False)
    assert forged.status_code == 403
    saved = await asyncio.to_thread(site.save_settings, {**settings, "tips": "1"})
    assert "Settings saved" in saved.text
    page_url = await asyncio.to_thread(site.create_page, "Live", "[simulcast_player]")
    stale = "pk_" + "Q" * 43  # well-formed, unknown to the server
    bad_url = await asyncio.to_thread(
        site.create_page, "Old key", f'[simulcast_player api_key="{stale}"]'
    )
    # An invalid key: a notice for editors, nothing for visitors.
    as_editor = await asyncio.to_thread(site.admin.get, bad_url)
    assert "simulcast-player-notice" in as_editor.text and "does not accept" in as_editor.text
    async with httpx.AsyncClient(timeout=60) as visitor:
        as_visitor = (await visitor.get(bad_url)).text
    assert "simulcast-player" not in as_visitor.split("</header>")[-1]
    assert stale not in as_visitor

    publisher = publish(server.rtmp_url(stream_key), 600)
    errors: list[str] = []
    try:
        async with playwright.async_playwright() as p:
            browser = await p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            context = await browser.new_context(viewport={"width": 1000, "height": 900})
            page = await context.new_page()
            page.on("console", lambda m: m.type == "error" and errors.append(m.text))
            page.on("pageerror", lambda e: errors.append(str(e)))
            await page.goto(page_url)
            frame = await _frame(page)
            await frame.wait_for_selector("#player[data-state=live]", timeout=WAIT)
            await frame.wait_for_function(
                "() => document.getElementById('video').currentTime > 1", timeout=WAIT
            )
            await frame.wait_for_selector("#player[data-tips=on]", timeout=WAIT)

            # A tip: preset, message, invoice from the streamer's wallet, QR code, copy.
            await frame.click("#tip-open")
            presets = await frame.locator(".tip-preset").all_text_contents()
            assert presets and all(100 <= int(p.replace(",", "")) <= 10_000 for p in presets)
            await frame.locator(".tip-preset").nth(1).click()
            amount = int(await frame.input_value("#tip-amount"))
            await frame.fill("#tip-message", "Thanks <3 & more")
            await frame.click("#tip-submit")
            await frame.wait_for_selector("#tip-pay:not([hidden])", timeout=WAIT)
            await frame.wait_for_function(
                "() => document.getElementById('tip-qr').naturalWidth > 50", timeout=WAIT
            )
            invoice = (await frame.text_content("#tip-invoice")) or ""
            decoded = bolt11.decode(invoice)
            assert decoded.amount_msat == amount * 1000
            assert wallets.network.invoices[decoded.payment_hash].payee is wallets.streamer
            assert await frame.get_attribute("#tip-wallet", "href") == f"lightning:{invoice}"
            await frame.evaluate(AXE)
            violations = await frame.evaluate(
                "async () => (await axe.run(document, {resultTypes: ['violations']})).violations"
                ".filter(v => ['serious', 'critical'].includes(v.impact)).map(v => v.id)"
            )
            assert violations == []
            SHOTS.mkdir(parents=True, exist_ok=True)
            await page.screenshot(path=str(SHOTS / "wordpress-tip.png"))

            payer = WalletService(
                wallets.network, wallets.streamer.relay_url, alias="viewer", balance_sats=20_000
            )
            before = wallets.streamer.balance_sats
            wallets.network.pay(payer, invoice)
            await frame.wait_for_selector("#tip-thanks:not([hidden])", timeout=WAIT)
            assert wallets.streamer.balance_sats == before + amount
            rows = query(server, "SELECT body FROM webhook_deliveries WHERE event = 'tip.received'")
            assert len(rows) == 1
            data = json.loads(rows[0][0])["data"]
            assert (data["paymentHash"], data["amountSats"]) == (decoded.payment_hash, amount)
            assert data["message"] == "Thanks <3 & more"
            assert await streamer.balance() == 100_000 - _spent(server, streamer)
            await frame.click("#tip-close")

            # The streamer's dashboard lists the tip, its message shown as text.
            dash = await context.new_page()
            await dash.goto(server.base_url + "/")
            await dash.fill("input[name=username]", name)
            await dash.fill("input[name=password]", PASSWORD)
            await dash.click("button[type=submit]")
            await dash.wait_for_url("**/streams", timeout=WAIT)
            await dash.goto(server.base_url + "/wallet")
            row = dash.locator(f"#tips tr[data-hash='{decoded.payment_hash}']")
            await row.wait_for(timeout=WAIT)
            assert await row.locator(".tip-message").text_content() == "Thanks <3 & more"
            assert "paid" in (await row.text_content() or "")
            # Tips turned off from the same page.
            await dash.uncheck("#tips-enabled")
            await dash.click("#tip-settings button[type=submit]")
            await dash.wait_for_function(
                "() => document.getElementById('tips-state').textContent.includes('tips are off')",
                timeout=WAIT,
            )
            await dash.close()

            # The publisher stops: the offline card.
            publisher.terminate()
            await asyncio.to_thread(publisher.wait, 15)
            await frame.wait_for_selector("#player[data-state=offline]", timeout=60_000)
            assert await frame.is_visible("#offline")

            # Tips were turned off: the button is gone after a reload.
            assert (await streamer.api.get("/api/wallet/tips/settings")).json()["enabled"] is False
            await page.reload()
            frame = await _frame(page)
            await frame.wait_for_selector("#player[data-tips=off]", timeout=WAIT)
            assert not await frame.is_visible("#tip-open")
            await browser.close()
    finally:
        if publisher.poll() is None:
            publisher.terminate()
            publisher.wait(15)
    # A stream that ends answers its playlist with 404 (how hls.js learns it); nothing else.
    assert [e for e in errors if "status of 404" not in e] == []


def _spent(server: ServerProcess, streamer: Streamer) -> int:
    """What streaming cost (the only ledger movement: tips never reach the ledger)."""
    rows = query(
        server,
        "SELECT COALESCE(SUM(amount_sats), 0) FROM ledger_transactions"
        " WHERE account_id = ? AND amount_sats < 0",
        streamer.id,
    )
    return -int(rows[0][0])


async def test_the_block_renders_like_the_shortcode_and_registers_in_the_editor(
    site: WordPress,
) -> None:
    from tests.support import free_port

    server_url = f"http://127.0.0.1:{free_port()}"  # unreachable: not taken as a refusal
    key = "pk_" + "b" * 43
    saved = await asyncio.to_thread(
        site.save_settings, {"server_url": server_url, "api_key": key, "muted": "1", "tips": "1"}
    )
    assert "Settings saved" in saved.text
    block = '<!-- wp:simulcast/player {"tips":false,"height":300,"autoplay":false} /-->'
    url = await asyncio.to_thread(site.create_page, "Block", block)
    short = await asyncio.to_thread(
        site.create_page, "Shortcode", '[simulcast_player height="300" tips="false" autoplay="0"]'
    )
    async with httpx.AsyncClient(timeout=60) as visitor:
        pages = [(await visitor.get(u)).text for u in (url, short)]
    expected = (
        f'<simulcast-player api-key="{key}" height="300" autoplay="false" muted="true"'
        ' tips="false"></simulcast-player>'
    )
    for html in pages:
        assert expected in html
        assert f"<script src='{server_url}/player.js'" in html
        assert f"{server_url}/player?apiKey={key}&#038;autoplay=0&#038;tips=0" in html

    # "Embed as: iframe" (sites that restrict scripts): the /player page only, no script.
    saved = await asyncio.to_thread(
        site.save_settings, {"server_url": server_url, "api_key": key, "mode": "iframe"}
    )
    assert "Settings saved" in saved.text
    async with httpx.AsyncClient(timeout=60) as visitor:
        framed = (await visitor.get(short)).text
    assert "<noscript>" not in framed and "player.js" not in framed
    assert (
        f'<div class="simulcast-player"><iframe class="simulcast-player-frame" '
        f'src="{server_url}/player?apiKey={key}&#038;autoplay=0&#038;muted=0&#038;tips=0"'
    ) in framed

    # The editor loads the block's script (no build step) and knows the block.
    async with playwright.async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = await browser.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        await page.goto(site.url + "/wp-login.php")
        await page.fill("#user_login", ADMIN)
        await page.fill("#user_pass", WP_PASSWORD)
        await page.click("#wp-submit")
        await page.wait_for_url("**/wp-admin/**", timeout=WAIT)
        await page.goto(site.url + "/wp-admin/post-new.php?post_type=page")
        await page.wait_for_function(
            "() => window.wp && wp.blocks && wp.blocks.getBlockType('simulcast/player')",
            timeout=WAIT,
        )
        title = await page.evaluate("wp.blocks.getBlockType('simulcast/player').title")
        assert title == "Simulcast Player"
        await browser.close()
    assert errors == [], errors
