"""Top-ups over Nostr Wallet Connect against a real relay and two NIP-47 wallet services: the
balances move on both wallets and the ledger is credited once per payment hash."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import bolt11

from tests.support import ServerProcess, free_port, poll_until
from tests.support.lightning import Streamer, Wallets, query, start_server
from tests.support.nostr_relays import LocalRelay


async def test_connect_then_pay_with_nwc_moves_both_wallets_and_credits_once(
    server: ServerProcess, wallets: Wallets
) -> None:
    streamer = await Streamer.create(server)
    secret = wallets.streamer.client_keys.secret_key().to_hex()

    connected = await streamer.api.post("/api/wallet/nwc", json={"uri": wallets.streamer.uri()})
    assert connected.status_code == 200, connected.text
    body = connected.json()
    assert body["alias"] == "streamer" and body["balanceSats"] == 50_000
    assert {"pay_invoice", "get_balance"} <= set(body["methods"])
    assert body["budget"]["usedSats"] == 0 and body["budget"]["totalSats"] == 100_000
    assert body["budget"]["renewalPeriod"] == "daily"
    shown = await streamer.api.get("/api/wallet/nwc")
    assert shown.json() == body
    assert secret not in connected.text + shown.text
    stored = query(server, "SELECT sealed_uri FROM nwc_connections")
    assert len(stored) == 1 and secret not in stored[0][0], "sealed at rest"
    hook = await streamer.webhook(["wallet.credited"])

    topup = await streamer.api.post(
        "/api/wallet/topup", json={"amountSats": 2100, "payWithNwc": True}
    )
    assert topup.status_code == 200, topup.text
    got = topup.json()
    decoded = bolt11.decode(got["invoice"])
    assert decoded.payment_hash == got["paymentHash"] and decoded.amount_msat == 2_100_000
    assert got["expiresAt"] == (decoded.date + decoded.expiry) * 1000
    assert (got["status"], got["amountSats"], got["error"]) == ("paid", 2100, None)

    assert wallets.streamer.balance_sats == 50_000 - 2100
    assert wallets.operator.balance_sats == 2100
    assert wallets.network.payments == [("streamer", got["paymentHash"], 2_100_000)]
    assert (wallets.streamer.encryptions, wallets.operator.encryptions) == ({"nip44"}, {"nip04"})
    assert await streamer.balance() == 2100
    assert streamer.lightning_credits() == [(f"lightning:{got['paymentHash']}", 2100)]
    status = await streamer.api.get(f"/api/wallet/topups/{got['paymentHash']}")
    assert status.json()["status"] == "paid"

    delivered = await poll_until(
        lambda: _events(streamer, hook), 5, "the wallet.credited webhook queued"
    )
    assert [d["event"] for d in delivered] == ["wallet.credited"]
    data = json.loads(query(server, "SELECT body FROM webhook_deliveries")[0][0])["data"]
    assert data == {
        "paymentHash": got["paymentHash"],
        "amountSats": 2100,
        "source": "manual",
        "balance": 2100,
    }

    # A restart sweeps unsettled top-ups again: nothing is credited twice.
    await asyncio.to_thread(server.stop)
    await asyncio.to_thread(server.start)
    await asyncio.sleep(1.5)  # three sweeps at 0.5 s
    assert streamer.lightning_credits() == [(f"lightning:{got['paymentHash']}", 2100)]
    assert await streamer.balance() == 2100

    forgot = await streamer.api.delete("/api/wallet/nwc")
    assert forgot.status_code == 200
    assert (await streamer.api.get("/api/wallet/nwc")).status_code == 404
    assert query(server, "SELECT COUNT(*) FROM nwc_connections") == [(0,)]


RULE = {"belowSats": 1, "amountSats": 1, "maxPerDaySats": 1}


async def _events(streamer: Streamer, hook: int) -> list[dict[str, object]]:
    return await streamer.deliveries(hook)


async def test_an_invoice_paid_after_it_expired_is_credited_once(
    tmp_path: Path, wallets: Wallets
) -> None:
    server = await start_server(
        tmp_path, operator_nwc_uri=wallets.operator.uri(), lightning_invoice_expiry_seconds="1"
    )
    try:
        streamer = await Streamer.create(server)
        made = await streamer.api.post("/api/wallet/topup", json={"amountSats": 500})
        assert made.status_code == 200, made.text
        invoice, payment_hash = made.json()["invoice"], made.json()["paymentHash"]
        assert made.json()["status"] == "pending"

        async def status() -> str:
            got = await streamer.api.get(f"/api/wallet/topups/{payment_hash}")
            return str(got.json()["status"])

        await poll_until(lambda: _is(status, "expired"), 10, "the top-up expired")
        assert await streamer.balance() == 0
        # Paid from outside (a QR code scanned late): the sweep finds it and credits it once.
        wallets.network.pay(wallets.streamer, invoice)
        await poll_until(lambda: _is(status, "paid"), 10, "the late payment credited")
        await asyncio.sleep(1.0)
        assert streamer.lightning_credits() == [(f"lightning:{payment_hash}", 500)]
        assert await streamer.balance() == 500
    finally:
        await asyncio.to_thread(server.stop)


async def _is(get: object, expected: str) -> bool:
    return await get() == expected  # type: ignore[operator]


async def test_a_wallet_that_refuses_fails_the_topup_with_its_message(
    server: ServerProcess, wallets: Wallets
) -> None:
    streamer = await Streamer.create(server)
    connected = await streamer.api.post("/api/wallet/nwc", json={"uri": wallets.streamer.uri()})
    assert connected.status_code == 200
    hook = await streamer.webhook(["wallet.topup_failed", "wallet.credited"])
    wallets.streamer.refuse_payments = "payments from this app are disabled"

    topup = await streamer.api.post(
        "/api/wallet/topup", json={"amountSats": 1000, "payWithNwc": True}
    )
    assert topup.status_code == 200, topup.text
    got = topup.json()
    assert got["status"] == "failed"
    assert "payments from this app are disabled" in got["error"]
    assert wallets.streamer.balance_sats == 50_000 and wallets.operator.balance_sats == 0
    assert await streamer.balance() == 0 and streamer.lightning_credits() == []
    shown = await streamer.api.get(f"/api/wallet/topups/{got['paymentHash']}")
    assert shown.json()["status"] == "failed"
    delivered = await poll_until(lambda: _events(streamer, hook), 5, "the failure webhook")
    assert [d["event"] for d in delivered] == ["wallet.topup_failed"]


async def test_malformed_or_unreachable_uris_are_refused_and_nothing_is_stored(
    server: ServerProcess, wallets: Wallets, relay: LocalRelay
) -> None:
    streamer = await Streamer.create(server)
    good = wallets.streamer
    secret = good.client_keys.secret_key().to_hex()
    nobody = "ab" * 32
    cases = {
        "https://example.com": "nostr+walletconnect://",
        f"nostr+walletconnect://{good.pubkey}?secret={secret}": "relay",
        f"nostr+walletconnect://{good.pubkey}?relay={relay.url}": "secret",
        f"nostr+walletconnect://xyz?relay={relay.url}&secret={secret}": "public key",
        f"nostr+walletconnect://{good.pubkey}?relay=http://x&secret={secret}": "relay",
        f"nostr+walletconnect://{good.pubkey}?relay={relay.url}&secret=12": "secret",
        # Well formed, but nobody answers: no relay on that port, or no wallet with that key.
        f"nostr+walletconnect://{good.pubkey}?relay=ws://127.0.0.1:{free_port()}&secret={secret}": (
            "did not answer"
        ),
        f"nostr+walletconnect://{nobody}?relay={relay.url}&secret={secret}": "did not answer",
    }
    for uri, problem in cases.items():
        answer = await streamer.api.post("/api/wallet/nwc", json={"uri": uri})
        assert answer.status_code == 400, (uri, answer.text)
        assert answer.json()["field"] == "uri"
        assert problem in answer.json()["error"], (uri, answer.json())
    assert (await streamer.api.get("/api/wallet/nwc")).status_code == 404
    assert query(server, "SELECT COUNT(*) FROM nwc_connections") == [(0,)]


async def test_without_an_operator_wallet_lightning_answers_503_naming_the_setting(
    tmp_path: Path,
) -> None:
    server = await start_server(tmp_path)
    try:
        streamer = await Streamer.create(server, funds=10)
        for method, path, body in [
            ("POST", "/api/wallet/topup", {"amountSats": 10}),
            ("POST", "/api/wallet/nwc", {"uri": "nostr+walletconnect://x"}),
            ("GET", "/api/wallet/nwc", None),
            ("PUT", "/api/wallet/auto-topup", RULE),
        ]:
            answer = await streamer.api.request(method, path, json=body)
            assert answer.status_code == 503, (path, answer.text)
            assert "SIMULCAST_OPERATOR_NWC_URI" in answer.json()["error"]
        assert await streamer.balance() == 10, "everything else works as before"
    finally:
        await asyncio.to_thread(server.stop)
