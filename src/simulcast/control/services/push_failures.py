"""``destination.failed``: the webhook for a push that cannot reach its platform."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from simulcast.control.db.models import Destination, Stream
from simulcast.control.services import sessions, webhooks


async def record_destination_failed(
    session: AsyncSession,
    *,
    session_id: str,
    destination_id: int,
    last_error: str | None,
    at_ms: int,
    once: str | None = None,
) -> bool:
    """Queue ``destination.failed`` for a push of a live session (the caller commits); whether
    any delivery was queued. Nothing is queued once the session has ended. ``once``: as
    :func:`webhooks.enqueue_event`'s, for a transaction tried again."""
    live = await sessions.by_session_id(session, session_id=session_id)
    if live is None or live.ended_ms is not None:
        return False
    stream = await session.get(Stream, live.stream_id)
    destination = await session.get(Destination, destination_id)
    if stream is None or destination is None or destination.stream_id != live.stream_id:
        return False
    data = webhooks.stream_started_data(live=live, stream=stream)
    data.update(
        destinationId=destination.id,
        type=destination.type,
        platform=destination.platform,
        lastError=last_error,
        failedAt=at_ms,
    )
    ids = await webhooks.enqueue_event(
        session,
        account_id=live.account_id,
        stream_id=live.stream_id,
        event="destination.failed",
        data=data,
        created_ms=at_ms,
        once=once,
    )
    return bool(ids)
