"""The v1 dialect's saved destinations: account-wide targets that instances' outputs name by id.

The full URL (with the platform's stream key) is sealed with the server's secret box; responses
show it masked past the app path, as the streams API does, and only the engine gets it opened.
"""

from __future__ import annotations

import secrets
from collections.abc import Collection, Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from simulcast.control.db.models import V1Destination
from simulcast.control.secretbox import SecretBox
from simulcast.control.services.destinations import DestinationError, mask_url, normalize
from simulcast.control.timeutil import now_ms

MAX_PER_ACCOUNT = 200


def new_id() -> str:
    """An opaque destination id."""
    return "dst_" + secrets.token_hex(8)


async def create(
    session: AsyncSession, *, box: SecretBox, account_id: int, name: str, url: str, key: str | None
) -> V1Destination:
    """Save a destination (``url`` rtmp/rtmps, an optional ``key`` appended as OBS does)."""
    full, platform, _ = normalize("rtmp", {"url": url, "key": key})
    count = len(await list_for(session, account_id=account_id))
    if count >= MAX_PER_ACCOUNT:
        raise DestinationError("url", f"an account may have at most {MAX_PER_ACCOUNT} destinations")
    row = V1Destination(
        id=new_id(),
        account_id=account_id,
        name=name,
        platform=platform,
        masked_url=mask_url(full),
        sealed_url=box.seal(full),
        created_ms=now_ms(),
    )
    session.add(row)
    await session.flush()
    return row


async def list_for(session: AsyncSession, *, account_id: int) -> Sequence[V1Destination]:
    """The account's destinations, oldest first."""
    rows = await session.scalars(
        select(V1Destination)
        .where(V1Destination.account_id == account_id, V1Destination.deleted_ms.is_(None))
        .order_by(V1Destination.created_ms, V1Destination.id)
    )
    return rows.all()


async def get(
    session: AsyncSession, *, account_id: int, destination_id: str
) -> V1Destination | None:
    """One live destination of the account."""
    return await session.scalar(
        select(V1Destination).where(
            V1Destination.id == destination_id,
            V1Destination.account_id == account_id,
            V1Destination.deleted_ms.is_(None),
        )
    )


async def opened_urls(
    session: AsyncSession, *, box: SecretBox, account_id: int, ids: Collection[str]
) -> dict[str, str]:
    """The full URLs (secret keys included) of the named destinations, for the engine."""
    if not ids:
        return {}
    rows = await session.scalars(
        select(V1Destination).where(
            V1Destination.account_id == account_id,
            V1Destination.id.in_(list(ids)),
            V1Destination.deleted_ms.is_(None),
        )
    )
    return {row.id: box.open(row.sealed_url) for row in rows}
