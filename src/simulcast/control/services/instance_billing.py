"""Per-second billing of RUNNING instances (V1.md, Money), through the same ledger as streams.

An instance's price is cumulative: after ``s`` seconds of running time (over all its runs) it has
cost ``s * INSTANCE_SATS_PER_HOUR // 3600`` sats. Each accounting charges the difference with the
key ``instance:{id}:{s}`` and moves ``V1Instance.seconds`` and ``cost_sats`` in the same
transaction, so a retried or crashed tick never charges twice and a stop settles to the second.
The minute meter (:class:`simulcast.control.minute_meter.MinuteMeter`) runs it at least every
``instance_billing_seconds``, and looks one interval ahead: a wallet that cannot pay the next
interval stops the instance (``insufficient_funds``), unless an automatic top-up the meter waits
for (its ``Funding``, as for sessions) lets it pay. Should a late tick find more due than the
wallet holds, the wallet pays what it holds and the instance stops.

Functions take the caller's session and never commit.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from simulcast.control.db.models import V1Instance
from simulcast.control.services import ledger
from simulcast.control.services.ledger import INSUFFICIENT_FUNDS
from simulcast.settings import Settings

"""The ledger ``kind`` of instance charges."""


@dataclass(frozen=True, slots=True)
class InstanceCharge:
    """What accounting one instance did."""

    instance_id: str
    account_id: int
    seconds: int
    charged: int
    stop_reason: str | None


def cost_for(settings: Settings, seconds: int) -> int:
    """What ``seconds`` of running time cost in total (whole sats, rounded down)."""
    return seconds * settings.instance_sats_per_hour // 3600


def charge_key(instance_id: str, seconds: int) -> str:
    """The idempotency key of the charge that brings an instance's total to ``seconds``."""
    return f"instance:{instance_id}:{seconds}"


def running_seconds(instance: V1Instance, until_ms: int) -> int:
    """Whole seconds the instance has run, over all runs, at ``until_ms``."""
    if instance.run_started_ms is None:
        return instance.run_base_seconds
    return instance.run_base_seconds + max(0, until_ms - instance.run_started_ms) // 1000


def first_interval_price(settings: Settings) -> int:
    """What the first billing interval costs (a launch needs a wallet holding it)."""
    return -(-settings.instance_sats_per_hour * int(settings.instance_billing_seconds) // 3600)


async def locked(session: AsyncSession, instance_id: str) -> V1Instance | None:
    """An instance row, locked for the caller's transaction and freshly read."""
    return await session.scalar(
        select(V1Instance)
        .where(V1Instance.id == instance_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )


async def account(
    session: AsyncSession,
    *,
    settings: Settings,
    instance: V1Instance,
    until_ms: int,
    enforce: bool,
) -> InstanceCharge:
    """Charge an instance's running time up to ``until_ms`` (the row should be locked).

    With ``enforce``, also decide whether it must stop now: the wallet could not pay, or cannot
    pay the next interval. Without, only charge (the final settlement of a stop).
    """
    seconds = running_seconds(instance, until_ms)
    charged = 0
    reason: str | None = None
    if seconds > instance.seconds:
        target = cost_for(settings, seconds)
        due = target - instance.cost_sats
        if due > 0:
            result = await ledger.charge(
                session,
                account_id=instance.account_id,
                amount=due,
                idempotency_key=charge_key(instance.id, seconds),
                kind=ledger.Kind.INSTANCE_SECONDS,
                memo=f"instance {instance.id}: {instance.seconds}-{seconds} s",
                created_ms=until_ms,
            )
            if result.status == "refused":
                # The time ran (a tick came late, or the stop settles): the wallet pays what it
                # holds and the instance stops.
                reason = INSUFFICIENT_FUNDS
                if result.balance > 0:
                    partial = await ledger.charge(
                        session,
                        account_id=instance.account_id,
                        amount=result.balance,
                        idempotency_key=charge_key(instance.id, seconds),
                        kind=ledger.Kind.INSTANCE_SECONDS,
                        memo=f"instance {instance.id}: {instance.seconds}-{seconds} s (partly)",
                        created_ms=until_ms,
                    )
                    if partial.status == "posted":
                        charged = result.balance
                        instance.cost_sats += result.balance
            else:
                charged = due if result.status == "posted" else 0
                instance.cost_sats = target
        instance.seconds = seconds
    if enforce and reason is None:
        ahead = seconds + int(settings.instance_billing_seconds)
        next_due = cost_for(settings, ahead) - cost_for(settings, seconds)
        if next_due > 0:
            balance = await ledger.locked_balance(session, account_id=instance.account_id)
            if balance < next_due:
                reason = INSUFFICIENT_FUNDS
    await session.flush()
    return InstanceCharge(
        instance.id, instance.account_id, instance.seconds, charged, reason if enforce else None
    )
