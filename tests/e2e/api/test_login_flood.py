"""Login floods and key guessing keep the event loop free; X-Forwarded-For is believed only
when configured (issue 20)."""

from __future__ import annotations

import asyncio
import statistics
import time
from collections import Counter
from pathlib import Path

import httpx

from tests.support import make_server


async def test_healthz_stays_fast_during_a_login_flood(tmp_path: Path) -> None:
    """20 failed logins a second, from many addresses and for many names (so neither limit
    stops them all): argon2 runs off the loop, /healthz p50 stays under 20 ms."""
    server = make_server(tmp_path)
    server.start()
    try:
        server.create_account("victim", password="correct horse battery staple")
        statuses: Counter[int] = Counter()

        # Every 127.x.y.z is loopback on Linux: a botnet in one box. Clients made up front
        # (each builds an SSL context), so the flood costs this process little.
        bots = [
            httpx.AsyncClient(
                transport=httpx.AsyncHTTPTransport(local_address=f"127.0.{i}.{1 + i % 7}"),
                timeout=30,
            )
            for i in range(40)
        ]

        async def attempt(i: int) -> None:
            r = await bots[i % len(bots)].post(
                server.base_url + "/api/auth/login",
                json={"username": "victim" if i % 2 else f"user{i}", "password": f"x{i}"},
            )
            statuses[r.status_code] += 1
            assert r.json()["error"]

        async def flood(seconds: float) -> None:
            tasks = []
            for i in range(int(seconds * 20)):
                tasks.append(asyncio.create_task(attempt(i)))
                await asyncio.sleep(0.05)
            await asyncio.gather(*tasks)

        # /healthz over one raw keep-alive connection: next to nothing of the client's own time
        # is in the figure (the flood shares this process).
        latencies: list[float] = []
        reader, writer = await asyncio.open_connection("127.0.0.1", server.http_port)
        request = b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n"

        async def healthz() -> float:
            start = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200")
            length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
            await reader.readexactly(length)
            return time.perf_counter() - start

        quiet = statistics.median([await healthz() for _ in range(20)])
        flooding = asyncio.create_task(flood(6))
        while not flooding.done():
            latencies.append(await healthz())
            await asyncio.sleep(0.05)
        await flooding
        writer.close()
        for bot in bots:
            await bot.aclose()
        p50 = statistics.median(latencies)
        figures = f"quiet {quiet * 1000:.1f} ms, flooded {p50 * 1000:.1f} ms ({len(latencies)})"
        print(f"healthz p50: {figures}; logins {dict(statuses)}")
        assert p50 < 0.020, f"p50 {p50 * 1000:.1f} ms"
        assert statuses[401] > 0 and statuses[429] > 0  # hashed some, refused the rest cheaply
        assert set(statuses) <= {401, 429}
    finally:
        server.stop()


async def test_failed_logins_are_limited_per_account_and_forwarded_for_is_ignored(
    tmp_path: Path,
) -> None:
    server = make_server(
        tmp_path, login_failures_per_minute_per_account="3", invalid_keys_per_minute_per_address="5"
    )
    server.start()
    try:
        server.create_account("owner", password="right password")
        async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as client:
            for i in range(3):
                # A forged X-Forwarded-For must not give each attempt a fresh address.
                headers = {"X-Forwarded-For": f"10.0.0.{i}"}
                r = await client.post(
                    "/api/auth/login",
                    json={"username": "owner", "password": "wrong"},
                    headers=headers,
                )
                assert r.status_code == 401
            r = await client.post(
                "/api/auth/login", json={"username": "owner", "password": "right password"}
            )
            assert r.status_code == 429 and int(r.headers["Retry-After"]) > 0
            assert r.json()["error"] == "Too many login attempts. Try again later."
            # Key guessing from one address: 401 five times, then 429 before any lookup.
            codes = []
            for i in range(7):
                r = await client.get(
                    "/api/streams",
                    headers={"X-API-Key": f"sk_guess{i}", "X-Forwarded-For": f"10.1.0.{i}"},
                )
                codes.append(r.status_code)
            assert codes == [401] * 5 + [429] * 2
            assert "Invalid API key" not in r.json()["error"]
        assert "Traceback" not in server.log()
    finally:
        server.stop()
