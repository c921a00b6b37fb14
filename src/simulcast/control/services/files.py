"""Uploaded files of the v1 dialect: MP4s (video players, later) and PNGs (failover images).

Files live under ``data_dir/files/{account_id}/{file_id}``; the row holds what probing found.
The per-account quota counts the files not deleted.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Sequence
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from simulcast.control.db.models import V1File
from simulcast.control.timeutil import now_ms
from simulcast.settings import Settings


def new_id() -> str:
    """An opaque file id."""
    return "file_" + secrets.token_hex(8)


def directory(settings: Settings, account_id: int) -> Path:
    """Where an account's files are stored (absolute)."""
    return (settings.data_dir / "files" / str(account_id)).resolve()


def path_of(settings: Settings, row: V1File) -> Path:
    """The absolute path of a stored file."""
    return directory(settings, row.account_id) / row.id


async def used_bytes(session: AsyncSession, *, account_id: int) -> int:
    """Bytes the account's files take (what the quota counts)."""
    total = await session.scalar(
        select(func.coalesce(func.sum(V1File.size_bytes), 0)).where(
            V1File.account_id == account_id, V1File.deleted_ms.is_(None)
        )
    )
    return int(total or 0)


async def list_for(session: AsyncSession, *, account_id: int) -> Sequence[V1File]:
    """The account's files, oldest first."""
    rows = await session.scalars(
        select(V1File)
        .where(V1File.account_id == account_id, V1File.deleted_ms.is_(None))
        .order_by(V1File.created_ms, V1File.id)
    )
    return rows.all()


async def get(session: AsyncSession, *, account_id: int, file_id: str) -> V1File | None:
    """One file of the account."""
    return await session.scalar(
        select(V1File).where(
            V1File.id == file_id, V1File.account_id == account_id, V1File.deleted_ms.is_(None)
        )
    )


async def ids_of_kind(session: AsyncSession, *, account_id: int, kind: str) -> set[str]:
    """The ids of the account's files of one kind: ``png`` (what a failover's ``image`` may
    name) or ``mp4`` (a video player's ``file``)."""
    return {f.id for f in await list_for(session, account_id=account_id) if f.kind == kind}


def record(
    session: AsyncSession,
    *,
    file_id: str,
    account_id: int,
    name: str,
    size: int,
    probe: dict[str, object],
) -> V1File:
    """Add the row of a stored, probed upload."""
    row = V1File(
        id=file_id,
        account_id=account_id,
        name=name[:255],
        kind=str(probe["kind"]),
        size_bytes=size,
        probe=probe,
        created_ms=now_ms(),
    )
    session.add(row)
    return row


def delete(settings: Settings, row: V1File) -> None:
    """Mark a file deleted and remove it from disk."""
    row.deleted_ms = now_ms()
    with contextlib.suppress(FileNotFoundError):
        path_of(settings, row).unlink()
