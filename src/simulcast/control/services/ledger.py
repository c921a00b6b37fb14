"""The sats ledger: balanced, immutable, idempotent postings; balances derived from them.

Every movement is a :class:`LedgerTransaction` with a unique idempotency key and two entries that
sum to zero: a credit moves sats ``funding -> wallet``, a charge ``wallet -> revenue``. The
``wallet_balances`` row caches the sum of an account's wallet entries; it is updated in the same
transaction and row-locked while a charge checks it, so concurrent charges serialize and a wallet
never goes negative. Functions never commit: the caller owns the transaction, so a charge and the
state change or webhook it causes commit together.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from simulcast.control.db.models import Account, LedgerEntry, LedgerTransaction, WalletBalance
from simulcast.control.timeutil import now_ms


class Kind(StrEnum):
    """What a ledger transaction is for (its ``kind`` column; the API shows it as is)."""

    CREDIT = "credit"
    """An operator's grant (CLI or admin API)."""
    LIGHTNING = "lightning"
    """A Lightning top-up."""
    STREAM_MINUTE = "stream_minute"
    """A live session's billed minute."""
    BANDWIDTH = "bandwidth"
    """An account's HLS bytes over the hourly allowance."""
    INSTANCE_SECONDS = "instance_seconds"
    """A running v1 instance's seconds."""
    ARCHIVE_RECOVERY = "archive_recovery"
    """The fee of retrying a failed archive upload."""


CHARGES_OF_STREAMING = (Kind.STREAM_MINUTE, Kind.BANDWIDTH)
"""The kinds an account's streaming spend sums."""

INSUFFICIENT_FUNDS = "insufficient_funds"
"""The account's ``publish_blocked_reason`` while its wallet could not pay a charge."""

ChargeStatus = Literal["posted", "duplicate", "refused", "free"]


@dataclass(frozen=True, slots=True)
class ChargeResult:
    """What became of a charge: newly ``posted``, a ``duplicate`` replay (nothing changed),
    ``refused`` for want of funds (nothing posted), or ``free`` (a zero amount)."""

    status: ChargeStatus
    balance: int

    @property
    def paid(self) -> bool:
        """Whether the charged thing is paid for (now or by an earlier identical posting)."""
        return self.status != "refused"


