"""Billing at the edges of a session: who may publish, final accounting, crash recovery, and
destinations joining or leaving a live session. The minute-by-minute charging itself is
:mod:`simulcast.control.services.meter`; prices are :mod:`simulcast.control.services.pricing`.

Rules (API.md, Money):

- **Who pays.** For each completed minute ``k`` of a session, the destinations counting for it
  are those that were part of the session at the minute's end (a ``SessionDestination`` row
  joined before the end and not left before it). The first ``free_platforms`` of them by
  creation order (destination id) are free; each other costs ``cost_per_platform``.
- **Enforcement** (the meter, at minute boundaries, looking one minute ahead): a session stops
  when the minute about to start cannot be paid (``insufficient_funds``, the account is then
  blocked), when its charge would take the session's total *past* ``maxSats`` (so the total
  never exceeds the cap and may equal it: ``limit_max_sats``), or when ``maxDurationMinutes``
  minutes are complete (``limit_max_duration``); a limit locks the stream until its limits
  change. The stop lands within a meter tick (at most a second) of the boundary.
- **Publish refusal.** A publish is refused while the account is blocked for want of funds
  (``Account.publish_blocked_reason``, set when the meter could not pay a minute or an hour of
  bandwidth, lifted by any credit), and when its first minute would cost more than the wallet
  holds. A stream a limit locked is refused by the control plane before this is asked.
- **Session end.** The completed minutes not yet metered are charged in the transaction that
  closes the session, with the meter's idempotency keys, so a minute is never charged twice and
  ``stream.ended``'s ``totalCostSats`` is final.
- **Crash recovery.** Sessions a crash left open on this node end with reason
  ``server_restart`` at their last metered minute; nothing more is charged.

Every function here takes the caller's session and never commits.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncSession

from simulcast.control.db.models import Account, Destination, LiveSession, Stream
from simulcast.control.services import ledger, limits, meter, pricing, sessions, webhooks
from simulcast.control.timeutil import now_ms
from simulcast.settings import Settings


async def publish_refusal(
    session: AsyncSession,
    *,
    settings: Settings,
    stream: Stream,
    destinations: Sequence[Destination],
) -> str | None:
    """Why a publish of ``stream`` must be refused for money, or ``None`` when it may start.

    The answer is the description the publisher sees in ``NetStream.Publish.Denied``.
    """
    account = await session.get(Account, stream.account_id)
    if account is not None and account.publish_blocked_reason:
        return (
            f"Account is blocked ({account.publish_blocked_reason}); "
            "fund the wallet to publish again"
        )
    enabled = [
        d.id
        for d in destinations
        if d.enabled and d.deleted_ms is None and pricing.is_platform(d.type)
    ]
    paid = len(pricing.paid_destinations(settings, enabled))
    if await limits.can_start(
        session, settings=settings, account_id=stream.account_id, paid_destinations=paid
    ):
        return None
    price = paid * settings.cost_per_platform
    held = await ledger.balance(session, account_id=stream.account_id)
    return (
        f"Insufficient funds (insufficient_funds): the first minute costs {price} sats, "
        f"the wallet holds {held}"
    )


async def end_session(
    session: AsyncSession,
    *,
    settings: Settings,
    live: LiveSession,
    reason: str,
    ended_ms: int,
    bytes_in: int = 0,
) -> None:
    """Charge a session's last completed minutes (once) and close it with ``reason``."""
    await meter.close_session_accounting(session, settings=settings, live=live, ended_ms=ended_ms)
    await sessions.close_session(
        session, live=live, reason=reason, ended_ms=ended_ms, bytes_in=bytes_in
    )


async def recover_crashed_sessions(
    session: AsyncSession, *, settings: Settings, node_id: str, reason: str = meter.SERVER_RESTART
) -> list[LiveSession]:
    """Close the sessions a crash left open on a node (``server_restart`` for this one on start,
    before the engine accepts publishes; ``node_lost`` for a lost one) and queue their
    ``stream.ended`` webhooks."""
    closed = await meter.recover_after_crash(
        session, settings=settings, node_id=node_id, reason=reason
    )
    for live in closed:
        await webhooks.enqueue_stream_ended(session, live=live, created_ms=live.ended_ms)
    return closed


async def destination_changed(
    session: AsyncSession, *, settings: Settings, destination: Destination
) -> None:
    """Record that a destination joined or left its stream's live session, if one is open.

    Call it in the transaction that adds, enables, disables or deletes the destination, before
    the engine is told: an enabled, not deleted destination is part of the session from now on
    (billed from the first minute it is present at the end of), any other is not from now on.
    """
    live = await sessions.live_session_of(session, stream_id=destination.stream_id)
    if live is None:
        return
    if destination.enabled and destination.deleted_ms is None:
        now = now_ms()
        # A destination that left and comes back starts a new span: first charge the minutes
        # completed so far, while its old span still tells whether it was there at their end.
        await meter.settle(session, settings=settings, live=live, until_ms=now)
        await sessions.attach_destination(session, live=live, destination=destination, at_ms=now)
    else:
        await sessions.detach_destination(session, live=live, destination_id=destination.id)
