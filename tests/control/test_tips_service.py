"""Tips in the database on both backends: the settings, messages, and ``tip.received`` queued
exactly once however often a payment is reported; nothing reaches the ledger."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from simulcast.control.db.models import LedgerTransaction, WebhookDelivery
from simulcast.control.nwc import Invoice
from simulcast.control.services import tips, webhooks
from simulcast.control.tips import _description
from tests.support.db import make_owner


@pytest.mark.parametrize(
    ("message", "stored"),
    [
        (None, None),
        ("   ", None),
        ("  thanks!  ", "thanks!"),
        ("1 < 2 & 3 > 2", "1 < 2 & 3 > 2"),
        ("x" * 280, "x" * 280),
        ("🎉" * 280, "🎉" * 280),
    ],
)
def test_plain_messages_are_kept(message: str | None, stored: str | None) -> None:
    assert tips.check_message(message) == stored


@pytest.mark.parametrize(
    "message",
    ["x" * 281, "<b>hi</b>", "a <img src=x onerror=alert(1)>", "</script>", "<!-- x -->",
     "&lt;b&gt;", "&#60;b>", "bell\x07"],
)  # fmt: skip
def test_long_marked_up_or_control_messages_are_refused(message: str) -> None:
    with pytest.raises(tips.TipInputError) as refused:
        tips.check_message(message)
    assert refused.value.field == "message"


def test_invoice_description_fits_bolt11() -> None:
    assert _description(None) == "Tip for the stream"
    assert _description("thanks") == "Tip: thanks"
    long = _description("🎉" * 280)
    assert len(long.encode()) <= 600 and long.startswith("Tip: 🎉")


async def test_settlement_queues_tip_received_once(db: async_sessionmaker[AsyncSession]) -> None:
    async with db.begin() as session:
        owner = await make_owner(session, destinations=0)
        assert await tips.policy(session, account_id=owner.account_id) == tips.Policy(
            False, tips.DEFAULT_MIN_SATS, tips.DEFAULT_MAX_SATS
        )
        await tips.set_policy(session, account_id=owner.account_id, new=tips.Policy(True, 10, 20))
        await webhooks.create_webhook(
            session,
            account_id=owner.account_id,
            url="https://example.com/hook",
            events=["tip.received"],
            secret=None,
            stream_id=None,
        )
        invoice = Invoice(bolt11="lnbc1...", payment_hash="ab" * 32, amount_sats=15, expires_at_s=1)
        await tips.record(
            session,
            account_id=owner.account_id,
            stream_id=owner.stream_id,
            invoice=invoice,
            message="thanks",
        )
    async with db() as session:
        policy = await tips.policy(session, account_id=owner.account_id)
    with pytest.raises(tips.TipInputError):
        tips.check_amount(policy, 21)
    tips.check_amount(policy, 20)

    async with db.begin() as session:
        await tips.mark_expired(session, payment_hash=invoice.payment_hash)
    results = []
    for _ in range(3):  # a late payment counts; reported again, nothing more happens
        async with db.begin() as session:
            results.append(await tips.mark_paid(session, payment_hash=invoice.payment_hash))
    assert results == [True, False, False]
    async with db() as session:
        rows = (await session.scalars(select(WebhookDelivery.body))).all()
        row = await tips.get(session, payment_hash=invoice.payment_hash)
        credits = await session.scalar(
            select(func.count()).where(LedgerTransaction.account_id == owner.account_id)
        )
    assert row is not None and tips.view(row)["status"] == "paid"
    bodies = [json.loads(b) for b in rows if json.loads(b)["event"] == "tip.received"]
    assert [b["data"]["paymentHash"] for b in bodies] == [invoice.payment_hash]
    assert bodies[0]["data"]["message"] == "thanks" and bodies[0]["data"]["amountSats"] == 15
    assert credits == 0
