"""The live meter: charges completed minutes and closed bandwidth hours, and enforces budgets.

Streaming minutes are charged per destination with the key ``stream:{session_id}:{destination_id}:
{minute}`` (so history can show what each platform cost); a minute's charges are paid all or
nothing and commit in one transaction with ``LiveSession.metered_minutes``, the count of minutes
accounted for. Bandwidth overage is charged per account and closed clock hour with the key
``bandwidth:{account_id}:{hour_start}``.

Enforcement happens at minute boundaries. After charging, the meter looks one minute ahead with
the destinations live now: when ``max_duration_minutes`` minutes are metered, or the next minute
would take the session's charges past ``max_sats``, or the wallet cannot pay it, the session is
stopped there (``limit_max_duration``, ``limit_max_sats``, ``insufficient_funds``), so no unpaid
streaming time is ever served. Limits lock the stream (``Stream.locked_reason``); want of funds
blocks the account (``Account.publish_blocked_reason``) until a credit. The decision commits
before ``Engine.stop`` is called, and is re-taken (and the stop re-sent) on every tick while the
engine still reports the session live.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from simulcast.control.db.models import (
    Account,
    BandwidthBucket,
    LedgerTransaction,
    LiveSession,
    SessionDestination,
    Stream,
)
from simulcast.control.services import ledger, pricing, sessions
from simulcast.control.services.ledger import INSUFFICIENT_FUNDS, ChargeResult
from simulcast.engine import SessionInfo
from simulcast.settings import Settings

log = logging.getLogger("simulcast.meter")

STREAM_MINUTE = "stream_minute"
BANDWIDTH = "bandwidth"
LIMIT_MAX_SATS = "limit_max_sats"
LIMIT_MAX_DURATION = "limit_max_duration"
SERVER_RESTART = "server_restart"
HOUR_SECONDS = 3600
BANDWIDTH_LOOKBACK_SECONDS = 7 * 24 * HOUR_SECONDS
"""Closed hours older than this are not looked at again (they were charged long ago)."""


class MeteredEngine(Protocol):
    """The part of :class:`simulcast.engine.Engine` the meter uses."""

    def sessions(self) -> Mapping[int, SessionInfo]:
        """Live sessions on this node, by stream id."""
        ...

    async def stop(self, stream_id: int, reason: str) -> bool:
        """End a stream's live session."""
        ...


@dataclass(frozen=True, slots=True)
class MeterResult:
    """What metering one session did: minutes accounted, sats newly charged, and whether (why)
    the session must stop."""

    session_pk: int
    stream_id: int
    metered_minutes: int
    charged: int
    stop_reason: str | None
    next_minute_ends_ms: int
    """When the minute now in progress completes (the next charge is due)."""


@dataclass(frozen=True, slots=True)
class BandwidthCharge:
    """The overage charge of one account for one closed hour."""

    account_id: int
    hour_start: int
    amount: int
    result: ChargeResult


def minute_key(session_id: str, destination_id: int, minute: int) -> str:
    """The idempotency key of one destination's charge for one minute of a session."""
    return f"stream:{session_id}:{destination_id}:{minute}"


def bandwidth_key(account_id: int, hour_start: int) -> str:
    """The idempotency key of an account's overage charge for one clock hour."""
    return f"bandwidth:{account_id}:{hour_start}"


async def _spans(session: AsyncSession, session_pk: int) -> list[pricing.DestinationSpan]:
    rows = await session.execute(
        select(
            SessionDestination.destination_id,
            SessionDestination.started_ms,
            SessionDestination.ended_ms,
        ).where(SessionDestination.session_pk == session_pk)
    )
    return [pricing.DestinationSpan(int(d), int(s), e) for d, s, e in rows.all()]


async def session_charged(session: AsyncSession, *, session_pk: int) -> int:
    """Sats charged so far for a session's streaming minutes (what ``max_sats`` caps)."""
    total = await session.scalar(
        select(func.coalesce(func.sum(LedgerTransaction.amount_sats), 0)).where(
            LedgerTransaction.session_pk == session_pk, LedgerTransaction.kind == STREAM_MINUTE
        )
    )
    return int(total or 0)


