"""The ledger on a real database: conservation, no negative balance, idempotency, concurrency."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from simulcast.control.db.models import Account, LedgerEntry, LedgerTransaction
from simulcast.control.services import ledger
from tests.support.db import make_owner


@dataclass(frozen=True)
class Op:
    """One posting: a credit or a charge of ``amount`` under key number ``key``."""

    credit: bool
    key: int
    amount: int


ops = st.lists(
    st.builds(Op, st.booleans(), st.integers(0, 8), st.integers(0, 40)), min_size=1, max_size=12
)


async def _apply(session: AsyncSession, account_id: int, op: Op) -> None:
    key = f"t:{account_id}:{'c' if op.credit else 'd'}:{op.key}"
    if op.credit:
        if op.amount > 0:
            await ledger.credit(
                session, account_id=account_id, amount=op.amount, idempotency_key=key
            )
    else:
        await ledger.charge(
            session, account_id=account_id, amount=op.amount, idempotency_key=key, kind="test"
        )


async def _snapshot(session: AsyncSession, account_id: int) -> tuple[int, int, int]:
    cached = await ledger.balance(session, account_id=account_id)
    postings = await session.scalar(
        select(func.count()).where(LedgerTransaction.account_id == account_id)
    )
    recomputed = await ledger.recomputed_balance(session, account_id=account_id)
    return cached, recomputed, int(postings or 0)


@settings(max_examples=25, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sequence=ops)
async def test_invariants_hold_and_replays_change_nothing(
    db: async_sessionmaker[AsyncSession], sequence: list[Op]
) -> None:
    async with db.begin() as session:
        owner = await make_owner(session, destinations=0)
    model = 0
    seen: dict[str, int] = {}
    for op in sequence:
        async with db.begin() as session:
            await _apply(session, owner.account_id, op)
            # Model: first use of a key posts (a charge only if affordable); replays do nothing.
            key = f"{op.credit}:{op.key}"
            if key not in seen:
                if op.credit and op.amount > 0:
                    seen[key] = op.amount
                    model += op.amount
                elif not op.credit and op.amount > 0 and model >= op.amount:
                    seen[key] = -op.amount
                    model -= op.amount
            cached, recomputed, _ = await _snapshot(session, owner.account_id)
            assert cached == recomputed == model >= 0
            assert await ledger.ledger_sum(session) == 0
    async with db.begin() as session:
        before = await _snapshot(session, owner.account_id)
        for op in sequence:
            if f"{op.credit}:{op.key}" in seen:
                await _apply(session, owner.account_id, op)
        assert await _snapshot(session, owner.account_id) == before


async def test_charge_reports_posted_duplicate_refused_free(
    db: async_sessionmaker[AsyncSession],
) -> None:
    async with db.begin() as session:
        owner = await make_owner(session, destinations=0)
        acct = owner.account_id
        assert await ledger.credit(session, account_id=acct, amount=10, idempotency_key=f"c{acct}")
        assert not await ledger.credit(
            session, account_id=acct, amount=10, idempotency_key=f"c{acct}"
        )

        async def charge(key: str, amount: int) -> ledger.ChargeResult:
            return await ledger.charge(
                session, account_id=acct, amount=amount, idempotency_key=f"{acct}:{key}", kind="t"
            )

        assert await charge("a", 7) == ledger.ChargeResult("posted", 3)
        assert await charge("a", 7) == ledger.ChargeResult("duplicate", 3)
        assert await charge("b", 4) == ledger.ChargeResult("refused", 3)
        assert await charge("c", 0) == ledger.ChargeResult("free", 3)
        assert not (await charge("b", 4)).paid
        with pytest.raises(ValueError):
            await charge("d", -1)


async def test_credit_lifts_an_insufficient_funds_block(
    db: async_sessionmaker[AsyncSession],
) -> None:
    async with db.begin() as session:
        owner = await make_owner(session, destinations=0)
        account = await session.get(Account, owner.account_id)
        assert account is not None
        account.publish_blocked_reason = ledger.INSUFFICIENT_FUNDS
        await ledger.OperatorCredit().fund(
            session, account_id=owner.account_id, amount=5, reference="r1", memo="top-up"
        )
        await session.refresh(account)
        assert account.publish_blocked_reason is None


async def test_two_sessions_drain_one_wallet_concurrently(
    db: async_sessionmaker[AsyncSession],
) -> None:
    async with db.begin() as session:
        owner = await make_owner(session, destinations=0)
        acct = owner.account_id
        await ledger.credit(session, account_id=acct, amount=50, idempotency_key=f"fund:{acct}")

    async def drain(keys: list[str]) -> list[str]:
        statuses: list[str] = []
        for key in keys:
            async with db.begin() as session:
                result = await ledger.charge(
                    session, account_id=acct, amount=3, idempotency_key=key, kind="t"
                )
                assert result.balance >= 0
                statuses.append(result.status)
            await asyncio.sleep(0)
        return statuses

    # Distinct keys (two sessions of one account) plus shared keys (a replayed tick).
    shared = [f"{acct}:shared:{i}" for i in range(6)]
    a, b = await asyncio.gather(
        drain([f"{acct}:a:{i}" for i in range(12)] + shared),
        drain(shared + [f"{acct}:b:{i}" for i in range(12)]),
    )
    async with db.begin() as session:
        cached, recomputed, _ = await _snapshot(session, acct)
        posted = (a + b).count("posted")
        assert cached == recomputed == 50 - 3 * posted == 2
        assert await ledger.ledger_sum(session) == 0
        for key in shared:
            count = await session.scalar(
                select(func.count()).where(LedgerTransaction.idempotency_key == key)
            )
            assert count in (0, 1)
        entries = await session.scalar(
            select(func.count())
            .select_from(LedgerEntry)
            .join(LedgerTransaction)
            .where(LedgerTransaction.account_id == acct)
        )
        assert entries == 2 * (posted + 1)
