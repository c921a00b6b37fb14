"""Where a viewer's playback token leads: the self-hosted destination it plays (media nodes
serve it) and, on API nodes, the media node whose live session serves it. Every function takes
the caller's session and never commits."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from simulcast.control.db.models import Destination, LiveSession, Node


@dataclass(frozen=True, slots=True)
class PlaybackTarget:
    """The enabled self-hosted destination a playback token names."""

    destination_id: int
    account_id: int
    testing: bool
    """Testing mode (the default): viewers share the account's playlist budget."""


async def target(session: AsyncSession, *, token: str) -> PlaybackTarget | None:
    """The enabled, not deleted destination with this playback token, or ``None``."""
    row = (
        await session.execute(
            select(Destination.id, Destination.account_id, Destination.config).where(
                Destination.playback_token == token,
                Destination.enabled.is_(True),
                Destination.deleted_ms.is_(None),
            )
        )
    ).first()
    if row is None:
        return None
    mode = (row.config or {}).get("mode", "testing")
    return PlaybackTarget(row.id, row.account_id, mode != "production")


async def owner_hls_url(session: AsyncSession, *, token: str) -> str | None:
    """The advertised HLS base URL of the live (not lost) media node whose open session plays
    this token's destination, or ``None`` when it is not live."""
    return await session.scalar(
        select(Node.hls_url)
        .join(LiveSession, LiveSession.node_id == Node.id)
        .join(Destination, Destination.stream_id == LiveSession.stream_id)
        .where(
            Destination.playback_token == token,
            Destination.deleted_ms.is_(None),
            LiveSession.ended_ms.is_(None),
            Node.lost_ms.is_(None),
        )
    )
