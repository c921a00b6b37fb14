"""Lightning helpers and fixtures: a real Nostr relay in process, NIP-47 wallet services on it,
a ``simulcast serve`` configured with the operator's wallet, and a streamer driving the API."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

from tests.support import ServerProcess, make_server, poll_until
from tests.support.accounts import ApiAccount, query
from tests.support.nostr_relays import CompromisedRelay, LocalRelay
from tests.support.wallets import LightningNetwork, WalletService

SERVER_SETTINGS = {
    "nwc_timeout_seconds": "4",
    "lightning_poll_seconds": "0.5",
    "webhooks_allow_http": "true",
    "webhooks_allow_private": "true",
    "rate_limit_per_minute": "100000",
}


@dataclass
class Wallets:
    """The payment network and its two wallets."""

    network: LightningNetwork
    operator: WalletService
    streamer: WalletService


async def start_wallets(relay_url: str) -> Wallets:
    network = LightningNetwork()
    operator = WalletService(network, relay_url, alias="operator", balance_sats=0)
    # The streamer's wallet prefers NIP-44, the operator's speaks NIP-04 only.
    streamer = WalletService(network, relay_url, alias="streamer", balance_sats=50_000, nip44=True)
    await operator.start()
    await streamer.start()
    return Wallets(network, operator, streamer)


AnyRelay = TypeVar("AnyRelay", LocalRelay, CompromisedRelay)


@asynccontextmanager
async def running(relay: AnyRelay) -> AsyncIterator[AnyRelay]:
    """``relay`` started, and stopped on the way out."""
    await relay.start()
    try:
        yield relay
    finally:
        await relay.stop()


@pytest.fixture
async def relay() -> AsyncIterator[LocalRelay]:
    """nostr-sdk's local relay."""
    async with running(LocalRelay()) as r:
        yield r


@pytest.fixture
async def compromised_relay() -> AsyncIterator[CompromisedRelay]:
    """A relay that forwards forged events."""
    async with running(CompromisedRelay()) as r:
        yield r


@pytest.fixture
async def wallets(relay: LocalRelay) -> AsyncIterator[Wallets]:
    w = await start_wallets(relay.url)
    try:
        yield w
    finally:
        await w.operator.stop()
        await w.streamer.stop()


async def start_server(tmp_path: Path, **settings: str) -> ServerProcess:
    data_dir = tmp_path / f"server-{secrets.token_hex(3)}"
    data_dir.mkdir()
    proc = make_server(data_dir, **{**SERVER_SETTINGS, **settings})
    await asyncio.to_thread(proc.start)
    return proc


class Streamer(ApiAccount):
    """An account on the server with its API client."""

    prefix = "ln"

    def lightning_credits(self) -> list[tuple[str, int]]:
        """``(idempotency key, sats)`` of every Lightning credit of the account."""
        return [
            (str(k), int(a))
            for k, a in query(
                self.server,
                "SELECT idempotency_key, amount_sats FROM ledger_transactions"
                " WHERE account_id = ? AND kind = 'lightning' ORDER BY id",
                self.id,
            )
        ]

    async def settled_topups(self, within: float = 10.0) -> list[tuple[int, str, str]]:
        """``(sats, status, source)`` of every top-up of the account, once none has been in
        flight for half a second: a top-up asked for as a session or instance stops (by a meter
        tick that raced the stop) is still paid and credited."""
        last: list[tuple[int, str, str]] | None = None
        since = 0.0

        async def settled() -> list[tuple[int, str, str]] | None:
            nonlocal last, since
            rows = [
                (int(a), str(s), str(src))
                for a, s, src in query(
                    self.server,
                    "SELECT amount_sats, status, source FROM lightning_topups"
                    " WHERE account_id = ? ORDER BY id",
                    self.id,
                )
            ]
            now = time.monotonic()
            if rows != last or any(s == "pending" for _, s, _ in rows):
                last, since = rows, now
                return None
            return rows if now - since >= 0.5 else None

        settled_rows: list[tuple[int, str, str]] = await poll_until(
            settled, within, "no top-up in flight"
        )
        return settled_rows

    async def webhook(self, events: list[str]) -> int:
        """A webhook (to a closed port: deliveries stay queued) subscribed to ``events``."""
        from tests.support import free_port

        made = await self.api.post(
            "/api/webhooks",
            json={"url": f"http://127.0.0.1:{free_port()}/hook", "events": events},
        )
        assert made.status_code in (200, 201), made.text
        return int(made.json()["id"])

    async def deliveries(self, hook: int) -> list[dict[str, Any]]:
        got = await self.api.get(f"/api/webhooks/{hook}/deliveries")
        return list(got.json())
