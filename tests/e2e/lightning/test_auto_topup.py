"""Auto top-up keeps a real session funded: ``simulcast serve`` with one-second billing minutes,
a real ffmpeg publish to two real RTMP receivers (the second costs 2 sats a minute), and the
streamer's NIP-47 wallet paying the operator's invoices as the balance runs low."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import ServerProcess, poll_until
from tests.support.lightning import Streamer, Wallets, query, start_server
from tests.support.media import Processes

pytestmark = pytest.mark.media

MEDIA_SETTINGS = {
    "billing_minute_seconds": "1",
    "push_retry_min_seconds": "0.3",
    "push_retry_max_seconds": "1",
}


@pytest.fixture
async def media_server(tmp_path: Path, wallets: Wallets) -> AsyncIterator[ServerProcess]:
    proc = await start_server(tmp_path, operator_nwc_uri=wallets.operator.uri(), **MEDIA_SETTINGS)
    try:
        yield proc
    finally:
        await asyncio.to_thread(proc.stop)


async def _paid_stream(streamer: Streamer, procs: Processes, tmp_path: Path) -> dict[str, Any]:
    """A stream with two destinations on real receivers: 2 sats a minute."""
    dests = []
    for i in range(2):
        port, _receiver = await procs.receiver(tmp_path / f"{streamer.name}-{i}.flv")
        dests.append({"type": "rtmp", "config": {"url": f"rtmp://127.0.0.1:{port}/app/k"}})
    made = await streamer.api.post("/api/streams", json={"label": "ln", "destinations": dests})
    assert made.status_code == 200, made.text
    return dict(made.json())


async def _funded_streamer(
    server: ServerProcess, wallets: Wallets, rule: dict[str, int]
) -> Streamer:
    streamer = await Streamer.create(server, funds=6)
    connected = await streamer.api.post("/api/wallet/nwc", json={"uri": wallets.streamer.uri()})
    assert connected.status_code == 200, connected.text
    set_rule = await streamer.api.put("/api/wallet/auto-topup", json=rule)
    assert set_rule.status_code == 200, set_rule.text
    return streamer


def _session(server: ServerProcess, stream_id: int) -> tuple[Any, ...]:
    return query(
        server,
        "SELECT id, end_reason, metered_minutes FROM sessions WHERE stream_id = ?"
        " ORDER BY id DESC LIMIT 1",
        stream_id,
    )[0]


def _charged(server: ServerProcess, session_pk: int) -> int:
    return int(
        query(
            server,
            "SELECT COALESCE(SUM(amount_sats), 0) FROM ledger_transactions WHERE session_pk = ?",
            session_pk,
        )[0][0]
    )


@pytest.mark.parametrize(
    "below",
    [
        6,  # topped up ahead, in the background, while three minutes are still paid for
        1,  # topped up only at empty: the meter waits for the top-up before stopping
    ],
)
async def test_auto_topup_keeps_a_session_running_past_its_initial_balance(
    media_server: ServerProcess, wallets: Wallets, procs: Processes, tmp_path: Path, below: int
) -> None:
    server = media_server
    rule = {"belowSats": below, "amountSats": 10, "maxPerDaySats": 1000}
    streamer = await _funded_streamer(server, wallets, rule)
    stream = await _paid_stream(streamer, procs, tmp_path)

    # 6 sats pay three minutes; the publish lasts about twelve.
    publisher = await procs.publish(server.rtmp_port, stream["streamKey"], seconds=12)
    assert await asyncio.wait_for(publisher.wait(), 40) == 0
    await poll_until(lambda: _ended(server, stream["id"]), 10, "the session closed")
    pk, reason, minutes = _session(server, stream["id"])
    assert reason != "insufficient_funds" and minutes >= 9, (reason, minutes)
    charged = _charged(server, pk)
    assert charged == 2 * minutes > 6

    topups = await streamer.settled_topups()
    assert topups and all(t == (10, "paid", "auto") for t in topups)
    paid = 10 * len(topups)
    assert wallets.streamer.balance_sats == 50_000 - paid
    assert wallets.operator.balance_sats == paid
    assert len(wallets.network.payments) == len(topups)
    assert sum(a for _, a in streamer.lightning_credits()) == paid
    assert await streamer.balance() == 6 + paid - charged
    blocked = query(server, "SELECT publish_blocked_reason FROM accounts WHERE id = ?", streamer.id)
    assert blocked == [(None,)]


async def test_when_the_daily_cap_is_reached_the_failure_shows_and_funds_run_out(
    media_server: ServerProcess, wallets: Wallets, procs: Processes, tmp_path: Path
) -> None:
    server = media_server
    rule = {"belowSats": 6, "amountSats": 10, "maxPerDaySats": 10}
    streamer = await _funded_streamer(server, wallets, rule)
    hook = await streamer.webhook(["wallet.topup_failed", "wallet.credited"])
    stream = await _paid_stream(streamer, procs, tmp_path)

    # 6 + 10 sats pay eight minutes; then the cap refuses a second top-up.
    publisher = await procs.publish(server.rtmp_port, stream["streamKey"], seconds=30)
    assert await asyncio.wait_for(publisher.wait(), 40) != 0, "stopped by the server"
    await poll_until(lambda: _ended(server, stream["id"]), 10, "the session closed")
    pk, reason, minutes = _session(server, stream["id"])
    assert (reason, minutes) == ("insufficient_funds", 8)
    assert _charged(server, pk) == 16
    assert wallets.streamer.balance_sats == 50_000 - 10
    events = [d["event"] for d in await streamer.deliveries(hook)]
    assert "wallet.credited" in events and "wallet.topup_failed" in events
    failure = next(
        json.loads(body)["data"]
        for (body,) in query(
            server, "SELECT body FROM webhook_deliveries WHERE event = 'wallet.topup_failed'"
        )
    )
    assert "daily auto top-up cap" in failure["error"]
    shown = (await streamer.api.get("/api/wallet/auto-topup")).json()
    assert shown["spentLast24hSats"] == 10
    assert "daily auto top-up cap" in shown["lastFailure"] and shown["lastFailureAt"]


async def _ended(server: ServerProcess, stream_id: int) -> bool:
    return _session(server, stream_id)[1] is not None
