"""The archive recovery fee goes through the ledger, topped up from the account's connected
wallet (NWC) first when the wallet balance is short: a real server, a real relay and two NIP-47
wallet services."""

from __future__ import annotations

import asyncio
import secrets
import sqlite3
import time
from collections.abc import AsyncIterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from tests.support import ServerProcess
from tests.support.lightning import Streamer, Wallets, query, start_server

FEE = 500
OTHER_NODE = "another-node"
"""The failed archives' node: this server's archiver never picks them up, so the recovery's
upload (S3 is not running here) cannot touch the state the test checks."""


@pytest.fixture
async def fee_server(tmp_path: Path, wallets: Wallets) -> AsyncIterator[ServerProcess]:
    """A server whose operator wallet is ``wallets.operator``, charging ``FEE`` per recovery."""
    proc = await start_server(
        tmp_path,
        operator_nwc_uri=wallets.operator.uri(),
        archive_recovery_fee_sats=str(FEE),
    )
    try:
        yield proc
    finally:
        await asyncio.to_thread(proc.stop)


async def failed_archive(streamer: Streamer, tmp_path: Path) -> str:
    """A ``failed`` archive of the account with a real local copy; its file name."""
    stream = await streamer.api.post("/api/streams", json={"label": "show"})
    assert stream.status_code in (200, 201), stream.text
    name = f"archive_{stream.json()['id']}_{int(time.time())}_{secrets.token_hex(2)}.mp4"
    local = tmp_path / name
    local.write_bytes(b"\x00\x00\x00\x18ftypisom" + bytes(1000))
    now = int(time.time() * 1000)
    with closing(sqlite3.connect(streamer.server.data_dir / "simulcast.db", timeout=10)) as db:
        db.execute(
            "INSERT INTO archives (account_id, stream_id, file_name, status, size_bytes,"
            " duration_seconds, node_id, local_path, finished_ms, part_size, parts_uploaded,"
            " error, failing_since_ms, failed_ms, created_ms)"
            " VALUES (?, ?, ?, 'failed', 0, 12.0, ?, ?, ?, 5242880, 0, ?, ?, ?, ?)",
            (
                streamer.id,
                stream.json()["id"],
                name,
                OTHER_NODE,
                str(local),
                now - 60_000,
                "upload failed: connection refused",
                now - 50_000,
                now - 1000,
                now - 120_000,
            ),
        )
        db.commit()
    return name


async def ledger(streamer: Streamer) -> list[tuple[str, int]]:
    """``(kind, signed sats)`` of the account's postings, oldest first."""
    got = await streamer.api.get("/api/wallet/ledger")
    assert got.status_code == 200, got.text
    return [(str(r["kind"]), int(r["amountSats"])) for r in reversed(got.json())]


def status_of(server: ServerProcess, name: str) -> Any:
    return query(server, "SELECT status FROM archives WHERE file_name = ?", name)[0][0]


async def test_recovery_fee_is_topped_up_from_nwc_then_charged_once(
    fee_server: ServerProcess, wallets: Wallets, tmp_path: Path
) -> None:
    payer = await Streamer.create(fee_server, funds=120)
    broke = await Streamer.create(fee_server, funds=100)
    mine = await failed_archive(payer, tmp_path)
    theirs = await failed_archive(broke, tmp_path)
    connected = await payer.api.post("/api/wallet/nwc", json={"uri": wallets.streamer.uri()})
    assert connected.status_code == 200, connected.text
    payer_before = await ledger(payer)
    assert sum(a for _, a in payer_before) == 120

    # Another account's file: 404, and nothing moved (no top-up for a file it can't recover).
    foreign = await payer.api.post("/api/archives/recover", json={"fileName": theirs})
    assert foreign.status_code == 404, foreign.text
    assert foreign.json()["error"] == foreign.json()["message"] == "Archive not found"
    assert wallets.streamer.balance_sats == 50_000
    assert wallets.network.payments == []
    assert payer.lightning_credits() == []
    assert await ledger(payer) == payer_before

    # Short by 380: the connected wallet pays the shortfall, then the ledger charges the fee.
    paid = await payer.api.post("/api/archives/recover", json={"fileName": mine})
    assert paid.status_code == 200, paid.text
    assert paid.json() == {
        "success": True,
        "message": "Payment accepted. Archive recovery started.",
    }
    assert wallets.streamer.balance_sats == 50_000 - (FEE - 120)
    assert wallets.operator.balance_sats == FEE - 120
    ((_, credited),) = payer.lightning_credits()
    assert credited == FEE - 120
    assert await ledger(payer) == [
        *payer_before,
        ("lightning", FEE - 120),
        ("archive_recovery", -FEE),
    ]
    assert await payer.balance() == 0
    assert status_of(fee_server, mine) == "uploading"

    # Recovered already: a second call is refused and charges nothing more.
    again = await payer.api.post("/api/archives/recover", json={"fileName": mine})
    assert again.status_code == 409, again.text
    assert [k for k, _ in await ledger(payer)].count("archive_recovery") == 1
    assert len(payer.lightning_credits()) == 1
    assert wallets.streamer.balance_sats == 50_000 - (FEE - 120)

    # No connected wallet and a short balance: 402 with a message, and no ledger change.
    broke_before = await ledger(broke)
    refused = await broke.api.post("/api/archives/recover", json={"fileName": theirs})
    assert refused.status_code == 402, refused.text
    body = refused.json()
    assert body["error"] and body["message"] and str(FEE) in body["message"]
    assert await ledger(broke) == broke_before
    assert await broke.balance() == 100
    assert status_of(fee_server, theirs) == "failed"
    assert len(wallets.network.payments) == 1
