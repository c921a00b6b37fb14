"""Faults between the server and the wallets: a relay restart in the middle of a payment, and a
hostile relay that forwards forged and misdirected responses."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.support import ServerProcess, poll_until
from tests.support.lightning import Streamer, Wallets, start_server, start_wallets
from tests.support.nostr_relays import CompromisedRelay, LocalRelay


async def _paid(streamer: Streamer, payment_hash: str) -> bool:
    got = await streamer.api.get(f"/api/wallet/topups/{payment_hash}")
    return bool(got.json()["status"] == "paid")


async def test_a_relay_restart_mid_payment_pays_once_and_credits_once(
    server: ServerProcess, wallets: Wallets, relay: LocalRelay
) -> None:
    streamer = await Streamer.create(server)
    connected = await streamer.api.post("/api/wallet/nwc", json={"uri": wallets.streamer.uri()})
    assert connected.status_code == 200, connected.text
    wallets.streamer.hold_pay_response = asyncio.Event()

    request = asyncio.create_task(
        streamer.api.post("/api/wallet/topup", json={"amountSats": 3000, "payWithNwc": True})
    )
    await asyncio.wait_for(wallets.streamer.pay_received.wait(), 20)
    # The wallet has paid; before its answer leaves, the relay goes down and comes back.
    await relay.stop()
    await asyncio.sleep(0.5)
    await relay.start()
    wallets.streamer.hold_pay_response.set()
    answer = await asyncio.wait_for(request, 60)
    assert answer.status_code == 200, answer.text
    payment_hash = answer.json()["paymentHash"]
    assert answer.json()["status"] in ("paid", "pending")

    try:
        await poll_until(lambda: _paid(streamer, payment_hash), 30, "the top-up settled")
    except AssertionError as exc:
        raise AssertionError(
            f"{exc}; the operator's wallet was asked {wallets.operator.requests}; "
            f"server log:\n{server.log()[-4000:]}"
        ) from None
    await asyncio.sleep(1.0)  # more sweeps: still one credit
    assert wallets.network.payments == [("streamer", payment_hash, 3_000_000)]
    assert wallets.streamer.balance_sats == 47_000 and wallets.operator.balance_sats == 3000
    assert streamer.lightning_credits() == [(f"lightning:{payment_hash}", 3000)]
    assert await streamer.balance() == 3000


async def test_forged_and_misdirected_responses_are_ignored(
    tmp_path: Path, compromised_relay: CompromisedRelay
) -> None:
    wallets = await start_wallets(compromised_relay.url)
    wallets.operator.forge_first = wallets.streamer.forge_first = True
    server = await start_server(tmp_path, operator_nwc_uri=wallets.operator.uri())
    try:
        streamer = await Streamer.create(server)
        connected = await streamer.api.post("/api/wallet/nwc", json={"uri": wallets.streamer.uri()})
        assert connected.status_code == 200, connected.text
        # The forgeries claim alias "forged" and 10^9 sats: the real answers win.
        assert (connected.json()["alias"], connected.json()["balanceSats"]) == ("streamer", 50_000)

        topup = await streamer.api.post(
            "/api/wallet/topup", json={"amountSats": 1234, "payWithNwc": True}
        )
        assert topup.status_code == 200, topup.text
        assert topup.json()["status"] == "paid"
        payment_hash = topup.json()["paymentHash"]
        assert wallets.network.payments == [("streamer", payment_hash, 1_234_000)]
        assert streamer.lightning_credits() == [(f"lightning:{payment_hash}", 1234)]
        assert await streamer.balance() == 1234
        assert len(compromised_relay.forged()) >= 4, "the relay passed the forgeries on"
        assert "ignored a wallet response to no request of ours" in server.log()
    finally:
        await asyncio.to_thread(server.stop)
        await wallets.operator.stop()
        await wallets.streamer.stop()
