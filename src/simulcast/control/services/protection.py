"""Disconnect protection on the control plane: webhooks for a lost and a returning publisher.

The session row stays open while a session is protected (billing simply continues at the same
rate); only the ``stream.disconnected`` and ``stream.resumed`` events are recorded here.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from simulcast.control.db.models import Stream
from simulcast.control.services import sessions, webhooks
from simulcast.engine import PublisherLost, PublisherResumed


async def record_publisher_event(
    session: AsyncSession, *, event: PublisherLost | PublisherResumed, once: str | None = None
) -> bool:
    """Queue the event's webhook deliveries (the caller commits); whether any were queued.
    ``once``: as :func:`webhooks.enqueue_event`'s, for a transaction tried again."""
    live = await sessions.by_session_id(session, session_id=event.session_id)
    stream = await session.get(Stream, event.stream_id)
    if live is None or live.ended_ms is not None or stream is None:
        return False
    data = webhooks.stream_started_data(live=live, stream=stream)
    if isinstance(event, PublisherLost):
        name = "stream.disconnected"
        data.update(
            disconnectedAt=event.at_ms,
            reason=event.reason,
            graceSeconds=int(event.grace_seconds),
            protectionEndsAt=event.at_ms + int(event.grace_seconds * 1000),
        )
    else:
        name = "stream.resumed"
        data.update(resumedAt=event.at_ms, shift=event.shift, gapSeconds=event.gap_ms / 1000)
    ids = await webhooks.enqueue_event(
        session,
        account_id=live.account_id,
        stream_id=live.stream_id,
        event=name,
        data=data,
        created_ms=event.at_ms,
        once=once,
    )
    return bool(ids)