def _limit_reason(stream: Stream, *, minute: int, charged: int, due: int) -> str | None:
    """Why minute ``minute`` (costing ``due``) may not be streamed under the stream's limits."""
    if stream.max_duration_minutes is not None and minute >= stream.max_duration_minutes:
        return LIMIT_MAX_DURATION
    if due and stream.max_sats is not None and charged + due > stream.max_sats:
        return LIMIT_MAX_SATS
    return None


async def _meter(
    session: AsyncSession, *, settings: Settings, session_pk: int, until_ms: int, enforce: bool
) -> MeterResult:
    """Charge the completed, not yet metered minutes of a session up to ``until_ms``.

    With ``enforce``, also decide whether the session must stop now and record the lock or
    block that goes with it; without, only charge what limits and funds allow.
    """
    live = await session.scalar(
        select(LiveSession)
        .where(LiveSession.id == session_pk)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    if live is None:
        raise LookupError(f"no session with pk {session_pk}")
    if live.ended_ms is not None:  # closed meanwhile: bill up to its end, never stop it again
        until_ms, enforce = min(until_ms, live.ended_ms), False
    stream = await session.get(Stream, live.stream_id, populate_existing=True)
    if stream is None:
        raise LookupError(f"no stream {live.stream_id}")
    spans = await _spans(session, live.id)
    minute_len = pricing.minute_ms(settings)
    charged = await session_charged(session, session_pk=live.id)
    completed = pricing.completed_minutes(until_ms - live.started_ms, minute_len)
    posted = 0
    reason: str | None = None
    minute = live.metered_minutes
    while reason is None:
        charges = pricing.minute_charges(settings, spans, started_ms=live.started_ms, minute=minute)
        due = sum(charges.values())
        reason = _limit_reason(stream, minute=minute, charged=charged, due=due)
        if reason is None and due:
            balance = await ledger.locked_balance(session, account_id=live.account_id)
            if balance < due:
                reason = INSUFFICIENT_FUNDS
        if reason is not None or minute >= completed:
            break
        for destination_id, amount in charges.items():
            result = await ledger.charge(
                session,
                account_id=live.account_id,
                amount=amount,
                idempotency_key=minute_key(live.session_id, destination_id, minute),
                kind=STREAM_MINUTE,
                session_pk=live.id,
                destination_id=destination_id,
                memo=f"minute {minute} of session {live.session_id}",
                created_ms=live.started_ms + (minute + 1) * minute_len,
            )
            if result.status == "posted":
                posted += amount
                charged += amount
        minute += 1
    live.metered_minutes = minute
    if enforce and reason is not None:
        if reason == INSUFFICIENT_FUNDS:
            account = await session.get(Account, live.account_id)
            if account is not None:
                account.publish_blocked_reason = INSUFFICIENT_FUNDS
        else:
            stream.locked_reason = reason
    await session.flush()
    return MeterResult(
        session_pk=live.id,
        stream_id=live.stream_id,
        metered_minutes=minute,
        charged=posted,
        stop_reason=reason if enforce else None,
        next_minute_ends_ms=live.started_ms + (minute + 1) * minute_len,
    )


async def meter_session(
    session: AsyncSession, *, settings: Settings, session_pk: int, now_ms: int
) -> MeterResult:
    """Charge a live session's completed minutes and decide whether it must stop now.

    The caller commits, then stops the session when ``stop_reason`` is set.
    """
    return await _meter(
        session, settings=settings, session_pk=session_pk, until_ms=now_ms, enforce=True
    )


async def settle(
    session: AsyncSession, *, settings: Settings, live: LiveSession, until_ms: int
) -> MeterResult:
    """Charge a session's completed, not yet metered minutes up to ``until_ms``, enforcing
    nothing (limits and the wallet still bound what is charged; the meter stops the session on
    its next tick if it must). Safe to call any number of times."""
    return await _meter(
        session, settings=settings, session_pk=live.id, until_ms=until_ms, enforce=False
    )


async def close_session_accounting(
    session: AsyncSession, *, settings: Settings, live: LiveSession, ended_ms: int
) -> MeterResult:
    """Charge a session's final completed minutes, once, when it ends at ``ended_ms``.

    Minutes already metered are not charged again, and the stream's limits and the wallet still
    bound what is charged; nothing is locked or blocked. Safe to call before or after the
    session row is closed, and more than once.
    """
    return await settle(session, settings=settings, live=live, until_ms=ended_ms)


async def recover_after_crash(
    session: AsyncSession, *, settings: Settings, node_id: str
) -> list[LiveSession]:
    """Close the sessions a crash left open on this node, reason ``server_restart``.

    Each ends at its last metered minute: every minute charged before the crash stays charged
    exactly once and nothing more is charged. Returns the sessions closed (for webhooks). Run it
    on start, before the engine accepts publishes.
    """
    rows = await session.scalars(
        select(LiveSession)
        .where(LiveSession.ended_ms.is_(None), LiveSession.node_id == node_id)
        .with_for_update()
    )
    closed = list(rows.all())
    minute_len = pricing.minute_ms(settings)
    for live in closed:
        ended = live.started_ms + live.metered_minutes * minute_len
        await sessions.close_session(session, live=live, reason=SERVER_RESTART, ended_ms=ended)
    await session.flush()
    return closed


async def can_start(
    session: AsyncSession, *, settings: Settings, account_id: int, paid_destinations: int
) -> bool:
    """Whether an account may start a session with ``paid_destinations`` paid destinations.

    Always true when its first minute is free; otherwise the account must not be blocked for
    want of funds and its wallet must hold the first minute's price.
    """
    first_minute = paid_destinations * settings.cost_per_platform
    if first_minute <= 0:
        return True
    account = await session.get(Account, account_id)
    if account is None or account.publish_blocked_reason == INSUFFICIENT_FUNDS:
        return False
    return await ledger.balance(session, account_id=account_id) >= first_minute


async def charge_closed_hours(
    session: AsyncSession, *, settings: Settings, now_ms: int
) -> list[BandwidthCharge]:
    """Charge every account's bandwidth overage for the clock hours closed before ``now_ms``.

    Idempotent per account and hour. A charge the wallet cannot pay is not posted; the account
    is blocked for want of funds and the charge is retried on the next call.
    """
    now_s = now_ms // 1000
    current_hour = now_s // HOUR_SECONDS * HOUR_SECONDS
    limit_bytes = settings.bandwidth_limit_gb_per_hour * pricing.GB
    rows = await session.execute(
        select(
            BandwidthBucket.account_id, BandwidthBucket.hour_start, func.sum(BandwidthBucket.bytes)
        )
        .where(
            BandwidthBucket.hour_start < current_hour,
            BandwidthBucket.hour_start >= current_hour - BANDWIDTH_LOOKBACK_SECONDS,
        )
        .group_by(BandwidthBucket.account_id, BandwidthBucket.hour_start)
        .having(func.sum(BandwidthBucket.bytes) > limit_bytes)
        .order_by(BandwidthBucket.hour_start, BandwidthBucket.account_id)
    )
    out: list[BandwidthCharge] = []
    for account_id, hour_start, used in rows.all():
        amount = pricing.overage_sats(settings, int(used))
        if amount <= 0:
            continue
        result = await ledger.charge(
            session,
            account_id=int(account_id),
            amount=amount,
            idempotency_key=bandwidth_key(int(account_id), int(hour_start)),
            kind=BANDWIDTH,
            memo=f"bandwidth overage, hour starting {int(hour_start)}",
            created_ms=(int(hour_start) + HOUR_SECONDS) * 1000,
        )
        if result.status == "refused":
            account = await session.get(Account, int(account_id))
            if account is not None:
                account.publish_blocked_reason = INSUFFICIENT_FUNDS
        out.append(BandwidthCharge(int(account_id), int(hour_start), amount, result))
    await session.flush()
    return out


class Meter:
    """Runs the meter for this node: started and stopped by the composition root.

    Ticks are much shorter than a billing minute (at most 1 s), so a minute is charged, and a
    stop decided at its boundary lands, within a tick of that boundary. Between boundaries a
    session is re-checked every ``recheck_seconds`` (at most 5 s): the look-ahead that stops it
    when a limit was lowered, a destination added, or the wallet drained by another session.
    A tick with nothing due costs no query at all: metering every session every second was a
    fifth of a relay's CPU (bench/relay.py). Closed bandwidth hours are charged every
    ``bandwidth_every_seconds``.
    """

    def __init__(
        self,
        settings: Settings,
        sessionmaker: async_sessionmaker[AsyncSession],
        engine: MeteredEngine,
        *,
        node_id: str,
        clock: Callable[[], float] = time.time,
        tick_seconds: float | None = None,
        recheck_seconds: float | None = None,
        bandwidth_every_seconds: float = 60.0,
    ) -> None:
        self._settings = settings
        self._db = sessionmaker
        self._engine = engine
        self._node_id = node_id
        self._clock = clock
        self._tick = tick_seconds or min(1.0, settings.billing_minute_seconds / 10)
        recheck = recheck_seconds or min(5.0, settings.billing_minute_seconds / 10)
        self._recheck_ms = int(recheck * 1000)
        self._bandwidth_every_ms = int(bandwidth_every_seconds * 1000)
        self._next_bandwidth_ms = 0
        self._due_ms: dict[str, int] = {}
        """Per live session id: when it must be metered next (absent: at once)."""
        self._stopping = asyncio.Event()

    async def run(self) -> None:
        """Tick until :meth:`stop` is called; a failing tick is logged and retried."""
        while not self._stopping.is_set():
            try:
                await self.tick()
            except Exception:
                log.exception("meter tick failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self._tick)

    def stop(self) -> None:
        """Ask :meth:`run` to return after the current tick."""
        self._stopping.set()

    async def tick(self) -> list[MeterResult]:
        """Meter this node's live sessions that are due (each in its own transaction)."""
        now = int(self._clock() * 1000)
        live = {info.session_id for info in self._engine.sessions().values()}
        self._due_ms = {sid: due for sid, due in self._due_ms.items() if sid in live}
        due = [sid for sid in live if self._due_ms.get(sid, 0) <= now]
        results = await self._meter_sessions(due, now) if due else []
        if now >= self._next_bandwidth_ms:
            self._next_bandwidth_ms = now + self._bandwidth_every_ms
            async with self._db.begin() as session:
                await charge_closed_hours(session, settings=self._settings, now_ms=now)
        return results

    async def _meter_sessions(self, session_ids: list[str], now: int) -> list[MeterResult]:
        async with self._db.begin() as session:
            rows = (
                await session.execute(
                    select(LiveSession.id, LiveSession.session_id)
                    .where(LiveSession.ended_ms.is_(None), LiveSession.node_id == self._node_id)
                    .where(LiveSession.session_id.in_(session_ids))
                )
            ).all()
        results: list[MeterResult] = []
        for pk, session_id in rows:
            try:
                async with self._db.begin() as session:
                    result = await meter_session(
                        session, settings=self._settings, session_pk=pk, now_ms=now
                    )
            except Exception:
                log.exception("metering session %s failed; retried next tick", pk)
                continue
            results.append(result)
            if result.stop_reason is not None:
                # Not marked done: re-taken (and the stop re-sent) every tick while still live.
                log.info("stopping stream %s: %s", result.stream_id, result.stop_reason)
                await self._engine.stop(result.stream_id, result.stop_reason)
            else:
                self._due_ms[session_id] = min(result.next_minute_ends_ms, now + self._recheck_ms)
        return results
