"""Benchmark: requests/s and p99 of ``GET /api/public/stream/status`` on one server worker.

Runs a real ``simulcast serve`` (SQLite, rate limit raised) pinned to CPU 0 and drives it with
``wrk`` pinned to CPU 1. The peer in the same run is the same server's cheapest route,
``GET /api/public/config`` (no key, no database): the ratio shows what auth, rate limiting and the
status queries cost on top of the framework.

    python -m bench.api [--seconds 10] [--connections 64]
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import httpx

from tests.support import make_server

LATENCY_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def run_wrk(
    url: str, seconds: int, connections: int, headers: dict[str, str]
) -> tuple[float, float]:
    """Requests/s and p99 latency (ms) that wrk measured for ``url``."""
    cmd = [
        "taskset",
        "-c",
        "1",
        "wrk",
        "-t",
        "1",
        "-c",
        str(connections),
        "-d",
        f"{seconds}s",
        "--latency",
    ]
    for name, value in headers.items():
        cmd += ["-H", f"{name}: {value}"]
    out = subprocess.run([*cmd, url], capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    assert p99 is not None, out
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if non2xx:
        raise SystemExit(f"{url}: {non2xx.group(1)} non-2xx responses\n{out}")
    return rps, float(p99.group(1)) * LATENCY_UNITS[p99.group(2)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=64)
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk is required (apt-get install wrk)")
    with tempfile.TemporaryDirectory() as tmp:
        server = make_server(Path(tmp), rate_limit_per_minute="100000000", log_level="WARNING")
        server.start()
        try:
            subprocess.run(
                ["taskset", "-pc", "0", str(server.proc.pid)],  # type: ignore[union-attr]
                check=True,
                capture_output=True,
            )
            sk = server.create_account()
            created = httpx.post(
                server.base_url + "/api/streams",
                headers={"Authorization": f"Bearer {sk}"},
                json={"label": "bench", "destinations": [{"type": "self-hosted"}]},
            ).json()
            pk = created["destinations"][0]["apiKey"]
            status_url = server.base_url + "/api/public/stream/status"
            config_url = server.base_url + "/api/public/config"
            run_wrk(status_url, 2, args.connections, {"X-API-Key": pk})  # warm-up
            rows = [
                (
                    "GET /api/public/config (peer)",
                    *run_wrk(config_url, args.seconds, args.connections, {}),
                ),
                (
                    "GET /api/public/stream/status (pk_)",
                    *run_wrk(status_url, args.seconds, args.connections, {"X-API-Key": pk}),
                ),
            ]
        finally:
            server.stop()
    print(f"{'endpoint':40} {'req/s':>10} {'p99 ms':>8}")
    for name, rps, p99 in rows:
        print(f"{name:40} {rps:10.0f} {p99:8.2f}")
    print(f"status/config throughput ratio: {rows[1][1] / rows[0][1]:.2f}")


if __name__ == "__main__":
    main()