async def _wallet(session: AsyncSession, account_id: int) -> WalletBalance:
    """The account's balance row, locked for this transaction (created on first use).

    ``populate_existing`` makes the locked read overwrite a row object the session may still hold
    from an earlier transaction (sessions keep objects after commit).
    """
    query = (
        select(WalletBalance)
        .where(WalletBalance.account_id == account_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    row = await session.scalar(query)
    if row is not None:
        return row
    try:
        async with session.begin_nested():
            row = WalletBalance(account_id=account_id, balance_sats=0)
            session.add(row)
    except IntegrityError:
        row = await session.scalar(query)
        if row is None:
            raise
    return row


async def _already_posted(session: AsyncSession, idempotency_key: str) -> bool:
    found = await session.scalar(
        select(LedgerTransaction.id).where(LedgerTransaction.idempotency_key == idempotency_key)
    )
    return found is not None


async def _post(
    session: AsyncSession,
    *,
    txn: LedgerTransaction,
    wallet: WalletBalance,
    wallet_delta: int,
    counter_book: str,
) -> bool:
    """Insert a transaction and its two entries; ``False`` if the key was taken concurrently.

    The insert runs in a SAVEPOINT so a unique-key race rolls back only this posting, not the
    caller's transaction. Any other integrity error (e.g. an unknown account) propagates.
    """
    try:
        async with session.begin_nested():
            session.add(txn)
            await session.flush()
            session.add_all(
                [
                    LedgerEntry(
                        transaction_id=txn.id,
                        book="wallet",
                        account_id=txn.account_id,
                        amount_sats=wallet_delta,
                    ),
                    LedgerEntry(
                        transaction_id=txn.id,
                        book=counter_book,
                        account_id=None,
                        amount_sats=-wallet_delta,
                    ),
                ]
            )
            wallet.balance_sats += wallet_delta
            await session.flush()
    except IntegrityError:
        if await _already_posted(session, txn.idempotency_key):
            return False
        raise
    return True


async def credit(
    session: AsyncSession,
    *,
    account_id: int,
    amount: int,
    idempotency_key: str,
    memo: str = "",
    kind: Kind = Kind.CREDIT,
) -> bool:
    """Move ``amount`` sats from funding into the wallet; ``False`` if the key was used before.

    A credit also lifts an ``insufficient_funds`` publish block on the account (the meter sets
    it when a minute cannot be paid); whether the new balance suffices is checked at publish.
    """
    if amount <= 0:
        raise ValueError("a credit must be a positive number of sats")
    wallet = await _wallet(session, account_id)
    if await _already_posted(session, idempotency_key):
        return False
    txn = LedgerTransaction(
        idempotency_key=idempotency_key,
        kind=kind,
        account_id=account_id,
        amount_sats=amount,
        memo=memo[:500],
        created_ms=now_ms(),
    )
    posted = await _post(
        session, txn=txn, wallet=wallet, wallet_delta=amount, counter_book="funding"
    )
    if posted:
        await session.execute(
            update(Account)
            .where(Account.id == account_id, Account.publish_blocked_reason == INSUFFICIENT_FUNDS)
            .values(publish_blocked_reason=None)
        )
    return posted


async def charge(
    session: AsyncSession,
    *,
    account_id: int,
    amount: int,
    idempotency_key: str,
    kind: Kind,
    session_pk: int | None = None,
    destination_id: int | None = None,
    memo: str = "",
    created_ms: int | None = None,
) -> ChargeResult:
    """Move ``amount`` sats from the wallet to revenue, once per ``idempotency_key``.

    Refused (nothing posted) when the wallet holds less than ``amount``. The wallet row is locked
    before the key is checked, so concurrent replays of one key serialize and all but one see
    ``duplicate``.
    """
    if amount < 0:
        raise ValueError("a charge cannot be negative")
    wallet = await _wallet(session, account_id)
    if await _already_posted(session, idempotency_key):
        return ChargeResult("duplicate", wallet.balance_sats)
    if amount == 0:
        return ChargeResult("free", wallet.balance_sats)
    if wallet.balance_sats < amount:
        return ChargeResult("refused", wallet.balance_sats)
    txn = LedgerTransaction(
        idempotency_key=idempotency_key,
        kind=kind,
        account_id=account_id,
        session_pk=session_pk,
        destination_id=destination_id,
        amount_sats=amount,
        memo=memo[:500],
        created_ms=created_ms if created_ms is not None else now_ms(),
    )
    posted = await _post(
        session, txn=txn, wallet=wallet, wallet_delta=-amount, counter_book="revenue"
    )
    if not posted:
        return ChargeResult("duplicate", await balance(session, account_id=account_id))
    return ChargeResult("posted", wallet.balance_sats)


async def balance(session: AsyncSession, *, account_id: int) -> int:
    """The wallet balance (the cached row, kept equal to the sum of wallet entries)."""
    cached = await session.scalar(
        select(WalletBalance.balance_sats).where(WalletBalance.account_id == account_id)
    )
    return int(cached or 0)


@dataclass(frozen=True, slots=True)
class WalletMovement:
    """One posting as the wallet saw it: ``amount`` is signed (credits +, charges -)."""

    id: int
    kind: str
    amount: int
    memo: str
    created_ms: int


async def wallet_movements(
    session: AsyncSession, *, account_id: int, limit: int
) -> list[WalletMovement]:
    """The wallet's newest postings, newest first."""
    rows = await session.execute(
        select(
            LedgerTransaction.id,
            LedgerTransaction.kind,
            LedgerEntry.amount_sats,
            LedgerTransaction.memo,
            LedgerTransaction.created_ms,
        )
        .join(LedgerEntry, LedgerEntry.transaction_id == LedgerTransaction.id)
        .where(LedgerEntry.book == "wallet", LedgerEntry.account_id == account_id)
        .order_by(LedgerTransaction.created_ms.desc(), LedgerTransaction.id.desc())
        .limit(limit)
    )
    return [WalletMovement(*row) for row in rows.all()]


async def locked_balance(session: AsyncSession, *, account_id: int) -> int:
    """The wallet balance, with the wallet row locked until the caller's transaction ends.

    For callers that check funds before a group of charges (the meter pays a minute's
    per-destination charges all or nothing).
    """
    return (await _wallet(session, account_id)).balance_sats


async def recomputed_balance(session: AsyncSession, *, account_id: int) -> int:
    """The wallet balance summed from its entries (what the cached row must equal)."""
    total = await session.scalar(
        select(func.coalesce(func.sum(LedgerEntry.amount_sats), 0)).where(
            LedgerEntry.book == "wallet", LedgerEntry.account_id == account_id
        )
    )
    return int(total or 0)


async def ledger_sum(session: AsyncSession) -> int:
    """The sum of every entry in every book: zero when the ledger is balanced."""
    return int(
        await session.scalar(select(func.coalesce(func.sum(LedgerEntry.amount_sats), 0))) or 0
    )


async def charged_by_session(
    session: AsyncSession, *, session_pks: Sequence[int]
) -> dict[int, int]:
    """Sats charged so far to each of the given live sessions (their billed minutes: the only
    charges a session carries), by session row id; sessions charged nothing are absent."""
    if not session_pks:
        return {}
    rows = await session.execute(
        select(LedgerTransaction.session_pk, func.sum(LedgerTransaction.amount_sats))
        .where(
            LedgerTransaction.session_pk.in_(session_pks),
            LedgerTransaction.kind == Kind.STREAM_MINUTE,
        )
        .group_by(LedgerTransaction.session_pk)
    )
    return {int(pk): int(total or 0) for pk, total in rows.all() if pk is not None}


class OperatorCredit:
    """Credits an operator grants by hand (CLI or admin API)."""

    name = "operator"

    async def fund(
        self, session: AsyncSession, *, account_id: int, amount: int, reference: str, memo: str
    ) -> bool:
        """Post the credit with key ``credit:operator:{reference}``."""
        return await credit(
            session,
            account_id=account_id,
            amount=amount,
            idempotency_key=f"credit:{self.name}:{reference}",
            memo=memo,
        )
