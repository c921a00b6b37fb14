"""The minute meter: charges completed minutes and closed bandwidth hours; what stops a session is
:mod:`~simulcast.control.services.limits`'s, and the node's loop is
:class:`~simulcast.control.minute_meter.MinuteMeter`.

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

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from simulcast.control.db.models import (
    Account,
    BandwidthBucket,
    Destination,
    LiveSession,
    SessionDestination,
    Stream,
)
from simulcast.control.services import ledger, limits, pricing, sessions
from simulcast.control.services.ledger import INSUFFICIENT_FUNDS, ChargeResult
from simulcast.settings import Settings

SERVER_RESTART = "server_restart"
HOUR_SECONDS = 3600
BANDWIDTH_LOOKBACK_SECONDS = 7 * 24 * HOUR_SECONDS
"""Closed hours older than this are not looked at again (they were charged long ago)."""


@dataclass(frozen=True, slots=True)
class MeterResult:
    """What metering one session did: minutes accounted, sats newly charged, and whether (why)
    the session must stop."""

    session_pk: int
    stream_id: int
    account_id: int
    metered_minutes: int
    charged: int
    stop_reason: str | None
    next_minute_ends_ms: int
    """When the minute now in progress completes (the next charge is due)."""
    next_minute_sats: int = 0
    """What the minute now in progress costs at the destinations live now (0: it is free, so
    no lowered ``max_sats`` and no drained wallet can stop it before its boundary)."""


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
    """The session's platform destinations' spans (self-hosted ones are never minutes)."""
    rows = await session.execute(
        select(
            SessionDestination.destination_id,
            SessionDestination.started_ms,
            SessionDestination.ended_ms,
        )
        .join(Destination, Destination.id == SessionDestination.destination_id)
        .where(
            SessionDestination.session_pk == session_pk,
            Destination.type.in_(pricing.PLATFORM_TYPES),
        )
    )
    return [pricing.DestinationSpan(int(d), int(s), e) for d, s, e in rows.all()]


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
    charged = await limits.session_charged(session, session_pk=live.id)
    completed = pricing.completed_minutes(until_ms - live.started_ms, minute_len)
    posted = 0
    reason: str | None = None
    minute = live.metered_minutes
    due = 0
    while reason is None:
        charges = pricing.minute_charges(settings, spans, started_ms=live.started_ms, minute=minute)
        due = sum(charges.values())
        reason = await limits.stop_reason(
            session,
            stream=stream,
            account_id=live.account_id,
            minute=minute,
            charged=charged,
            due=due,
        )
        if reason is not None or minute >= completed:
            break
        for destination_id, amount in charges.items():
            result = await ledger.charge(
                session,
                account_id=live.account_id,
                amount=amount,
                idempotency_key=minute_key(live.session_id, destination_id, minute),
                kind=ledger.Kind.STREAM_MINUTE,
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
        await limits.enforce(session, stream=stream, account_id=live.account_id, reason=reason)
    await session.flush()
    return MeterResult(
        session_pk=live.id,
        stream_id=live.stream_id,
        account_id=live.account_id,
        metered_minutes=minute,
        charged=posted,
        stop_reason=reason if enforce else None,
        next_minute_ends_ms=live.started_ms + (minute + 1) * minute_len,
        next_minute_sats=due,
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
    session: AsyncSession, *, settings: Settings, node_id: str, reason: str = SERVER_RESTART
) -> list[LiveSession]:
    """Close the sessions a crash left open on a node, reason ``server_restart`` (this node,
    on start) or ``node_lost`` (another node, by a survivor).

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
        await sessions.close_session(session, live=live, reason=reason, ended_ms=ended)
    await session.flush()
    return closed


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
            kind=ledger.Kind.BANDWIDTH,
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
