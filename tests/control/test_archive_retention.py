"""Local copies: deleted once uploaded, kept for recovery while failed, until the retention
period ends (on SQLite and, when reachable, PostgreSQL)."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from simulcast.control.archiver import Archiver
from simulcast.control.db.models import Archive, LiveSession
from simulcast.control.timeutil import now_ms
from simulcast.settings import Settings
from tests.support.db import db, db_settings, make_owner

__all__ = ["db", "db_settings"]  # fixtures

HOUR_MS = 3_600_000


async def test_sweep_deletes_uploaded_and_expired_failed_copies(
    db: async_sessionmaker[AsyncSession], db_settings: Settings, tmp_path: Path
) -> None:
    settings = db_settings.model_copy(
        update={"data_dir": tmp_path, "archive_failed_retention_hours": 24}
    )
    now = now_ms()
    cases = {
        "uploaded": ("uploaded", None),
        "failed-long-ago": ("failed", now - 25 * HOUR_MS),
        "failed-recently": ("failed", now - 1 * HOUR_MS),
        "uploading": ("uploading", None),
    }
    async with db.begin() as session:
        owner = await make_owner(session, destinations=1)
        live = LiveSession(
            session_id=f"S{now}"[-10:],
            stream_id=owner.stream_id,
            account_id=owner.account_id,
            node_id="sweep-node",
            started_ms=now,
        )
        session.add(live)
        await session.flush()
        rows = {}
        for name, (status, failed_ms) in cases.items():
            path = tmp_path / f"{name}-{now}.mp4"
            path.write_bytes(b"recording")
            rows[name] = Archive(
                account_id=owner.account_id,
                stream_id=owner.stream_id,
                session_pk=live.id,
                node_id="sweep-node",
                file_name=path.name,
                status=status,
                failed_ms=failed_ms,
                local_path=str(path),
                error="S3 unreachable" if failed_ms else None,
                created_ms=now,
            )
            session.add(rows[name])
    await Archiver(settings, db, node_id="sweep-node").sweep()
    async with db() as session:
        after = {name: await session.get(Archive, row.id) for name, row in rows.items()}
    gone = {name for name, row in after.items() if row is not None and row.local_path is None}
    assert gone == {"uploaded", "failed-long-ago"}
    for name, row in after.items():
        assert row is not None
        assert (tmp_path / row.file_name).exists() == (name not in gone)
    expired = after["failed-long-ago"]
    assert expired is not None and "retention" in (expired.error or "")
