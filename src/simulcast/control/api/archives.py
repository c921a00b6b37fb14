"""Archive endpoints: list recordings and retry failed uploads."""

from __future__ import annotations

from fastapi import APIRouter, Request

from simulcast.control.api.deps import Ctx, Manager
from simulcast.control.api.errors import with_message
from simulcast.control.archiver import Archiver
from simulcast.control.db.models import Archive
from simulcast.control.s3 import S3Error
from simulcast.control.schemas.archives import ArchiveOut, RecoverIn
from simulcast.control.schemas.common import ERRORS, SuccessMessage, error_responses
from simulcast.control.services import archives, ledger
from simulcast.control.topups import Lightning

router = APIRouter(prefix="/api/archives", tags=["Archives"], responses=ERRORS)

RECOVERY_STARTED = "Payment accepted. Archive recovery started."


def _archiver(request: Request) -> Archiver:
    archiver: Archiver = request.app.state.archiver
    return archiver


@router.get("", response_model=list[ArchiveOut], summary="List archives")
async def list_archives(principal: Manager, ctx: Ctx, request: Request) -> list[ArchiveOut]:
    """The account's recordings, newest first, with their upload status.

    ``url`` is a presigned GET URL (valid for ``SIMULCAST_ARCHIVE_URL_EXPIRY_SECONDS``), made
    fresh for each answer; ``error`` says why an upload failed or is being retried.
    """
    archiver = _archiver(request)
    async with ctx.read() as session:
        rows = await archives.for_account(session, account_id=principal.account_id)
    out = []
    for row in rows:
        archive = row.archive
        url = None
        if archive.status == archives.UPLOADED:
            try:
                url = archiver.presigned_url(archive, row.config)
            except S3Error:
                url = None
            url = url or archive.url
        out.append(
            ArchiveOut(
                id=archive.id,
                fileName=archive.file_name,
                streamKeyId=archive.stream_id,
                sessionId=row.session_id,
                status=archive.status,
                sizeBytes=archives.local_size(archive),
                durationSeconds=archive.duration_seconds,
                createdAt=archive.created_ms,
                partsUploaded=archive.parts_uploaded,
                error=archive.error,
                url=url,
            )
        )
    return out


@router.post(
    "/recover",
    response_model=SuccessMessage,
    summary="Retry a failed archive upload",
    responses=error_responses({402: "The wallet cannot pay"}),
)
async def recover_archive(
    body: RecoverIn, principal: Manager, ctx: Ctx, request: Request
) -> SuccessMessage:
    """Retry a ``failed`` upload from the local copy, for ``SIMULCAST_ARCHIVE_RECOVERY_FEE_SATS``.

    The fee is a ledger posting committed with the state change (402 when the wallet cannot pay
    it; nothing changes then); a short wallet is first topped up from the account's connected
    Lightning wallet (NWC), when there is one. 404 for a file that is not this account's, 409
    for one that is not ``failed`` or whose local copy is gone.
    """
    fee = ctx.settings.archive_recovery_fee_sats
    if fee > 0:
        # Check before paying anything: a top-up for a file that can't be recovered would move
        # the streamer's sats for nothing. The locked read below checks again.
        async with ctx.read() as session:
            _recoverable(
                await archives.by_file_name(
                    session, account_id=principal.account_id, file_name=body.fileName
                )
            )
        # A short wallet is topped up from the connected Lightning wallet first (NWC); the
        # posting below then settles the fee, or answers 402 when it still can't.
        await _lightning(request).ensure_funds(account_id=principal.account_id, sats=fee)
    async with ctx.db.begin() as session:
        archive = _recoverable(
            await archives.by_file_name(
                session, account_id=principal.account_id, file_name=body.fileName, lock=True
            )
        )
        result = await ledger.charge(
            session,
            account_id=principal.account_id,
            amount=fee,
            idempotency_key=f"{ledger.Kind.ARCHIVE_RECOVERY}:{archive.id}:{archive.failed_ms}",
            kind=ledger.Kind.ARCHIVE_RECOVERY,
            memo=f"recovery of {archive.file_name}",
        )
        if not result.paid:
            message = (
                f"Insufficient funds: recovering an archive costs {fee} sats, "
                f"the wallet holds {result.balance}"
            )
            raise with_message(402, message)
        archives.recover(archive)
    _archiver(request).notify()
    return SuccessMessage(message=RECOVERY_STARTED)


def _recoverable(archive: Archive | None) -> Archive:
    """The archive, if a recovery may start: else the 404/409 the endpoint answers."""
    if archive is None:
        raise with_message(404, "Archive not found")
    if archive.status != archives.FAILED:
        raise with_message(409, f"Archive is {archive.status}, not failed")
    if archive.local_path is None:
        raise with_message(409, "Archive's local copy no longer exists; it cannot be recovered")
    return archive


def _lightning(request: Request) -> Lightning:
    lightning: Lightning = request.app.state.lightning
    return lightning
