"""The limit checker: whether a session may stream its next minute (the stream's
``max_duration_minutes`` and ``max_sats``, and the wallet), what a stop records (a limit locks the
stream, want of funds blocks the account until a credit), and whether an account may start a
session at all. The minute meter (:mod:`~simulcast.control.services.meter`) asks it at every
minute boundary. Every function takes the caller's session and never commits.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from simulcast.control.db.models import Account, Stream
from simulcast.control.services import ledger
from simulcast.control.services.ledger import INSUFFICIENT_FUNDS
from simulcast.settings import Settings

LIMIT_MAX_SATS = "limit_max_sats"
LIMIT_MAX_DURATION = "limit_max_duration"


async def session_charged(session: AsyncSession, *, session_pk: int) -> int:
    """Sats charged so far for a session's streaming minutes (what ``max_sats`` caps)."""
    return (await ledger.charged_by_session(session, session_pks=[session_pk])).get(session_pk, 0)


def limit_reason(stream: Stream, *, minute: int, charged: int, due: int) -> str | None:
    """Why minute ``minute`` (costing ``due``) may not be streamed under the stream's limits."""
    if stream.max_duration_minutes is not None and minute >= stream.max_duration_minutes:
        return LIMIT_MAX_DURATION
    if due and stream.max_sats is not None and charged + due > stream.max_sats:
        return LIMIT_MAX_SATS
    return None


async def stop_reason(
    session: AsyncSession, *, stream: Stream, account_id: int, minute: int, charged: int, due: int
) -> str | None:
    """Why minute ``minute`` (costing ``due``, after ``charged`` so far) may not be streamed:
    a limit of the stream, or a wallet (row-locked) that cannot pay it; ``None`` when it may."""
    reason = limit_reason(stream, minute=minute, charged=charged, due=due)
    if reason is None and due:
        balance = await ledger.locked_balance(session, account_id=account_id)
        if balance < due:
            reason = INSUFFICIENT_FUNDS
    return reason


async def enforce(session: AsyncSession, *, stream: Stream, account_id: int, reason: str) -> None:
    """Record a stop: want of funds blocks the account, a limit locks the stream."""
    if reason == INSUFFICIENT_FUNDS:
        account = await session.get(Account, account_id)
        if account is not None:
            account.publish_blocked_reason = INSUFFICIENT_FUNDS
    else:
        stream.locked_reason = reason


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
