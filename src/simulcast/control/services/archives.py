"""Archives: one recording per session and cloud-archive destination, and its upload state.

A row is written when its recording is decided (with the session, before the recorder starts)
and moves ``recording`` -> ``uploading`` (the recording is complete) -> ``uploaded``; a failing
upload becomes ``failed`` after its retry budget and returns to ``recording``/``uploading`` when
recovered. The upload itself is :mod:`simulcast.control.archiver`'s. Every function here takes
the caller's session and never commits.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from simulcast.control.db.models import Archive, Destination, LiveSession
from simulcast.control.s3 import S3Target
from simulcast.control.secretbox import SecretBox, SecretBoxError
from simulcast.control.timeutil import now_ms
from simulcast.engine import ARCHIVE_FILE_OPTION
from simulcast.settings import Settings

RECORDING = "recording"
UPLOADING = "uploading"
UPLOADED = "uploaded"
FAILED = "failed"
PENDING = (RECORDING, UPLOADING)
SECRET_FIELD = "secretAccessKeySealed"
"""Where a destination's config keeps its sealed S3 secret (never returned)."""


def file_name(stream_id: int, started_ms: int, n: int = 1) -> str:
    """``archive_{streamKeyId}_{startedAtUnixSeconds}.mp4`` (``_n`` for the n-th of a session)."""
    suffix = f"_{n}" if n > 1 else ""
    return f"archive_{stream_id}_{started_ms // 1000}{suffix}.mp4"


async def start_recording(
    session: AsyncSession,
    *,
    settings: Settings,
    live: LiveSession,
    destination: Destination,
) -> dict[str, Any]:
    """Record a new archive of ``live`` for ``destination``; the recorder's output options."""
    taken = set(
        (
            await session.scalars(
                select(Archive.file_name).where(
                    Archive.file_name.like(f"archive_{live.stream_id}_{live.started_ms // 1000}%")
                )
            )
        ).all()
    )
    n = 1
    while file_name(live.stream_id, live.started_ms, n) in taken:
        n += 1
    name = file_name(live.stream_id, live.started_ms, n)
    session.add(
        Archive(
            account_id=live.account_id,
            stream_id=live.stream_id,
            session_pk=live.id,
            destination_id=destination.id,
            node_id=live.node_id,
            file_name=name,
            status=RECORDING,
            local_path=str(settings.archive_path / name),
            part_size=settings.archive_part_size_bytes,
            created_ms=now_ms(),
        )
    )
    await session.flush()
    return {ARCHIVE_FILE_OPTION: name}


async def recording_finished(
    session: AsyncSession, *, session_id: str, destination_id: int | None, error: str | None = None
) -> bool:
    """The recorder of a session (one destination, or all: ``None``) stopped: its file is
    complete. ``error`` says why it stopped early (e.g. disk full). Whether a row changed."""
    live = await session.scalar(select(LiveSession).where(LiveSession.session_id == session_id))
    if live is None:
        return False
    query = select(Archive).where(Archive.session_pk == live.id, Archive.finished_ms.is_(None))
    if destination_id is not None:
        query = query.where(Archive.destination_id == destination_id)
    rows = (await session.scalars(query)).all()
    for archive in rows:
        archive.finished_ms = now_ms()
        if archive.status == RECORDING:
            archive.status = UPLOADING
        if error:
            archive.error = f"recording stopped: {error}"
    return bool(rows)


async def recover_after_crash(session: AsyncSession, *, node_id: str) -> int:
    """Recordings a crash interrupted on this node are complete as they are: upload them.

    Run on start, before the engine records anything. The number of archives so finished.
    """
    result = await session.execute(
        update(Archive)
        .where(Archive.node_id == node_id, Archive.finished_ms.is_(None))
        .values(finished_ms=now_ms())
    )
    await session.execute(
        update(Archive)
        .where(Archive.node_id == node_id, Archive.status == RECORDING)
        .values(status=UPLOADING)
    )
    return int(getattr(result, "rowcount", 0) or 0)


def recover(archive: Archive) -> None:
    """Send a failed archive back to its upload (the caller checked it is ``failed``)."""
    archive.status = RECORDING if archive.finished_ms is None else UPLOADING
    archive.error = None
    archive.failing_since_ms = None
    archive.failed_ms = None


@dataclass(frozen=True, slots=True)
class Listed:
    """One archive as the account's list shows it."""

    archive: Archive
    session_id: str
    config: dict[str, Any] | None
    """Its destination's config (where its S3 target is), ``None`` once deleted."""


async def for_account(session: AsyncSession, *, account_id: int) -> list[Listed]:
    """The account's archives with their session ids and destination configs, newest first."""
    rows = await session.execute(
        select(Archive, LiveSession.session_id, Destination.config)
        .join(LiveSession, LiveSession.id == Archive.session_pk)
        .outerjoin(Destination, Destination.id == Archive.destination_id)
        .where(Archive.account_id == account_id)
        .order_by(Archive.id.desc())
    )
    return [
        Listed(a, str(sid), dict(config) if config is not None else None)
        for a, sid, config in rows.all()
    ]


async def errors_of_session(session: AsyncSession, *, session_pk: int) -> dict[int, str]:
    """Destination id -> the upload or recording error of a session's archives that have one."""
    rows = await session.execute(
        select(Archive.destination_id, Archive.error).where(
            Archive.session_pk == session_pk, Archive.error.is_not(None)
        )
    )
    return {int(d): str(e) for d, e in rows.all() if d is not None}


def local_size(archive: Archive) -> int:
    """The recording's size: its local copy while there is one, else what was uploaded."""
    if archive.local_path and archive.status != UPLOADED:
        try:
            return Path(archive.local_path).stat().st_size
        except OSError:
            pass
    return archive.size_bytes


def target_for(
    settings: Settings, config: dict[str, Any] | None, box: SecretBox | None
) -> S3Target:
    """Where a destination's recordings go: its own ``bucket``, ``prefix``, ``endpointUrl`` and
    credentials where it names them, else the server's ``SIMULCAST_S3_*`` settings.

    Raises :class:`ValueError` when no bucket is configured or the secret cannot be opened.
    """
    config = config or {}
    bucket = config.get("bucket") or settings.s3_bucket
    if not bucket:
        raise ValueError("no S3 bucket configured (SIMULCAST_S3_BUCKET or config.bucket)")
    if config.get("accessKeyId"):
        sealed = config.get(SECRET_FIELD)
        if not sealed or box is None:
            raise ValueError("the destination's S3 secret access key is missing")
        try:
            secret = box.open(str(sealed))
        except SecretBoxError as exc:
            raise ValueError(str(exc)) from None
        key_id = str(config["accessKeyId"])
    else:
        key_id = settings.s3_access_key_id
        held = settings.s3_secret_access_key
        secret = held.get_secret_value() if held is not None else ""
    return S3Target(
        endpoint_url=str(config.get("endpointUrl") or settings.s3_endpoint_url),
        region=settings.s3_region,
        bucket=str(bucket),
        prefix=str(config.get("prefix", settings.s3_prefix)),
        access_key_id=key_id,
        secret_access_key=secret,
    )


async def by_file_name(
    session: AsyncSession, *, account_id: int, file_name: str, lock: bool = False
) -> Archive | None:
    """An account's archive by its file name (locked for update with ``lock``), or ``None``."""
    query = select(Archive).where(Archive.account_id == account_id, Archive.file_name == file_name)
    return await session.scalar(query.with_for_update() if lock else query)
