"""A small sample of the bench/soak.py run (issue 20): mutated captured publish sessions, some
with a real key, leave no traceback, a live server and memory where it was."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from bench.soak import soak, start_server

pytestmark = pytest.mark.media


async def test_mutated_sessions_sample(tmp_path: Path) -> None:
    server, key = start_server(tmp_path)
    try:
        result = await soak(
            server,
            stream_key=key,
            sessions=300,
            concurrency=16,
            valid_share=0.2,
            session_seconds=2.0,
            seed=20,
        )
        async with httpx.AsyncClient(base_url=server.base_url, timeout=5) as client:
            assert (await client.get("/healthz")).status_code == 200
    finally:
        server.stop()
    print(result.summary())
    assert result.tracebacks == 0, [line for line in result.log_lines if "Error" in line]
    assert "connect_failed" not in result.outcomes
    assert result.rss_after - result.rss_before < 64 * 1024 * 1024
    assert not [line for line in result.log_lines if " ERROR " in f" {line}"]
