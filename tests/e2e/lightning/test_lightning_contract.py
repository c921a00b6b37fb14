"""Schemathesis against the Lightning endpoints of a server whose operator wallet answers (the
general fuzz run skips them: unconfigured, they answer 503 by design)."""

from __future__ import annotations

import asyncio
import shutil
import subprocess

from tests.support import ServerProcess
from tests.support.contract import CHECKS
from tests.support.lightning import Streamer


async def test_lightning_endpoints_hold_their_openapi_contract(server: ServerProcess) -> None:
    exe = shutil.which("schemathesis") or shutil.which("st")
    assert exe, "schemathesis is a test dependency"
    streamer = await Streamer.create(server)
    key = streamer.api.headers["Authorization"]
    command = [
        exe,
        "run",
        server.base_url + "/openapi.json",
        "--checks",
        CHECKS,
        "--max-examples",
        "10",
        "--seed",
        "20261204",
        "--continue-on-failure",
        "--header",
        f"Authorization: {key}",
        "--request-timeout",
        "20",
        "--include-path-regex",
        "^/api/wallet/(nwc|topup|topups/|auto-topup)",
    ]
    # In a thread: the wallets answering the server run on this test's event loop.
    result = await asyncio.to_thread(
        subprocess.run,
        command,
        capture_output=True,
        text=True,
        timeout=240,
        cwd=server.data_dir,
    )
    report = result.stdout[result.stdout.find("FAILURES") :] or result.stdout[-3000:]
    assert result.returncode == 0, report
    assert "Internal server error" not in server.log()
