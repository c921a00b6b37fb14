"""The in-process Lightning service on SQLite and PostgreSQL: ``ensure_funds`` (the fee path)
tops up from the connected wallet over a real relay, and concurrent settlements of one payment
credit once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from pydantic import SecretStr
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from simulcast.control.db.models import LedgerTransaction, LightningTopup
from simulcast.control.nwc import nostr_wallet_factory
from simulcast.control.secretbox import SecretBox, new_key
from simulcast.control.services import ledger, lightning
from simulcast.control.topups import Lightning
from simulcast.settings import Settings
from tests.support.db import db, db_settings, make_owner
from tests.support.lightning import Wallets

__all__ = ["db", "db_settings"]


@pytest.fixture
async def service(
    db: async_sessionmaker[AsyncSession], db_settings: Settings, wallets: Wallets
) -> AsyncIterator[Lightning]:
    settings = db_settings.model_copy(
        update={
            "operator_nwc_uri": SecretStr(wallets.operator.uri()),
            "nwc_timeout_seconds": 5.0,
        }
    )
    ln = Lightning(
        settings,
        db,
        box=SecretBox([new_key().encode()]),
        wallet_factory=nostr_wallet_factory(settings.nwc_timeout_seconds),
    )
    try:
        yield ln
    finally:
        await ln.stop()


async def _credits(db: async_sessionmaker[AsyncSession], account_id: int) -> list[int]:
    async with db() as session:
        rows = await session.scalars(
            select(LedgerTransaction.amount_sats).where(
                LedgerTransaction.account_id == account_id, LedgerTransaction.kind == "lightning"
            )
        )
        return list(rows.all())


async def test_ensure_funds_pays_the_shortfall_from_the_connected_wallet_once(
    service: Lightning, db: async_sessionmaker[AsyncSession], wallets: Wallets
) -> None:
    async with db.begin() as session:
        owner = await make_owner(session, destinations=0)
        await ledger.credit(
            session, account_id=owner.account_id, amount=100, idempotency_key=f"t:{owner}"
        )
    account = owner.account_id
    # No wallet connected: nothing to top up from.
    assert not await service.ensure_funds(account_id=account, sats=300)
    assert await service.ensure_funds(account_id=account, sats=100), "already enough"

    await service.connect(account_id=account, uri=wallets.streamer.uri())
    # Two fees at once, each needing 300: one top-up of the shortfall serves both.
    funded = await asyncio.gather(
        service.ensure_funds(account_id=account, sats=300),
        service.ensure_funds(account_id=account, sats=300),
    )
    assert funded == [True, True]
    assert await _credits(db, account) == [200]
    assert wallets.streamer.balance_sats == 50_000 - 200
    assert wallets.operator.balance_sats == 200
    async with db() as session:
        assert await ledger.balance(session, account_id=account) == 300
        sources = await session.scalars(
            select(LightningTopup.source).where(LightningTopup.account_id == account)
        )
        assert list(sources.all()) == ["fee"]

    # The wallet refuses: not funded, the top-up failed with its message.
    wallets.streamer.refuse_payments = "budget exhausted"
    assert not await service.ensure_funds(account_id=account, sats=1000)
    async with db() as session:
        errors = await session.scalars(
            select(LightningTopup.error).where(
                LightningTopup.account_id == account, LightningTopup.status == "failed"
            )
        )
        assert ["budget exhausted" in (e or "") for e in errors.all()] == [True]


async def test_concurrent_settlements_of_one_payment_credit_once(
    service: Lightning, db: async_sessionmaker[AsyncSession], wallets: Wallets
) -> None:
    async with db.begin() as session:
        owner = await make_owner(session, destinations=0)
    made = await service.topup(account_id=owner.account_id, amount_sats=777, pay=False)
    wallets.network.pay(wallets.streamer, made["invoice"])

    async def settle() -> bool:
        async with db.begin() as session:
            return await lightning.settle(session, payment_hash=made["paymentHash"])

    results = await asyncio.gather(*(settle() for _ in range(4)), service.sweep())
    assert sorted(results[:4]) == [False, False, False, True]
    assert await _credits(db, owner.account_id) == [777]
    async with db() as session:
        count = await session.scalar(
            select(func.count(LightningTopup.id)).where(
                LightningTopup.payment_hash == made["paymentHash"],
                LightningTopup.status == "paid",
            )
        )
        assert count == 1
