"""Lightning tests: a real Nostr relay in process, two NIP-47 wallet services on it (the
operator's receiving wallet and the streamer's paying wallet), and a real ``simulcast serve``
configured with the operator's connection URI."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.support import ServerProcess
from tests.support.lightning import Wallets, compromised_relay, relay, start_server, wallets  # noqa: F401 -- fixtures


@pytest.fixture
async def server(tmp_path: Path, wallets: Wallets) -> AsyncIterator[ServerProcess]:  # noqa: F811
    """A server whose operator wallet is ``wallets.operator``."""
    proc = await start_server(tmp_path, operator_nwc_uri=wallets.operator.uri())
    try:
        yield proc
    finally:
        await asyncio.to_thread(proc.stop)
