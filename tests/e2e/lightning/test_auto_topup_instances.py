"""Auto top-up keeps a v1 instance funded: a real ``simulcast serve`` billing a ``multistream``
instance 10 sats a second (it bills while RUNNING, publisher or not), and the streamer's NIP-47
wallet paying the operator's invoices as the balance runs low. Without a rule, or once the daily
cap is reached, the instance stops for want of funds as before."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.support import ServerProcess
from tests.support.lightning import Streamer, Wallets, query, start_server
from tests.support.v1_client import V1

SATS_PER_SECOND = 10
FUNDS = 30
"""Three seconds of running time."""
TOPUP = 50


@pytest.fixture
async def instance_server(tmp_path: Path, wallets: Wallets) -> AsyncIterator[ServerProcess]:
    proc = await start_server(
        tmp_path,
        operator_nwc_uri=wallets.operator.uri(),
        instance_sats_per_hour=str(SATS_PER_SECOND * 3600),
        instance_billing_seconds="0.5",
    )
    try:
        yield proc
    finally:
        await asyncio.to_thread(proc.stop)


async def _streamer(
    server: ServerProcess, wallets: Wallets, rule: dict[str, int] | None
) -> tuple[Streamer, V1]:
    """A streamer holding ``FUNDS`` sats with a connected wallet (and ``rule``), and its v1
    client (sync: always called off the event loop, which runs the wallets and the relay)."""
    key = await asyncio.to_thread(server.create_account, None, None, FUNDS)
    name = query(server, "SELECT name FROM accounts ORDER BY id DESC LIMIT 1")[0][0]
    streamer = Streamer(server, str(name), key)
    connected = await streamer.api.post("/api/wallet/nwc", json={"uri": wallets.streamer.uri()})
    assert connected.status_code == 200, connected.text
    if rule is not None:
        set_rule = await streamer.api.put("/api/wallet/auto-topup", json=rule)
        assert set_rule.status_code == 200, set_rule.text
    return streamer, V1(server, key)


async def _launch(v1: V1) -> str:
    config = await asyncio.to_thread(v1.configuration, "multistream")
    request, location = await asyncio.to_thread(v1.launch, config["id"])
    await asyncio.to_thread(v1.follow, location)
    (instance_id,) = request["instances"]
    return str(instance_id)


async def _cost(v1: V1) -> int:
    """What the account's one instance has cost so far."""
    (usage,) = (await asyncio.to_thread(v1.ok, "GET", "/usage"))["usage"]
    return int(usage["costSats"])


@pytest.mark.parametrize(
    "below",
    [
        FUNDS,  # topped up ahead, in the background, while three seconds are still paid for
        1,  # topped up only at empty: the meter waits for the top-up before stopping
    ],
)
async def test_auto_topup_keeps_an_instance_running_past_its_initial_balance(
    instance_server: ServerProcess, wallets: Wallets, below: int
) -> None:
    server = instance_server
    rule = {"belowSats": below, "amountSats": TOPUP, "maxPerDaySats": 10_000}
    streamer, v1 = await _streamer(server, wallets, rule)
    instance_id = await _launch(v1)

    # Run until it has cost well over its initial balance (at least two top-ups).
    deadline = time.monotonic() + 30
    while (cost := await _cost(v1)) < FUNDS + 2 * TOPUP - 10:
        inst = await asyncio.to_thread(v1.instance, instance_id)
        assert inst["status"] == "RUNNING", inst
        assert time.monotonic() < deadline, f"cost only {cost} sats"
        await asyncio.sleep(0.2)
    await asyncio.to_thread(v1.ok, "DELETE", f"/instances/{instance_id}", 204)
    stopped = await asyncio.to_thread(v1.instance, instance_id)
    assert stopped["status"] == "STOPPED" and stopped["stopReason"] != "insufficient_funds"
    (usage,) = (await asyncio.to_thread(v1.ok, "GET", "/usage"))["usage"]
    assert usage["costSats"] == usage["seconds"] * SATS_PER_SECOND > FUNDS + TOPUP

    topups = await streamer.settled_topups()
    assert len(topups) >= 2 and all(t == (TOPUP, "paid", "auto") for t in topups), topups
    paid = TOPUP * len(topups)
    assert sum(a for _, a in streamer.lightning_credits()) == paid
    assert wallets.streamer.balance_sats == 50_000 - paid
    assert wallets.operator.balance_sats == paid
    assert await streamer.balance() == FUNDS + paid - usage["costSats"]


@pytest.mark.parametrize(
    "rule",
    [
        None,  # a connected wallet, but no rule: nothing is paid from it
        {"belowSats": FUNDS, "amountSats": TOPUP, "maxPerDaySats": TOPUP},  # one top-up, then cap
    ],
)
async def test_without_a_rule_or_past_the_cap_the_instance_stops_for_want_of_funds(
    instance_server: ServerProcess, wallets: Wallets, rule: dict[str, int] | None
) -> None:
    server = instance_server
    streamer, v1 = await _streamer(server, wallets, rule)
    instance_id = await _launch(v1)

    stopped = await asyncio.to_thread(v1.wait_status, instance_id, "STOPPED", 30)
    assert stopped["stopReason"] == "insufficient_funds"
    credited = 0 if rule is None else TOPUP
    assert sum(a for _, a in streamer.lightning_credits()) == credited
    assert wallets.streamer.balance_sats == 50_000 - credited
    (usage,) = (await asyncio.to_thread(v1.ok, "GET", "/usage"))["usage"]
    assert 0 < usage["costSats"] <= FUNDS + credited
    assert await streamer.balance() == FUNDS + credited - usage["costSats"]
    if rule is not None:
        assert usage["costSats"] > FUNDS, "the one top-up was spent"
        shown = (await streamer.api.get("/api/wallet/auto-topup")).json()
        assert shown["spentLast24hSats"] == TOPUP
        assert "daily auto top-up cap" in shown["lastFailure"]
