"""Lightning top-ups in the database: wallet connections, invoices, settlement, auto top-up rules.

No network here (the wallet requests are :mod:`simulcast.control.topups`); every function takes the
caller's session and never commits. Settlement credits the ledger with the idempotency key
``lightning:{payment_hash}``, so one payment credits once whoever sees it first (a notification,
a lookup, a restart's sweep), and its ``wallet.credited`` webhook commits with the credit.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from simulcast.control.db.models import AutoTopup, LightningTopup, NwcConnection
from simulcast.control.nwc import Budget, Invoice, WalletInfo
from simulcast.control.services import ledger, webhooks
from simulcast.control.timeutil import now_ms

DAY_MS = 86_400_000


def credit_key(payment_hash: str) -> str:
    """The ledger idempotency key of a top-up's credit."""
    return f"lightning:{payment_hash}"


# --- Connections ------------------------------------------------------------------------------


async def connection(session: AsyncSession, *, account_id: int) -> NwcConnection | None:
    """The account's wallet connection, if any."""
    return await session.get(NwcConnection, account_id)


async def save_connection(
    session: AsyncSession,
    *,
    account_id: int,
    sealed_uri: str,
    wallet_pubkey: str,
    info: WalletInfo,
    balance_sats: int | None,
    budget: Budget | None,
) -> NwcConnection:
    """Store (or replace) the account's connection; the URI arrives already sealed."""
    row = await session.get(NwcConnection, account_id)
    if row is None:
        row = NwcConnection(account_id=account_id)
        session.add(row)
    row.sealed_uri = sealed_uri
    row.wallet_pubkey = wallet_pubkey
    row.alias = (info.alias or "")[:200] or None
    row.methods = list(info.methods)
    row.notifications = list(info.notifications)
    row.balance_sats = balance_sats
    row.budget = (
        {
            "usedSats": budget.used_sats,
            "totalSats": budget.total_sats,
            "renewsAt": budget.renews_at_s,
            "renewalPeriod": budget.renewal_period,
        }
        if budget is not None
        else None
    )
    row.created_ms = now_ms()
    await session.flush()
    return row


async def forget_connection(session: AsyncSession, *, account_id: int) -> bool:
    """Delete the account's connection, and its auto top-up rule (nothing left to pay from);
    whether there was one."""
    await clear_auto_rule(session, account_id=account_id)
    result = await session.execute(
        delete(NwcConnection).where(NwcConnection.account_id == account_id)
    )
    return bool(getattr(result, "rowcount", 0))


# --- Top-ups ----------------------------------------------------------------------------------


def pending_invoice(invoice: Invoice) -> dict[str, Any]:
    """The columns a top-up or a tip takes from the invoice just made for it (``pending``)."""
    return {
        "payment_hash": invoice.payment_hash,
        "amount_sats": invoice.amount_sats,
        "invoice": invoice.bolt11,
        "status": "pending",
        "created_ms": now_ms(),
        "expires_ms": invoice.expires_at_s * 1000,
    }


async def record_topup(
    session: AsyncSession, *, account_id: int, invoice: Invoice, source: str
) -> LightningTopup:
    """Remember an invoice made for the account (status ``pending``)."""
    row = LightningTopup(account_id=account_id, source=source, **pending_invoice(invoice))
    session.add(row)
    await session.flush()
    return row


async def topup(
    session: AsyncSession, *, payment_hash: str, account_id: int | None = None
) -> LightningTopup | None:
    """One top-up by payment hash (of the account, when given), locked for this transaction."""
    query = select(LightningTopup).where(LightningTopup.payment_hash == payment_hash.lower())
    if account_id is not None:
        query = query.where(LightningTopup.account_id == account_id)
    return await session.scalar(query.with_for_update().execution_options(populate_existing=True))


def topup_view(row: LightningTopup) -> dict[str, Any]:
    """A top-up as the API and webhooks show it."""
    return {
        "paymentHash": row.payment_hash,
        "amountSats": row.amount_sats,
        "status": row.status,
        "source": row.source,
        "invoice": row.invoice,
        "createdAt": row.created_ms,
        "expiresAt": row.expires_ms,
        "paidAt": row.paid_ms,
        "error": row.error,
    }


