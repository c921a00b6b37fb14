"""Accounts, API keys and dashboard sessions: creation and authentication."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Literal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from simulcast.control import security
from simulcast.control.db.models import Account, ApiKey, AuthSession, Destination
from simulcast.control.timeutil import now_ms

PrincipalKind = Literal["sk", "pk", "session"]


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a request acts as. ``pk`` principals are bound to one self-hosted destination."""

    account_id: int
    kind: PrincipalKind
    credential_digest: str
    destination_id: int | None = None
    stream_id: int | None = None
    is_admin: bool = False


class AccountExists(Exception):
    """An account with that name already exists."""


async def create_account(
    session: AsyncSession, *, name: str, password: str | None, is_admin: bool = False
) -> Account:
    """Create an account (password argon2-hashed); raises :class:`AccountExists`."""
    existing = await session.scalar(select(Account.id).where(Account.name == name))
    if existing is not None:
        raise AccountExists(name)
    account = Account(
        name=name,
        password_hash=await security.hash_password_off_loop(password) if password else None,
        is_admin=is_admin,
        created_ms=now_ms(),
    )
    session.add(account)
    await session.flush()
    return account


async def account_by_name(session: AsyncSession, name: str) -> Account | None:
    """The account named ``name``, if any."""
    return await session.scalar(select(Account).where(Account.name == name))


async def create_api_key(
    session: AsyncSession,
    *,
    account_id: int,
    kind: Literal["sk", "pk"],
    destination_id: int | None = None,
    label: str | None = None,
) -> str:
    """Create a key and return its secret (shown once; only the digest is stored)."""
    return (
        await create_api_key_row(
            session, account_id=account_id, kind=kind, destination_id=destination_id, label=label
        )
    )[1]


async def create_api_key_row(
    session: AsyncSession,
    *,
    account_id: int,
    kind: Literal["sk", "pk"],
    destination_id: int | None = None,
    label: str | None = None,
) -> tuple[ApiKey, str]:
    """Create a key: its row (id, hint, creation time) and its secret, shown once."""
    secret = security.new_api_key(kind)
    row = ApiKey(
        account_id=account_id,
        kind=kind,
        key_hash=security.digest(secret),
        hint=secret[:8],
        destination_id=destination_id,
        label=label,
        created_ms=now_ms(),
    )
    session.add(row)
    await session.flush()
    return row, secret


async def check_password(
    ctx_read: Callable[[], AbstractAsyncContextManager[AsyncSession]],
    *,
    username: str,
    password: str,
) -> int | None:
    """The id of the account ``username`` if ``password`` is its password, else ``None``.

    Reads the stored hash in a short session of its own (``ctx_read`` opens one), then verifies
    off the event loop, holding no database connection meanwhile; raises
    :class:`~simulcast.control.security.HasherBusy` when a flood fills the hash pool. Callers
    rate-limit failures before calling this.
    """
    async with ctx_read() as session:
        query = select(Account.id, Account.password_hash).where(Account.name == username)
        row = (await session.execute(query)).first()
    stored = row.password_hash if row is not None else None
    if not await security.verify_password_off_loop(stored, password) or row is None:
        return None
    return int(row.id)


async def open_login_session(
    session: AsyncSession, *, account_id: int, ttl_ms: int
) -> tuple[str, int]:
    """Open a dashboard session for an account whose password was checked: (token, expiry)."""
    token = security.new_token()
    created = now_ms()
    session.add(
        AuthSession(
            account_id=account_id,
            token_hash=security.digest(token),
            created_ms=created,
            expires_ms=created + ttl_ms,
        )
    )
    await session.flush()
    return token, created + ttl_ms


async def logout(session: AsyncSession, *, credential_digest: str) -> bool:
    """Revoke the dashboard session with this token digest; whether one was open."""
    row = await session.scalar(
        select(AuthSession).where(
            AuthSession.token_hash == credential_digest, AuthSession.revoked_ms.is_(None)
        )
    )
    if row is None:
        return False
    row.revoked_ms = now_ms()
    return True


async def authenticate(session: AsyncSession, credential: str) -> Principal | None:
    """Resolve a credential (``sk_``/``pk_`` key or session token) to a principal.

    ``None`` for unknown, revoked or expired credentials and for ``pk_`` keys whose destination
    is disabled or deleted.
    """
    key_digest = security.digest(credential)
    if credential.startswith(("sk_", "pk_")):
        row = (
            await session.execute(
                select(ApiKey, Account.is_admin, Destination)
                .join(Account, Account.id == ApiKey.account_id)
                .outerjoin(Destination, Destination.id == ApiKey.destination_id)
                .where(ApiKey.key_hash == key_digest)
            )
        ).first()
        if row is None:
            return None
        key, is_admin, destination = row
        if key.revoked_ms is not None or not security.digests_equal(key.key_hash, key_digest):
            return None
        if key.kind == "pk":
            if destination is None or destination.deleted_ms is not None:
                return None
            if not destination.enabled:
                return None
            return Principal(
                account_id=key.account_id,
                kind="pk",
                credential_digest=key_digest,
                destination_id=destination.id,
                stream_id=destination.stream_id,
            )
        return Principal(
            account_id=key.account_id, kind="sk", credential_digest=key_digest, is_admin=is_admin
        )
    row2 = (
        await session.execute(
            select(AuthSession, Account.is_admin)
            .join(Account, Account.id == AuthSession.account_id)
            .where(AuthSession.token_hash == key_digest)
        )
    ).first()
    if row2 is None:
        return None
    auth, is_admin = row2
    if auth.revoked_ms is not None or auth.expires_ms <= now_ms():
        return None
    if not security.digests_equal(auth.token_hash, key_digest):
        return None
    return Principal(
        account_id=auth.account_id,
        kind="session",
        credential_digest=key_digest,
        is_admin=is_admin,
    )
