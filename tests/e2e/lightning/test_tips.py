"""Tips against a real relay and NIP-47 wallet services: the streamer's own wallet makes the
invoice, another wallet pays it, ``tip.received`` is queued once and our ledger never moves."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import bolt11
import httpx

from tests.support import ServerProcess, poll_until
from tests.support.lightning import Streamer, Wallets, query, start_server
from tests.support.wallets import METHODS, WalletService


async def _pk(streamer: Streamer) -> tuple[int, str]:
    made = await streamer.api.post(
        "/api/streams", json={"label": "tips", "destinations": [{"type": "self-hosted"}]}
    )
    assert made.status_code in (200, 201), made.text
    body = made.json()
    return int(body["id"]), str(body["destinations"][0]["apiKey"])


def _viewer(server: ServerProcess, pk: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=server.base_url, headers={"X-API-Key": pk}, timeout=30)


async def _tip(viewer: httpx.AsyncClient, **body: Any) -> httpx.Response:
    return await viewer.post("/api/public/tips", json=body)


async def test_a_tip_is_paid_to_the_streamers_wallet_and_reported_once(
    server: ServerProcess, wallets: Wallets
) -> None:
    streamer = await Streamer.create(server)
    stream_id, pk = await _pk(streamer)
    viewer = _viewer(server, pk)

    offer = await viewer.get("/api/public/tips/offer")
    assert offer.status_code == 200 and offer.json()["available"] is False
    assert offer.json()["reason"] == "tips_disabled"
    refused = await _tip(viewer, amountSats=500)
    assert refused.status_code == 409 and refused.json()["reason"] == "tips_disabled"

    settings = await streamer.api.put(
        "/api/wallet/tips/settings", json={"enabled": True, "minSats": 200, "maxSats": 5000}
    )
    assert settings.status_code == 200, settings.text
    assert settings.json()["reason"] == "no_wallet"
    refused = await _tip(viewer, amountSats=500)
    assert refused.status_code == 409 and refused.json()["reason"] == "no_wallet"
    assert "wallet" in refused.json()["error"]

    connected = await streamer.api.post("/api/wallet/nwc", json={"uri": wallets.streamer.uri()})
    assert connected.status_code == 200, connected.text
    offer = await viewer.get("/api/public/tips/offer")
    assert offer.json() | {"presets": None} == {
        "available": True,
        "minSats": 200,
        "maxSats": 5000,
        "presets": None,
        "reason": None,
        "message": None,
    }
    assert all(200 <= p <= 5000 for p in offer.json()["presets"])

    for bad, field in (
        ({"amountSats": 199}, "amountSats"),
        ({"amountSats": 5001}, "amountSats"),
        ({"amountSats": 500, "message": "x" * 281}, "message"),
        ({"amountSats": 500, "message": "nice <script>alert(1)</script>"}, "message"),
        ({"amountSats": 500, "message": "<b>bold</b>"}, "message"),
    ):
        answer = await _tip(viewer, **bad)
        assert answer.status_code == 400, (bad, answer.text)
        assert answer.json()["field"] == field, answer.text
    assert query(server, "SELECT COUNT(*) FROM tips") == [(0,)]

    hook = await streamer.webhook(["tip.received"])
    message = "Great stream, 1 < 2 & thanks! " + "é" * 250
    made = await _tip(viewer, amountSats=2100, message=message)
    assert made.status_code == 200, made.text
    tip = made.json()
    decoded = bolt11.decode(tip["invoice"])
    assert decoded.payment_hash == tip["paymentHash"] and decoded.amount_msat == 2_100_000
    assert wallets.network.invoices[tip["paymentHash"]].payee is wallets.streamer
    assert tip["status"] == "pending"

    public = httpx.AsyncClient(base_url=server.base_url, timeout=30)
    status_url = f"/api/public/tips/{tip['paymentHash']}"
    assert (await public.get(status_url)).json()["status"] == "pending"

    payer = WalletService(
        wallets.network, wallets.streamer.relay_url, alias="viewer", balance_sats=9000
    )
    wallets.network.pay(payer, tip["invoice"])
    assert wallets.streamer.balance_sats == 50_000 + 2100

    async def paid() -> bool:
        return bool((await public.get(status_url)).json()["status"] == "paid")

    await poll_until(paid, 10, "the public status says paid")
    rows = query(server, "SELECT body FROM webhook_deliveries WHERE event = 'tip.received'")
    assert len(rows) == 1
    data = json.loads(rows[0][0])["data"]
    assert data["paymentHash"] == tip["paymentHash"] and data["amountSats"] == 2100
    assert data["message"] == message.strip() and data["streamKeyId"] == stream_id
    deliveries = await streamer.deliveries(hook)
    assert [d["event"] for d in deliveries] == ["tip.received"]

    listed = await streamer.api.get("/api/wallet/tips")
    assert [(t["paymentHash"], t["status"], t["message"]) for t in listed.json()] == [
        (tip["paymentHash"], "paid", message.strip())
    ]
    # Non-custodial: nothing reached our ledger or the operator's wallet.
    assert await streamer.balance() == 0
    assert query(
        server, "SELECT COUNT(*) FROM ledger_transactions WHERE account_id = ?", streamer.id
    ) == [(0,)]
    assert wallets.operator.balance_sats == 0

    # More lookups (the sweep every 0.5 s, the player's polls) never report it twice.
    for _ in range(3):
        assert await paid()
    assert len(query(server, "SELECT id FROM webhook_deliveries WHERE event = 'tip.received'")) == 1
    assert (await public.get("/api/public/tips/" + "0" * 64)).status_code == 404

    # Nobody polls this one: the streamer's wallet notifies, the sweep looks it up.
    second = (await _tip(viewer, amountSats=300)).json()
    wallets.network.pay(payer, second["invoice"])
    await wallets.streamer.notify_received(second["invoice"])

    async def both_reported() -> bool:
        return len(await streamer.deliveries(hook)) == 2

    await poll_until(both_reported, 10, "the second tip.received")
    assert [t["status"] for t in (await streamer.api.get("/api/wallet/tips")).json()] == [
        "paid",
        "paid",
    ]


async def test_a_wallet_that_cannot_make_invoices_takes_no_tips(
    server: ServerProcess, wallets: Wallets
) -> None:
    payer_only = WalletService(
        wallets.network,
        wallets.streamer.relay_url,
        alias="payer-only",
        balance_sats=1000,
        methods=[m for m in METHODS if m != "make_invoice"],
    )
    await payer_only.start()
    try:
        streamer = await Streamer.create(server)
        _stream, pk = await _pk(streamer)
        connected = await streamer.api.post("/api/wallet/nwc", json={"uri": payer_only.uri()})
        assert connected.status_code == 200, connected.text
        await streamer.api.put("/api/wallet/tips/settings", json={"enabled": True})
        viewer = _viewer(server, pk)
        offer = (await viewer.get("/api/public/tips/offer")).json()
        assert (offer["available"], offer["reason"]) == (False, "wallet_cannot_invoice")
        refused = await _tip(viewer, amountSats=500)
        assert refused.status_code == 409, refused.text
        assert refused.json()["reason"] == "wallet_cannot_invoice"
        assert "make_invoice" in refused.json()["error"]
        assert "make_invoice" not in payer_only.requests
    finally:
        await payer_only.stop()


async def test_a_viewer_hammering_the_tip_endpoint_gets_429(tmp_path: Path) -> None:
    server = await start_server(tmp_path, tips_per_minute="3")
    try:
        streamer = await Streamer.create(server)
        _stream, pk = await _pk(streamer)
        viewer = _viewer(server, pk)
        codes = [(await _tip(viewer, amountSats=500)).status_code for _ in range(4)]
        assert codes == [409, 409, 409, 429]
        limited = await _tip(viewer, amountSats=500)
        assert "Retry-After" in limited.headers and "error" in limited.json()
        bad = await streamer.api.put(
            "/api/wallet/tips/settings", json={"enabled": True, "minSats": 10, "maxSats": 5}
        )
        assert bad.status_code == 400 and bad.json()["field"] == "minSats"
    finally:
        server.stop()
