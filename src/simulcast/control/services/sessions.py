"""Session rows: opened when a publish is authorized, closed with a reason when it ends."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from simulcast.control import security
from simulcast.control.db.models import Destination, LiveSession, SessionDestination, Stream
from simulcast.control.timeutil import now_ms


def _taking_part(live: LiveSession, dest: Destination, since_ms: int) -> SessionDestination:
    """The row of ``dest``'s part in the live session, from ``since_ms``."""
    return SessionDestination(
        session_pk=live.id, destination_id=dest.id, platform=dest.platform, started_ms=since_ms
    )


async def open_session(
    session: AsyncSession,
    *,
    stream: Stream,
    destinations: Sequence[Destination],
    node_id: str,
    started_ms: int | None = None,
) -> LiveSession:
    """Record a new live session and the part each enabled destination takes in it."""
    started = started_ms if started_ms is not None else now_ms()
    live = LiveSession(
        session_id=security.new_session_id(),
        stream_id=stream.id,
        account_id=stream.account_id,
        node_id=node_id,
        started_ms=started,
    )
    session.add(live)
    await session.flush()
    for dest in destinations:
        if dest.enabled and dest.deleted_ms is None:
            session.add(_taking_part(live, dest, started))
    await session.flush()
    return live


async def live_session_of(session: AsyncSession, *, stream_id: int) -> LiveSession | None:
    """The open session of a stream, if any."""
    return await session.scalar(
        select(LiveSession).where(
            LiveSession.stream_id == stream_id, LiveSession.ended_ms.is_(None)
        )
    )


async def take_over(session: AsyncSession, *, live: LiveSession, node_id: str) -> bool:
    """Move an open session to ``node_id`` (stream shift across nodes), atomically: ``False``
    when it was closed or moved by someone else meanwhile. The meter of the node that owns the
    row is the session's only meter, so metering moves with it."""
    moved = await session.execute(
        update(LiveSession)
        .where(
            LiveSession.id == live.id,
            LiveSession.node_id == live.node_id,
            LiveSession.ended_ms.is_(None),
        )
        .values(node_id=node_id)
        .execution_options(synchronize_session=False)
    )
    if moved.rowcount != 1:  # type: ignore[attr-defined]
        return False
    live.node_id = node_id
    return True


async def by_session_id(session: AsyncSession, *, session_id: str) -> LiveSession | None:
    """A session by its public id."""
    return await session.scalar(select(LiveSession).where(LiveSession.session_id == session_id))


async def attach_destination(
    session: AsyncSession, *, live: LiveSession, destination: Destination, at_ms: int | None = None
) -> None:
    """A destination joined a live session (added or enabled mid-session) at ``at_ms`` (now).

    A destination that left and comes back has one span, restarted: charge the session's
    completed minutes first (``meter.settle``), or the minutes it was present at the end of
    before it left could be missed.
    """
    joined = now_ms() if at_ms is None else at_ms
    existing = await session.scalar(
        select(SessionDestination).where(
            SessionDestination.session_pk == live.id,
            SessionDestination.destination_id == destination.id,
        )
    )
    if existing is None:
        session.add(_taking_part(live, destination, joined))
    elif existing.ended_ms is not None:
        # Re-enabled: it counts again from now; the gap is not billed because the meter only
        # counts minutes a destination was part of the session for.
        existing.ended_ms = None
        existing.started_ms = joined


async def detach_destination(
    session: AsyncSession, *, live: LiveSession, destination_id: int
) -> None:
    """A destination left a live session (deleted or disabled mid-session)."""
    await session.execute(
        update(SessionDestination)
        .where(
            SessionDestination.session_pk == live.id,
            SessionDestination.destination_id == destination_id,
            SessionDestination.ended_ms.is_(None),
        )
        .values(ended_ms=now_ms())
    )


async def close_session(
    session: AsyncSession, *, live: LiveSession, reason: str, ended_ms: int, bytes_in: int = 0
) -> None:
    """Close a session and every destination part still open in it."""
    live.ended_ms = ended_ms
    live.end_reason = reason
    live.bytes_in = max(live.bytes_in, bytes_in)
    await session.execute(
        update(SessionDestination)
        .where(SessionDestination.session_pk == live.id, SessionDestination.ended_ms.is_(None))
        .values(ended_ms=ended_ms)
    )
