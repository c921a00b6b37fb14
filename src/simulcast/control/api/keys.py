"""Permanent keys and dashboard sessions over HTTP (the dashboard's Developer Tools -> API Keys).

Every change clears the credential cache, so a revoked secret is refused from the next request
on this node (other nodes within the cache's few seconds).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from simulcast.control.api.deps import Ctx, Manager
from simulcast.control.api.errors import not_found
from simulcast.control.db.models import ApiKey
from simulcast.control.schemas.common import ERRORS, Success
from simulcast.control.schemas.keys import KeyCreate, KeyCreated, KeyOut, SessionOut
from simulcast.control.services import auth, credentials

router = APIRouter(prefix="/api", tags=["Keys"], responses=ERRORS)

KeyId = Annotated[int, Path(ge=1, le=2**53, description="API key ID")]
SessionId = Annotated[int, Path(ge=1, le=2**53, description="Dashboard session ID")]


def _key_out(key: ApiKey) -> KeyOut:
    return KeyOut(
        id=key.id,
        prefix=key.hint,
        label=key.label or "",
        createdAt=key.created_ms,
        lastUsedAt=key.last_used_ms,
    )


@router.get("/keys", response_model=list[KeyOut], summary="List permanent API keys")
async def list_keys(principal: Manager, ctx: Ctx) -> list[KeyOut]:
    """The account's permanent ``sk_`` keys: prefix, label, creation and last use (no secrets)."""
    async with ctx.read() as session:
        keys = await credentials.list_keys(session, account_id=principal.account_id)
    return [_key_out(k) for k in keys]


@router.post("/keys", response_model=KeyCreated, summary="Create a permanent API key")
async def create_key(body: KeyCreate, principal: Manager, ctx: Ctx) -> KeyCreated:
    """Create an ``sk_`` key; the answer shows the key this once (only its hash is stored)."""
    async with ctx.db.begin() as session:
        row, secret = await auth.create_api_key_row(
            session, account_id=principal.account_id, kind="sk", label=body.label
        )
    return KeyCreated(
        id=row.id, key=secret, label=row.label or "", prefix=row.hint, createdAt=row.created_ms
    )


@router.delete("/keys/{id}", response_model=Success, summary="Revoke a permanent API key")
async def revoke_key(id: KeyId, principal: Manager, ctx: Ctx) -> Success:
    """Revoke a key at once; it never works again (also when it is the key of this request)."""
    async with ctx.db.begin() as session:
        found = await credentials.revoke_key(session, account_id=principal.account_id, key_id=id)
    if not found:
        raise not_found("API key")
    ctx.forget_cached()
    return Success()


@router.get("/sessions", response_model=list[SessionOut], summary="List dashboard sessions")
async def list_sessions(principal: Manager, ctx: Ctx) -> list[SessionOut]:
    """The account's open dashboard logins (session tokens are never shown again)."""
    async with ctx.read() as session:
        rows = await credentials.list_sessions(session, account_id=principal.account_id)
    return [
        SessionOut(
            id=row.id,
            createdAt=row.created_ms,
            expiresAt=row.expires_ms,
            lastUsedAt=row.last_used_ms,
            current=row.token_hash == principal.credential_digest,
        )
        for row in rows
    ]


@router.delete("/sessions/{id}", response_model=Success, summary="Revoke a dashboard session")
async def revoke_session(id: SessionId, principal: Manager, ctx: Ctx) -> Success:
    """Log a dashboard session out at once (its token is refused from the next request)."""
    async with ctx.db.begin() as session:
        found = await credentials.revoke_session(
            session, account_id=principal.account_id, session_id=id
        )
    if not found:
        raise not_found("Session")
    ctx.forget_cached()
    return Success()
