"""Keys and dashboard sessions as the account sees them: listing, last use, revocation, rotation.

Revocation is a timestamp on the stored row, never a deletion, so a revoked secret's digest stays
known and refused after a restart. The caller owns the transaction and must clear the HTTP
layer's credential cache after a change (``ControlContext.forget_cached``).
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import ColumnElement, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from simulcast.control.db.models import ApiKey, AuthSession, Destination
from simulcast.control.services import auth
from simulcast.control.services.auth import Principal
from simulcast.control.timeutil import now_ms

LAST_USED_RESOLUTION_MS = 60_000
"""``lastUsedAt`` is kept to the minute: one write per credential per minute at most."""


def _live_keys(account_id: int) -> tuple[ColumnElement[bool], ...]:
    """The account's permanent ``sk_`` keys that are not revoked."""
    return (ApiKey.account_id == account_id, ApiKey.kind == "sk", ApiKey.revoked_ms.is_(None))


def _open_sessions(account_id: int) -> tuple[ColumnElement[bool], ...]:
    """The account's dashboard sessions that are neither revoked nor expired."""
    return (
        AuthSession.account_id == account_id,
        AuthSession.revoked_ms.is_(None),
        AuthSession.expires_ms > now_ms(),
    )


async def list_keys(session: AsyncSession, *, account_id: int) -> Sequence[ApiKey]:
    """The account's live (not revoked) permanent ``sk_`` keys, oldest first."""
    rows = await session.scalars(select(ApiKey).where(*_live_keys(account_id)).order_by(ApiKey.id))
    return rows.all()


async def revoke_key(session: AsyncSession, *, account_id: int, key_id: int) -> bool:
    """Revoke one of the account's ``sk_`` keys; ``False`` if it has no such live key."""
    key = await session.scalar(select(ApiKey).where(ApiKey.id == key_id, *_live_keys(account_id)))
    if key is None:
        return False
    key.revoked_ms = now_ms()
    return True


async def list_sessions(session: AsyncSession, *, account_id: int) -> Sequence[AuthSession]:
    """The account's open dashboard sessions (not revoked, not expired), oldest first."""
    rows = await session.scalars(
        select(AuthSession).where(*_open_sessions(account_id)).order_by(AuthSession.id)
    )
    return rows.all()


async def revoke_session(session: AsyncSession, *, account_id: int, session_id: int) -> bool:
    """Revoke one of the account's open dashboard sessions; ``False`` if there is none."""
    row = await session.scalar(
        select(AuthSession).where(AuthSession.id == session_id, *_open_sessions(account_id))
    )
    if row is None:
        return False
    row.revoked_ms = now_ms()
    return True


async def rotate_public_key(session: AsyncSession, *, destination: Destination) -> str:
    """Revoke a self-hosted destination's ``pk_`` keys and issue a new one (shown once).

    The playback token, and so the HLS URL, stays: viewers keep playing; only API callers
    holding the old key are refused.
    """
    await session.execute(
        update(ApiKey)
        .where(ApiKey.destination_id == destination.id, ApiKey.revoked_ms.is_(None))
        .values(revoked_ms=now_ms())
    )
    return await auth.create_api_key(
        session, account_id=destination.account_id, kind="pk", destination_id=destination.id
    )


async def record_use(session: AsyncSession, *, principal: Principal) -> None:
    """Stamp the credential's last use, unless it was stamped within the last minute."""
    now = now_ms()
    stale = now - LAST_USED_RESOLUTION_MS
    table: type[AuthSession] | type[ApiKey] = AuthSession
    digest = AuthSession.token_hash
    if principal.kind != "session":
        table, digest = ApiKey, ApiKey.key_hash
    await session.execute(
        update(table)
        .where(
            digest == principal.credential_digest,
            or_(table.last_used_ms.is_(None), table.last_used_ms < stale),
        )
        .values(last_used_ms=now)
    )
