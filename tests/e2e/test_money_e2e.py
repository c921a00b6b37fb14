"""Money end to end: ``simulcast serve`` with one-second billing minutes, a real ffmpeg publish
and real RTMP receivers for two destinations (the second one pays 2 sats a minute).

What the API shows is checked against the database the server writes (its SQLite file)."""

from __future__ import annotations

import asyncio
import json
import secrets
import signal
import sqlite3
import time
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support import ServerProcess, free_port, make_server, poll_until
from tests.support.media import Processes

pytestmark = pytest.mark.media

MINUTE_MS = 1000
SERVER_SETTINGS = {
    "billing_minute_seconds": "1",
    "webhooks_allow_http": "true",
    "webhooks_allow_private": "true",
    "push_retry_min_seconds": "0.3",
    "push_retry_max_seconds": "1",
    "rate_limit_per_minute": "100000",  # the tests poll the API tightly
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One server for the tests that do not restart it (each uses its own account)."""
    proc = make_server(tmp_path_factory.mktemp("money-server"), **SERVER_SETTINGS)
    proc.start()
    yield proc
    proc.stop()


def query(server: ServerProcess, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    """Read the server's database directly (WAL lets us read while it writes)."""
    with closing(sqlite3.connect(server.data_dir / "simulcast.db", timeout=10)) as db:
        return db.execute(sql, args).fetchall()


class Account:
    """An account on the server: its name, API client and ledger view."""

    def __init__(self, server: ServerProcess, name: str, key: str) -> None:
        self.server = server
        self.name = name
        self.receivers: list[asyncio.subprocess.Process] = []
        self.api = httpx.AsyncClient(
            base_url=server.base_url, headers={"Authorization": f"Bearer {key}"}, timeout=10
        )

    @classmethod
    async def create(cls, server: ServerProcess, *, funds: int, admin: bool = False) -> Account:
        name = f"money-{secrets.token_hex(4)}"
        args = ["accounts", "create", name] + (["--admin"] if admin else [])
        out = await asyncio.to_thread(server.cli, *args)
        key = next(line.split()[-1] for line in out.splitlines() if "sk_" in line)
        if funds:
            await asyncio.to_thread(server.cli, "wallet", "credit", "--account", name, str(funds))
        return cls(server, name, key)

    @property
    def id(self) -> int:
        return int(query(self.server, "SELECT id FROM accounts WHERE name = ?", self.name)[0][0])

    async def balance(self) -> int:
        body = (await self.api.get("/api/wallet/balance")).json()
        assert body["cached"] is True
        entries = query(
            self.server,
            "SELECT COALESCE(SUM(amount_sats), 0) FROM ledger_entries"
            " WHERE book = 'wallet' AND account_id = ?",
            self.id,
        )
        assert body["balance"] == entries[0][0], "cached balance equals the sum of postings"
        return int(body["balance"])

    async def stream(self, procs: Processes, tmp_path: Path, receivers: int) -> dict[str, Any]:
        """A stream whose destinations push to ``receivers`` real RTMP receivers."""
        dests = []
        for i in range(receivers):
            port, proc = await procs.receiver(tmp_path / f"{self.name}-{i}.flv")
            self.receivers.append(proc)
            dests.append({"type": "rtmp", "config": {"url": f"rtmp://127.0.0.1:{port}/app/k"}})
        created = await self.api.post("/api/streams", json={"label": "paid", "destinations": dests})
        assert created.status_code == 200, created.text
        return dict(created.json())


async def live_cost(account: Account) -> dict[str, Any] | None:
    """The account's one live session in ``/api/public/streams/active/cost``, if any."""
    body = (await account.api.get("/api/public/streams/active/cost")).json()
    return body["streams"][0] if body["streams"] else None


def session_row(server: ServerProcess, stream_id: int) -> tuple[Any, ...]:
    """``(id, session_id, started_ms, ended_ms, end_reason, metered_minutes)`` of the stream's
    latest session."""
    return query(
        server,
        "SELECT id, session_id, started_ms, ended_ms, end_reason, metered_minutes FROM sessions"
        " WHERE stream_id = ? ORDER BY id DESC LIMIT 1",
        stream_id,
    )[0]


async def closed_session_row(server: ServerProcess, stream_id: int) -> tuple[Any, ...]:
    """``session_row`` once the session's close is recorded: the server kicks the publisher
    first, and the control plane records the close (reason, last charges) after."""

    async def closed() -> tuple[Any, ...] | None:
        row = session_row(server, stream_id)
        return row if row[4] is not None else None

    row: tuple[Any, ...] = await poll_until(closed, 5, "the session's close recorded")
    return row


def minute_charges(server: ServerProcess, session_pk: int) -> list[tuple[str, int]]:
    """The session's streaming charges: ``(idempotency key, sats)``."""
    return [
        (str(k), int(a))
        for k, a in query(
            server,
            "SELECT idempotency_key, amount_sats FROM ledger_transactions"
            " WHERE session_pk = ? AND kind = 'stream_minute' ORDER BY id",
            session_pk,
        )
    ]


async def refused(procs: Processes, server: ServerProcess, key: str) -> bool:
    """Whether a publish with ``key`` is refused (ffmpeg fails fast)."""
    proc = await procs.publish(server.rtmp_port, key, seconds=3)
    return await asyncio.wait_for(proc.wait(), 10) != 0


async def test_minutes_are_charged_as_they_complete_and_max_sats_stops_and_locks(
    server: ServerProcess, procs: Processes, tmp_path: Path
) -> None:
    account = await Account.create(server, funds=100)
    stream = await account.stream(procs, tmp_path, receivers=2)
    limits = await account.api.post(f"/api/streams/{stream['id']}/limits", json={"maxSats": 6})
    assert limits.status_code == 200
    publisher = await procs.publish(server.rtmp_port, stream["streamKey"], seconds=30)
    first = await poll_until(lambda: live_cost(account), 10, "the session live")
    assert first["ratePerMinute"] == 2

    # Minute by minute: never more than the completed minutes, never more than a tick late.
    seen = []
    while publisher.returncode is None:
        before = time.time() * 1000
        cost = await live_cost(account)
        after = time.time() * 1000
        if cost is None:
            break
        started = cost["startedAt"]
        done_before = int(before - started) // MINUTE_MS
        done_after = int(after - started) // MINUTE_MS
        assert cost["totalCharged"] <= 2 * min(done_after, 3)
        assert cost["totalCharged"] >= 2 * min(done_before - 1, 3)
        seen.append(cost["totalCharged"])
        await asyncio.sleep(0.1)
    assert seen == sorted(seen) and {0, 2, 4} <= set(seen) <= {0, 2, 4, 6}

    # maxSats reached at the third minute: the publisher and both pushes are gone.
    await asyncio.wait_for(publisher.wait(), 5)
    await asyncio.wait_for(asyncio.gather(*(r.wait() for r in account.receivers)), 5)
    pk, session_id, started_ms, ended_ms, reason, metered = await closed_session_row(
        server, stream["id"]
    )
    assert (reason, metered) == ("limit_max_sats", 3)
    assert 0 <= ended_ms - (started_ms + 3 * MINUTE_MS) < 1000, "stopped within a second"
    paid = stream["destinations"][1]["id"]
    assert minute_charges(server, pk) == [(f"stream:{session_id}:{paid}:{k}", 2) for k in range(3)]
    body = (await account.api.get(f"/api/streams/{stream['id']}")).json()
    assert (body["status"], body["locked"], body["lockReason"]) == ("idle", True, "limit_max_sats")
    assert await account.balance() == 94

    # Locked: a republish is refused until the limits change.
    assert await refused(procs, server, stream["streamKey"])
    await account.api.post(f"/api/streams/{stream['id']}/limits", json={"maxSats": None})
    assert (await account.api.get(f"/api/streams/{stream['id']}")).json()["locked"] is False

    # History and stats agree with the ledger.
    history = (await account.api.get("/api/stream-history")).json()
    assert [(h["sessionId"], h["platform"], h["totalCostSats"]) for h in history] == [
        (session_id, "Custom", 6)
    ]
    assert history[0]["startedAt"] == started_ms and history[0]["endedAt"] == ended_ms
    assert history[0]["durationMinutes"] == round((ended_ms - started_ms) / 60_000, 1)
    empty: list[dict[str, Any]] = []
    for params, expect in [
        ({"streamKeyId": stream["id"]}, history),
        ({"platform": "custom"}, history),
        ({"platform": "Twitch"}, empty),
        ({"minCost": 6, "maxCost": 6}, history),
        ({"minCost": 7}, empty),
        ({"maxCost": 5}, empty),
        ({"startDate": started_ms, "endDate": started_ms}, history),
        ({"startDate": started_ms + 1}, empty),
        ({"endDate": started_ms - 1}, empty),
    ]:
        got = await account.api.get("/api/stream-history", params=params)
        assert got.json() == expect, params
    for filter_ in ("day", "week", "month", "year", "all"):
        stats = (await account.api.get("/api/dashboard/stats", params={"filter": filter_})).json()
        assert stats == {
            "totalMinutes": round((ended_ms - started_ms) / 60_000, 1),
            "totalSatsSpent": 100 - await account.balance(),
        }, filter_
    before_session = {"startDate": 0, "endDate": started_ms - 1}
    stats = (await account.api.get("/api/dashboard/stats", params=before_session)).json()
    assert stats == {"totalMinutes": 0.0, "totalSatsSpent": 0}
    for filter_ in ("hour", "day", "week", "month", "year", "all"):
        usage = await account.api.get("/api/bandwidth/usage", params={"filter": filter_})
        assert usage.json() == {"totalGB": 0.0, "overageGB": 0.0, "overageSats": 0}, filter_

    # maxDurationMinutes: the next session stops when its second minute is complete.
    await account.api.post(f"/api/streams/{stream['id']}/limits", json={"maxDurationMinutes": 2})
    again = await procs.publish(server.rtmp_port, stream["streamKey"], seconds=30)
    await asyncio.wait_for(again.wait(), 10)
    _, _, started_ms, ended_ms, reason, metered = await closed_session_row(server, stream["id"])
    assert (reason, metered) == ("limit_max_duration", 2)
    assert 0 <= ended_ms - (started_ms + 2 * MINUTE_MS) < 1000
    body = (await account.api.get(f"/api/streams/{stream['id']}")).json()
    assert (body["locked"], body["lockReason"]) == (True, "limit_max_duration")
    assert await account.balance() == 94 - 4


async def test_a_minute_the_wallet_cannot_pay_stops_the_session_and_blocks_the_account(
    server: ServerProcess, procs: Processes, tmp_path: Path
) -> None:
    admin = await Account.create(server, funds=0, admin=True)
    account = await Account.create(server, funds=5)
    hook = await account.api.post(
        "/api/webhooks",
        json={"url": f"http://127.0.0.1:{free_port()}/hook", "events": ["stream.ended"]},
    )
    assert hook.status_code in (200, 201), hook.text
    stream = await account.stream(procs, tmp_path, receivers=2)
    publisher = await procs.publish(server.rtmp_port, stream["streamKey"], seconds=30)

    # 5 sats pay minutes 0 and 1 (2 each); minute 2 cannot be paid.
    await asyncio.wait_for(publisher.wait(), 10)
    await asyncio.wait_for(asyncio.gather(*(r.wait() for r in account.receivers)), 5)
    pk, session_id, started_ms, ended_ms, reason, metered = await closed_session_row(
        server, stream["id"]
    )
    assert (reason, metered) == ("insufficient_funds", 2)
    assert 0 <= ended_ms - (started_ms + 2 * MINUTE_MS) < 1000
    assert sum(a for _, a in minute_charges(server, pk)) == 4
    assert await account.balance() == 1
    (body,) = query(
        server,
        "SELECT d.body FROM webhook_deliveries d JOIN webhooks w ON w.id = d.webhook_id"
        " WHERE w.account_id = ? AND d.event = 'stream.ended'",
        account.id,
    )
    data = json.loads(body[0])["data"]
    assert (data["sessionId"], data["reason"], data["totalCostSats"]) == (
        session_id,
        "insufficient_funds",
        4,
    )
    assert query(server, "SELECT publish_blocked_reason FROM accounts WHERE id = ?", account.id)[
        0
    ] == ("insufficient_funds",)

    # Blocked until funded: the operator's credit (admin endpoint) lifts the block.
    assert await refused(procs, server, stream["streamKey"])
    credit = await admin.api.post(
        "/api/admin/wallet/credit", json={"account": account.name, "sats": 1, "reason": "top-up"}
    )
    assert credit.json() == {"success": True, "balance": 2, "duplicate": False}
    again = await procs.publish(server.rtmp_port, stream["streamKey"], seconds=30)
    await poll_until(lambda: live_cost(account), 10, "the funded republish live")
    await account.api.post(f"/api/streams/{stream['id']}/stop")
    await asyncio.wait_for(again.wait(), 5)


async def test_destinations_added_and_removed_mid_session_pay_for_the_minutes_they_were_in(
    server: ServerProcess, procs: Processes, tmp_path: Path
) -> None:
    account = await Account.create(server, funds=100)
    stream = await account.stream(procs, tmp_path, receivers=1)  # the free one
    publisher = await procs.publish(server.rtmp_port, stream["streamKey"], seconds=30)
    cost = await poll_until(lambda: live_cost(account), 10, "the session live")
    assert cost["ratePerMinute"] == 0

    async def at(offset_ms: int) -> None:
        await asyncio.sleep(max(0.0, (cost["startedAt"] + offset_ms) / 1000 - time.time()))

    port, receiver = await procs.receiver(tmp_path / "late.flv")
    await at(1500)
    added = await account.api.post(
        f"/api/streams/{stream['id']}/destinations",
        json={"type": "rtmp", "config": {"url": f"rtmp://127.0.0.1:{port}/app/k"}},
    )
    assert (await live_cost(account) or {}).get("ratePerMinute") == 2
    await at(3500)
    await account.api.delete(f"/api/destinations/{added.json()['id']}")
    await asyncio.wait_for(receiver.wait(), 5)
    await at(5300)
    await account.api.post(f"/api/streams/{stream['id']}/stop")
    await asyncio.wait_for(publisher.wait(), 5)
    pk, session_id, *_ = await closed_session_row(server, stream["id"])
    # Present at the ends of minutes 1 and 2 (t = 2 s, 3 s), gone before the end of minute 3.
    assert minute_charges(server, pk) == [
        (f"stream:{session_id}:{added.json()['id']}:{k}", 2) for k in (1, 2)
    ]
    assert await account.balance() == 96


async def test_a_crash_mid_session_closes_it_at_the_last_metered_minute_charged_once(
    procs: Processes, tmp_path: Path
) -> None:
    server = make_server(tmp_path / "crash", **SERVER_SETTINGS)
    server.data_dir.mkdir()
    await asyncio.to_thread(server.start)
    try:
        account = await Account.create(server, funds=100)
        stream = await account.stream(procs, tmp_path, receivers=2)
        publisher = await procs.publish(server.rtmp_port, stream["streamKey"], seconds=30)
        await poll_until(
            lambda: _charged_at_least(account, 4), 10, "two minutes charged before the crash"
        )
        await asyncio.sleep(0.5)
        server.stop(signal.SIGKILL)
        await asyncio.wait_for(publisher.wait(), 10)
        pk, session_id, started_ms, ended_ms, reason, metered = session_row(server, stream["id"])
        assert ended_ms is None and metered >= 2
        charged_before = minute_charges(server, pk)

        await asyncio.to_thread(server.start)
        pk, session_id, started_ms, ended_ms, reason, metered_after = session_row(
            server, stream["id"]
        )
        assert (reason, metered_after) == ("server_restart", metered)
        assert ended_ms == started_ms + metered * MINUTE_MS
        paid = stream["destinations"][1]["id"]
        expected = [(f"stream:{session_id}:{paid}:{k}", 2) for k in range(metered)]
        assert charged_before == expected
        await asyncio.sleep(1.5)  # the meter runs again: nothing more is charged
        assert minute_charges(server, pk) == expected
        assert await account.balance() == 100 - 2 * metered
        assert await live_cost(account) is None
        history = (await account.api.get("/api/stream-history")).json()
        assert [(h["endedAt"], h["totalCostSats"]) for h in history] == [(ended_ms, 2 * metered)]
    finally:
        await asyncio.to_thread(server.stop)


async def _charged_at_least(account: Account, sats: int) -> bool:
    cost = await live_cost(account)
    return cost is not None and cost["totalCharged"] >= sats
