"""Bandwidth usage queries: bytes of self-hosted HLS served per account and clock hour."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from simulcast.control.db.models import BandwidthBucket


async def hour_bytes(session: AsyncSession, *, account_id: int, hour_start: int) -> int:
    """Bytes an account served in the clock hour starting at ``hour_start`` (unix seconds)."""
    total = await session.scalar(
        select(func.coalesce(func.sum(BandwidthBucket.bytes), 0)).where(
            BandwidthBucket.account_id == account_id, BandwidthBucket.hour_start == hour_start
        )
    )
    return int(total or 0)


async def hourly_bytes(
    session: AsyncSession, *, account_id: int, since_s: int | None, until_s: int | None
) -> dict[int, int]:
    """Bytes per clock hour for an account, hours starting in ``[since_s, until_s)``."""
    query = (
        select(BandwidthBucket.hour_start, func.sum(BandwidthBucket.bytes))
        .where(BandwidthBucket.account_id == account_id)
        .group_by(BandwidthBucket.hour_start)
    )
    if since_s is not None:
        query = query.where(BandwidthBucket.hour_start >= since_s)
    if until_s is not None:
        query = query.where(BandwidthBucket.hour_start < until_s)
    return {int(hour): int(total or 0) for hour, total in (await session.execute(query)).all()}
