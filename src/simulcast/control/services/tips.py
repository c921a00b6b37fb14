"""Tips in the database: an account's tip settings and the invoices its own wallet made.

No network here (the wallet requests are :mod:`simulcast.control.tips`); every function takes the
caller's session and never commits. Tips never touch the ledger: the money goes from the viewer's
wallet to the streamer's, and we only record what the streamer's wallet reported. A tip's
``tip.received`` webhook commits with the change that marks it paid, so it is sent once.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from simulcast.control.db.models import Tip, TipSettings
from simulcast.control.nwc import Invoice
from simulcast.control.services import webhooks
from simulcast.control.services.lightning import pending_invoice
from simulcast.control.timeutil import now_ms

MESSAGE_MAX_CHARS = 280
DEFAULT_MIN_SATS = 100
DEFAULT_MAX_SATS = 100_000
_MARKUP = re.compile(r"<\s*[a-zA-Z!/?]|&[#a-zA-Z0-9]+;")
"""Tags, comments and character references: a tip message is plain text."""
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


class TipInputError(ValueError):
    """A tip request the streamer's settings or our rules refuse; names the field."""

    def __init__(self, message: str, *, field: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True, slots=True)
class Policy:
    """An account's tip settings (defaults when never set: tips off)."""

    enabled: bool
    min_sats: int
    max_sats: int


def check_message(message: str | None) -> str | None:
    """The message to store (trimmed; ``None`` when empty); raises on length or markup.

    Markup is refused rather than stripped so the streamer sees what the viewer wrote; every
    place that shows a message escapes it anyway."""
    if message is None:
        return None
    text = message.strip()
    if len(text) > MESSAGE_MAX_CHARS:
        raise TipInputError(
            f"message must be at most {MESSAGE_MAX_CHARS} characters", field="message"
        )
    if _MARKUP.search(text):
        raise TipInputError("message must be plain text (no markup)", field="message")
    if _CONTROL.search(text):
        raise TipInputError("message must not contain control characters", field="message")
    return text or None


def check_amount(policy: Policy, amount_sats: int) -> None:
    """Raise unless ``amount_sats`` is within the streamer's range."""
    if not policy.min_sats <= amount_sats <= policy.max_sats:
        raise TipInputError(
            f"amountSats must be between {policy.min_sats} and {policy.max_sats}",
            field="amountSats",
        )


async def policy(session: AsyncSession, *, account_id: int) -> Policy:
    """The account's tip settings."""
    row = await session.get(TipSettings, account_id)
    if row is None:
        return Policy(False, DEFAULT_MIN_SATS, DEFAULT_MAX_SATS)
    return Policy(row.enabled, row.min_sats, row.max_sats)


async def set_policy(session: AsyncSession, *, account_id: int, new: Policy) -> None:
    """Store the account's tip settings."""
    row = await session.get(TipSettings, account_id)
    if row is None:
        row = TipSettings(account_id=account_id)
        session.add(row)
    row.enabled = new.enabled
    row.min_sats = new.min_sats
    row.max_sats = new.max_sats
    row.updated_ms = now_ms()
    await session.flush()


async def record(
    session: AsyncSession,
    *,
    account_id: int,
    stream_id: int | None,
    invoice: Invoice,
    message: str | None,
) -> Tip:
    """Remember an invoice the streamer's wallet made for a tip (status ``pending``)."""
    row = Tip(
        account_id=account_id, stream_id=stream_id, message=message, **pending_invoice(invoice)
    )
    session.add(row)
    await session.flush()
    return row


async def get(session: AsyncSession, *, payment_hash: str) -> Tip | None:
    """One tip by payment hash."""
    return await session.scalar(select(Tip).where(Tip.payment_hash == payment_hash.lower()))


async def recent(session: AsyncSession, *, account_id: int, limit: int) -> Sequence[Tip]:
    """The account's tips, newest first."""
    rows = await session.scalars(
        select(Tip)
        .where(Tip.account_id == account_id)
        .order_by(Tip.created_ms.desc(), Tip.id.desc())
        .limit(limit)
    )
    return rows.all()


async def unsettled(session: AsyncSession, *, now: int, late_ms: int) -> Sequence[Tip]:
    """Tips not yet seen paid whose invoice has not been expired longer than ``late_ms``."""
    rows = await session.scalars(
        select(Tip).where(Tip.status != "paid", Tip.expires_ms > now - late_ms).order_by(Tip.id)
    )
    return rows.all()


def view(row: Tip) -> dict[str, Any]:
    """A tip as the streamer's API, the dashboard and webhooks show it."""
    return {
        "paymentHash": row.payment_hash,
        "amountSats": row.amount_sats,
        "message": row.message,
        "status": row.status,
        "streamKeyId": row.stream_id,
        "createdAt": row.created_ms,
        "expiresAt": row.expires_ms,
        "paidAt": row.paid_ms,
    }


async def mark_paid(session: AsyncSession, *, payment_hash: str) -> bool:
    """Mark a tip paid and queue its ``tip.received`` webhook, once: whether this call did.

    A tip paid after its invoice expired in our records still counts: the money arrived."""
    paid = now_ms()
    result = await session.execute(
        update(Tip)
        .where(Tip.payment_hash == payment_hash, Tip.status != "paid")
        .values(status="paid", paid_ms=paid)
    )
    if not getattr(result, "rowcount", 0):
        return False
    row = await get(session, payment_hash=payment_hash)
    assert row is not None
    await session.refresh(row)
    await webhooks.enqueue_event(
        session,
        account_id=row.account_id,
        stream_id=row.stream_id,
        event="tip.received",
        data={
            "paymentHash": row.payment_hash,
            "amountSats": row.amount_sats,
            "message": row.message,
            "streamKeyId": row.stream_id,
            "paidAt": paid,
        },
    )
    return True


async def mark_expired(session: AsyncSession, *, payment_hash: str) -> None:
    """Record that a pending tip's invoice expired unpaid."""
    await session.execute(
        update(Tip)
        .where(Tip.payment_hash == payment_hash, Tip.status == "pending")
        .values(status="expired")
    )
