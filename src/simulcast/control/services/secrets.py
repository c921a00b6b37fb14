"""Secrets at rest: re-sealing every sealed value with the current key (after a rotation)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import flag_modified

from simulcast.control.db.models import Base
from simulcast.control.db.sealed import Sealed


async def reseal_all(session: AsyncSession) -> int:
    """Rewrite every :class:`Sealed` value so the first ``SIMULCAST_SECRET_KEY`` seals it.

    Values are opened with any configured key and sealed again on flush; once this committed,
    the old key can be dropped from the setting. Returns how many values were rewritten.
    """
    count = 0
    for mapper in Base.registry.mappers:
        columns = [c.key for c in mapper.columns if isinstance(c.type, Sealed)]
        if not columns:
            continue
        for row in (await session.scalars(select(mapper.class_))).all():
            for column in columns:
                if getattr(row, column):
                    flag_modified(row, column)
                    count += 1
    await session.flush()
    return count
