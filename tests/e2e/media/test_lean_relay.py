"""A relaying single-process server stays lean: what only some instance elements, a schema
upgrade, an archive upload, the admin command line, the dashboard's pages or a reloading server
need (PyAV, Alembic, Playwright, boto3, typer, Jinja, watchfiles) is never imported by a server
that relays and serves HLS, and its media buffers are reported in ``/metrics``."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.support import imported_modules, make_server, publisher, wait_for

pytestmark = pytest.mark.media

NEVER_IN_A_RELAY = (
    "av",
    "alembic",
    "playwright",
    "boto3",
    "botocore",
    "typer",
    "jinja2",
    # watchfiles itself shows as imported (the import serve blocks is reported): its Rust core
    "watchfiles._rust_notify",
)


def test_a_relaying_server_loads_no_decoder_migrations_browser_or_s3(tmp_path: Path) -> None:
    server = make_server(tmp_path / "server")
    server.data_dir.mkdir()
    server.cli("migrate")  # the schema is current: starting must not need Alembic
    server.env["PYTHONPROFILEIMPORTTIME"] = "1"
    server.start()
    try:
        sk = server.create_account(sats=10_000)
        api = httpx.Client(base_url=server.base_url, headers={"X-API-Key": sk}, timeout=30)
        body = {"destinations": [{"type": "self-hosted"}]}
        stream = api.post("/api/streams", json=body).raise_for_status().json()
        dest = stream["destinations"][0]
        playlist = f"/hls/{dest['playbackToken']}/index.m3u8?apiKey={dest['apiKey']}"
        pub = publisher(server, stream["streamKey"], 60)
        try:
            wait_for(lambda: ".m4s" in httpx.get(server.base_url + playlist).text, 30, "a playlist")
            metrics = httpx.get(server.base_url + "/metrics").text
            gop = next(ln for ln in metrics.splitlines() if ln.startswith("simulcast_gop_cache"))
            assert float(gop.split()[1]) > 0, gop
            assert "simulcast_output_queued_units " in metrics
        finally:
            pub.kill()
            pub.wait()
    finally:
        server.stop()
    modules = imported_modules(server.log())
    assert "simulcast.media.local_engine" in modules
    loaded = sorted(
        m for m in modules if any(m == n or m.startswith(n + ".") for n in NEVER_IN_A_RELAY)
    )
    assert not loaded, f"a relaying server imported {loaded}"
