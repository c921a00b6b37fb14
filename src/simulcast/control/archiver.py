"""The archive service: uploads this node's recordings to S3-compatible storage while they grow.

One worker task per pending archive (``recording`` or ``uploading`` on this node) drives a
multipart upload: the upload id is committed before any part is sent, a part is sent as soon as
the local file holds another ``part_size`` bytes, and when the recording is complete the file is
checked (a partial last fragment left by a crash is trimmed), the remaining parts are sent and
the upload completed. Then, in one transaction, the archive becomes ``uploaded`` and its
``recording.ready`` webhook is queued (exactly once: the status change is conditional). Every
S3 request runs in a worker thread, bounded by ``archive_upload_concurrency``.

A failing request is retried with exponential backoff and jitter; when requests have kept failing
for ``archive_upload_retry_seconds`` the archive is ``failed`` (the recording, if still running,
goes on locally) until ``POST /api/archives/recover``. After a restart the workers resume from
the database: the parts already uploaded are listed from S3 and checked against the local file
(ETag = MD5 of the part), so only what is missing or differs is sent again.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from sqlalchemy import and_, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from simulcast.codecs.fmp4.scan import box_header, fragment_times, track_timescales
from simulcast.control.db.models import Archive, Destination, LiveSession
from simulcast.control.s3 import Part, S3Error, S3Store, S3Target
from simulcast.control.secretbox import SecretBox
from simulcast.control.services import archives, webhooks
from simulcast.control.timeutil import now_ms
from simulcast.periodic import Periodic, backoff_delay, rescan_interval
from simulcast.settings import Settings

log = logging.getLogger("simulcast.archives")

_SWEEP_EVERY_S = 300.0
_MAX_PARTS = 10_000  # S3's limit per multipart upload
_T = TypeVar("_T")


class _Fatal(Exception):
    """The archive cannot be uploaded at all (e.g. nothing was recorded): fail it now."""


@dataclass(frozen=True, slots=True)
class RecordingCheck:
    """A complete recording after its check: bytes that play, and how long they play."""

    size: int
    duration_seconds: float
    fragments: int


def check_recording(path: Path) -> RecordingCheck:
    """Trim ``path`` after its last complete fragment; its size, duration and fragment count.

    Blocking (run it in a thread). A missing file is an empty recording.
    """
    try:
        handle = path.open("r+b")
    except (FileNotFoundError, IsADirectoryError):
        return RecordingCheck(0, 0.0, 0)
    with handle:
        size = os.fstat(handle.fileno()).st_size
        pos = valid = fragments = 0
        timescales: dict[int, int] = {}
        first: dict[int, int] = {}
        last: dict[int, int] = {}
        pending: dict[int, tuple[int, int]] | None = None
        while pos < size:
            handle.seek(pos)
            header = box_header(handle.read(16))
            if header is None:
                break
            box_size, kind, head = header
            if box_size < head or pos + box_size > size:
                break  # a box the writer did not finish
            if kind in (b"moov", b"moof"):
                handle.seek(pos + head)
                body = handle.read(box_size - head)
                if kind == b"moov":
                    timescales = track_timescales(body)
                else:
                    try:
                        pending = fragment_times(body)
                    except ValueError:
                        break
            elif kind == b"mdat" and pending is not None:
                for track, (base, duration) in pending.items():
                    first.setdefault(track, base)
                    last[track] = base + duration
                pending = None
                fragments += 1
            pos += box_size
            if pending is None and timescales:
                valid = pos
        if valid < size:
            log.warning(
                "recording %s: trimmed %d bytes after its last fragment", path, size - valid
            )
            handle.truncate(valid)
            handle.flush()
            os.fsync(handle.fileno())
    spans = {
        track: (last[track] - first[track]) / timescales[track]
        for track in last
        if timescales.get(track)
    }
    # Track 1 is video when the recording has video: its span is what a player shows.
    seconds = spans.get(1, max(spans.values(), default=0.0))
    return RecordingCheck(valid if fragments else 0, round(seconds, 3), fragments)


def _read_range(path: Path, start: int, length: int) -> bytes:
    with path.open("rb") as handle:
        handle.seek(start)
        return handle.read(length)


def _md5_etag(path: Path, start: int, length: int) -> str:
    return '"' + hashlib.md5(_read_range(path, start, length)).hexdigest() + '"'


def _file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


class Archiver:
    """Runs this node's uploads; started and stopped by the composition root."""

    def __init__(
        self,
        settings: Settings,
        db: async_sessionmaker[AsyncSession],
        *,
        node_id: str,
        on_webhook_enqueued: Callable[[], None] = lambda: None,
        store: S3Store | None = None,
    ) -> None:
        self._settings = settings
        self._db = db
        self._node_id = node_id
        self._on_webhook_enqueued = on_webhook_enqueued
        self.store = store or S3Store()
        self._box = SecretBox.from_settings(settings)
        self._slots = asyncio.Semaphore(settings.archive_upload_concurrency)
        self._workers: dict[int, asyncio.Task[None]] = {}
        self._next_sweep = 0.0
        # Every change that makes an archive pending (a grant with an archive output, a
        # recording that finished, a recovery) calls notify(); a media node also polls, since
        # recoveries happen on the API node.
        rescan = rescan_interval(settings.role, settings.archive_poll_seconds)
        self.job = Periodic("archiver", self._pass, rescan)

    async def start(self) -> None:
        """Start looking for pending archives (resuming those a restart interrupted)."""
        self.job.start()

    def notify(self) -> None:
        """An archive was created, finished or recovered: look now."""
        self.job.wake()

    async def stop(self) -> None:
        """Stop every worker; pending uploads resume on the next start."""
        await self.job.stop()
        tasks = list(self._workers.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._workers.clear()

    def target(self, archive_config: dict[str, object] | None) -> S3Target:
        """The S3 target of a destination's config (server settings where it names none)."""
        return archives.target_for(self._settings, dict(archive_config or {}), self._box)

    def presigned_url(self, archive: Archive, config: dict[str, object] | None) -> str | None:
        """A fresh presigned GET URL of an uploaded archive (``None`` if it cannot be made)."""
        if archive.s3_key is None or archive.s3_bucket is None:
            return None
        try:
            target = self.target(config)
        except ValueError:
            return None
        if (target.endpoint_url, target.bucket) != (archive.s3_endpoint, archive.s3_bucket):
            return None  # the destination points elsewhere now; its old credentials are gone
        return self.store.presigned_get(
            target, archive.s3_key, self._settings.archive_url_expiry_seconds
        )

    # -- the scheduler ---------------------------------------------------------------------------

    async def _pass(self) -> None:
        await self._schedule()
        if time.monotonic() >= self._next_sweep:
            self._next_sweep = time.monotonic() + _SWEEP_EVERY_S
            await self.sweep()

    async def _schedule(self) -> None:
        async with self._db() as session:
            ids = (
                await session.scalars(
                    select(Archive.id).where(
                        Archive.node_id == self._node_id, Archive.status.in_(archives.PENDING)
                    )
                )
            ).all()
        for archive_id in ids:
            worker = self._workers.get(archive_id)
            if worker is None or worker.done():
                self._workers[archive_id] = asyncio.create_task(
                    self._work(archive_id), name=f"archive-{archive_id}"
                )
        for archive_id, worker in list(self._workers.items()):
            if worker.done():
                del self._workers[archive_id]

    async def sweep(self) -> None:
        """Delete local copies no longer needed: uploaded (unless kept) or failed too long ago."""
        cutoff = now_ms() - int(self._settings.archive_failed_retention_hours * 3_600_000)
        expired = [and_(Archive.status == archives.FAILED, Archive.failed_ms < cutoff)]
        if not self._settings.archive_keep_local:
            expired.append(Archive.status == archives.UPLOADED)
        async with self._db.begin() as session:
            rows = (
                await session.scalars(
                    select(Archive).where(
                        Archive.node_id == self._node_id,
                        Archive.local_path.is_not(None),
                        or_(*expired),
                    )
                )
            ).all()
            for archive in rows:
                path = Path(str(archive.local_path))
                await asyncio.to_thread(path.unlink, True)
                archive.local_path = None
                if archive.status == archives.FAILED:
                    archive.error = (archive.error or "") + " (local copy deleted after retention)"

    # -- one archive ---------------------------------------------------------------------------

    async def _s3(self, call: Callable[..., _T], *args: object) -> _T:
        async with self._slots:
            return await asyncio.to_thread(call, *args)

    async def _work(self, archive_id: int) -> None:
        parts: dict[int, Part] | None = None  # what the upload holds (None: not listed yet)
        attempt = 0
        while True:
            async with self._db() as session:
                archive = await session.get(Archive, archive_id)
                config = None
                if archive is not None and archive.destination_id is not None:
                    dest = await session.get(Destination, archive.destination_id)
                    config = dict(dest.config) if dest is not None else None
            if archive is None or archive.status not in archives.PENDING:
                return
            try:
                parts, done = await self._step(archive, config, parts)
            except _Fatal as exc:
                await self._fail(archive_id, str(exc), at_once=True)
                return
            except (S3Error, ValueError, OSError) as exc:
                attempt += 1
                if await self._fail(archive_id, str(exc), at_once=False):
                    return
                if isinstance(exc, S3Error) and exc.code == "NoSuchUpload":
                    parts = None
                await asyncio.sleep(
                    backoff_delay(
                        attempt,
                        self._settings.archive_retry_min_seconds,
                        self._settings.archive_retry_max_seconds,
                    )
                )
                continue
            if attempt or archive.failing_since_ms is not None:
                attempt = 0
                async with self._db.begin() as session:
                    await session.execute(
                        update(Archive)
                        .where(Archive.id == archive_id)
                        .values(failing_since_ms=None, error=None)
                    )
            if done:
                return
            await asyncio.sleep(self._settings.archive_poll_seconds)

    async def _step(
        self, archive: Archive, config: dict[str, object] | None, parts: dict[int, Part] | None
    ) -> tuple[dict[int, Part] | None, bool]:
        """Upload what is ready; ``(parts held, whether the archive is now uploaded)``."""
        if archive.local_path is None:
            raise _Fatal("the local copy no longer exists")
        path = Path(archive.local_path)
        target = self.target(config)
        key = target.key_for(archive.file_name)
        finished = archive.finished_ms is not None
        part_size = archive.part_size or self._settings.archive_part_size_bytes
        check = await asyncio.to_thread(check_recording, path) if finished else None
        if check is not None and check.size == 0:
            raise _Fatal("nothing was recorded")
        moved = (target.endpoint_url, target.bucket, key) != (
            archive.s3_endpoint,
            archive.s3_bucket,
            archive.s3_key,
        )
        if archive.upload_id is None or moved:
            if check is not None and await self._s3(self.store.object_size, target, key) == (
                check.size
            ):
                # Completed before a crash that came ahead of the commit: nothing to send.
                await self._uploaded(archive, target, key, check)
                return parts, True
            upload_id = await self._s3(self.store.create_upload, target, key)
            async with self._db.begin() as session:
                await session.execute(
                    update(Archive)
                    .where(Archive.id == archive.id)
                    .values(
                        upload_id=upload_id,
                        s3_endpoint=target.endpoint_url,
                        s3_bucket=target.bucket,
                        s3_key=key,
                        parts_uploaded=0,
                    )
                )
            archive.upload_id = upload_id
            parts = {}
        assert archive.upload_id is not None
        if parts is None:
            try:
                parts = await self._s3(self.store.list_parts, target, key, archive.upload_id)
            except S3Error as exc:
                if exc.code != "NoSuchUpload":
                    raise
                if check is not None and await self._s3(self.store.object_size, target, key) == (
                    check.size
                ):
                    await self._uploaded(archive, target, key, check)
                    return parts, True
                await self._forget_upload(archive.id)
                raise
            listed = len(parts)
            parts = await self._verified(path, parts, part_size)
            log.info(
                "archive %s: resuming upload, %d parts held, %d match the local file",
                archive.file_name,
                listed,
                len(parts),
            )
        size = check.size if check is not None else await asyncio.to_thread(_file_size, path)
        count = size // part_size if check is None else -(-size // part_size)
        if count > _MAX_PARTS:
            raise _Fatal(
                f"the recording needs more than {_MAX_PARTS} parts: raise "
                "SIMULCAST_ARCHIVE_PART_SIZE_BYTES for streams this long"
            )
        for number in range(1, count + 1):
            start = (number - 1) * part_size
            length = min(part_size, size - start)
            held = parts.get(number)
            if held is not None and held.size == length:
                continue
            data = await asyncio.to_thread(_read_range, path, start, length)
            parts[number] = await self._s3(
                self.store.upload_part, target, key, archive.upload_id, number, data
            )
            async with self._db.begin() as session:
                await session.execute(
                    update(Archive)
                    .where(Archive.id == archive.id)
                    .values(parts_uploaded=len(parts))
                )
        if check is None:
            return parts, False
        chosen = [parts[n] for n in range(1, count + 1)]
        await self._s3(self.store.complete, target, key, archive.upload_id, chosen)
        await self._uploaded(archive, target, key, check)
        return parts, True

    async def _verified(
        self, path: Path, parts: dict[int, Part], part_size: int
    ) -> dict[int, Part]:
        """The listed parts whose ETag matches the local bytes (the rest are sent again)."""
        size = await asyncio.to_thread(_file_size, path)
        good: dict[int, Part] = {}
        for number, part in parts.items():
            start = (number - 1) * part_size
            if start + part.size > size:
                continue
            if await asyncio.to_thread(_md5_etag, path, start, part.size) == part.etag:
                good[number] = part
        return good

    async def _forget_upload(self, archive_id: int) -> None:
        async with self._db.begin() as session:
            await session.execute(
                update(Archive).where(Archive.id == archive_id).values(upload_id=None)
            )

    async def _uploaded(
        self, archive: Archive, target: S3Target, key: str, check: RecordingCheck
    ) -> None:
        url = self.store.presigned_get(target, key, self._settings.archive_url_expiry_seconds)
        async with self._db.begin() as session:
            changed = await session.execute(
                update(Archive)
                .where(Archive.id == archive.id, Archive.status == archives.UPLOADING)
                .values(
                    status=archives.UPLOADED,
                    size_bytes=check.size,
                    duration_seconds=check.duration_seconds,
                    url=url,
                    uploaded_ms=now_ms(),
                    s3_endpoint=target.endpoint_url,
                    s3_bucket=target.bucket,
                    s3_key=key,
                    error=None,
                    failing_since_ms=None,
                )
            )
            if not getattr(changed, "rowcount", 0):
                return  # someone else finished it: its webhook was queued then
            session_id = await session.scalar(
                select(LiveSession.session_id).where(LiveSession.id == archive.session_pk)
            )
            queued = await webhooks.enqueue_event(
                session,
                account_id=archive.account_id,
                stream_id=archive.stream_id,
                event="recording.ready",
                data={
                    "fileName": archive.file_name,
                    "url": url,
                    "sizeBytes": check.size,
                    "durationSeconds": check.duration_seconds,
                    "streamKeyId": archive.stream_id,
                    "sessionId": session_id,
                },
            )
        if queued:
            self._on_webhook_enqueued()
        log.info("archive %s uploaded (%d bytes)", archive.file_name, check.size)
        if not self._settings.archive_keep_local and archive.local_path:
            await asyncio.to_thread(Path(archive.local_path).unlink, True)
            async with self._db.begin() as session:
                await session.execute(
                    update(Archive).where(Archive.id == archive.id).values(local_path=None)
                )

    async def _fail(self, archive_id: int, error: str, *, at_once: bool) -> bool:
        """Record a failed attempt; ``True`` when the archive is now ``failed``."""
        now = now_ms()
        budget_ms = int(self._settings.archive_upload_retry_seconds * 1000)
        async with self._db.begin() as session:
            archive = await session.get(Archive, archive_id)
            if archive is None or archive.status not in archives.PENDING:
                return True
            since = archive.failing_since_ms or now
            archive.failing_since_ms = since
            archive.error = error[:2000]
            if at_once or now - since >= budget_ms:
                archive.status = archives.FAILED
                archive.failed_ms = now
                log.warning("archive %s failed: %s", archive.file_name, error)
                return True
        log.info("archive %s: %s; retrying", archive.file_name, error)
        return False