async def settle(session: AsyncSession, *, payment_hash: str, paid_ms: int | None = None) -> bool:
    """Credit a paid top-up, once: ``True`` if this call credited it.

    Paid after its expiry in our records? Credited anyway: the money arrived.
    """
    row = await topup(session, payment_hash=payment_hash)
    if row is None:
        return False
    posted = await ledger.credit(
        session,
        account_id=row.account_id,
        amount=row.amount_sats,
        idempotency_key=credit_key(row.payment_hash),
        memo=f"lightning top-up {row.payment_hash}",
        kind=ledger.Kind.LIGHTNING,
    )
    row.status = "paid"
    row.error = None
    if row.paid_ms is None:
        row.paid_ms = paid_ms or now_ms()
    if posted:
        await webhooks.enqueue_event(
            session,
            account_id=row.account_id,
            stream_id=None,
            event="wallet.credited",
            data={
                **_event_data(row),
                "balance": await ledger.balance(session, account_id=row.account_id),
            },
        )
    await session.flush()
    return posted


async def fail(session: AsyncSession, *, payment_hash: str, message: str) -> bool:
    """Mark an unpaid top-up ``failed`` with the wallet's message and queue
    ``wallet.topup_failed``; ``False`` (nothing changed) if it was paid meanwhile."""
    row = await topup(session, payment_hash=payment_hash)
    if row is None or row.status == "paid":
        return False
    row.status = "failed"
    row.error = message[:500]
    if row.source != "manual":
        await note_failure(session, account_id=row.account_id, message=row.error)
    await webhooks.enqueue_event(
        session,
        account_id=row.account_id,
        stream_id=None,
        event="wallet.topup_failed",
        data={**_event_data(row), "error": row.error},
    )
    await session.flush()
    return True


async def topup_failed_before_invoice(
    session: AsyncSession, *, account_id: int, amount_sats: int, source: str, message: str
) -> None:
    """Queue ``wallet.topup_failed`` for a top-up that failed before it had an invoice."""
    await note_failure(session, account_id=account_id, message=message)
    await webhooks.enqueue_event(
        session,
        account_id=account_id,
        stream_id=None,
        event="wallet.topup_failed",
        data={"amountSats": amount_sats, "source": source, "error": message[:500]},
    )


async def expire(session: AsyncSession, *, payment_hash: str) -> None:
    """Mark a pending top-up ``expired`` (it is still looked up for a late payment)."""
    row = await topup(session, payment_hash=payment_hash)
    if row is not None and row.status == "pending":
        row.status = "expired"
        await session.flush()


async def unsettled(session: AsyncSession, *, now: int, late_ms: int) -> Sequence[LightningTopup]:
    """Top-ups still worth a lookup: pending, or expired less than ``late_ms`` ago."""
    rows = await session.scalars(
        select(LightningTopup)
        .where(
            LightningTopup.status.in_(("pending", "expired")),
            LightningTopup.expires_ms >= now - late_ms,
        )
        .order_by(LightningTopup.id)
    )
    return rows.all()


def _event_data(row: LightningTopup) -> dict[str, Any]:
    return {"paymentHash": row.payment_hash, "amountSats": row.amount_sats, "source": row.source}


# --- Auto top-up ------------------------------------------------------------------------------


async def auto_rule(session: AsyncSession, *, account_id: int) -> AutoTopup | None:
    """The account's auto top-up rule, if set."""
    return await session.get(AutoTopup, account_id, populate_existing=True)


async def set_auto_rule(
    session: AsyncSession, *, account_id: int, below: int, amount: int, max_per_day: int
) -> AutoTopup:
    """Set (or replace) the account's auto top-up rule."""
    row = await session.get(AutoTopup, account_id)
    if row is None:
        row = AutoTopup(account_id=account_id)
        session.add(row)
    row.below_sats, row.amount_sats, row.max_per_day_sats = below, amount, max_per_day
    row.updated_ms = now_ms()
    row.last_error = row.last_error_ms = None
    await session.flush()
    return row


async def clear_auto_rule(session: AsyncSession, *, account_id: int) -> None:
    """Remove the account's auto top-up rule."""
    await session.execute(delete(AutoTopup).where(AutoTopup.account_id == account_id))


async def auto_spent_last_day(session: AsyncSession, *, account_id: int, now: int) -> int:
    """Sats of automatic top-ups (pending or paid) in the last 24 hours: what the daily cap
    counts."""
    total = await session.scalar(
        select(func.coalesce(func.sum(LightningTopup.amount_sats), 0)).where(
            LightningTopup.account_id == account_id,
            LightningTopup.source.in_(("auto", "fee")),
            LightningTopup.status.in_(("pending", "paid")),
            LightningTopup.created_ms > now - DAY_MS,
        )
    )
    return int(total or 0)


async def note_failure(session: AsyncSession, *, account_id: int, message: str) -> None:
    """Remember an automatic top-up's failure on the account's rule (shown beside it)."""
    rule = await session.get(AutoTopup, account_id)
    if rule is not None:
        rule.last_error = message[:500]
        rule.last_error_ms = now_ms()
