"""Archive endpoints: list recordings and retry failed uploads."""

from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy import select

from simulcast.control.api.deps import Ctx, Manager
from simulcast.control.api.errors import ApiError, not_found
from simulcast.control.db.models import Archive
from simulcast.control.schemas.archives import ArchiveOut, RecoverIn
from simulcast.control.schemas.common import ERRORS, SuccessMessage

router = APIRouter(prefix="/api/archives", tags=["Archives"], responses=ERRORS)  # type: ignore[arg-type]


@router.get("", response_model=list[ArchiveOut], summary="List archives")
async def list_archives(principal: Manager, ctx: Ctx) -> list[ArchiveOut]:
    """The account's recordings, newest first."""
    async with ctx.read() as session:
        rows = await session.scalars(
            select(Archive)
            .where(Archive.account_id == principal.account_id)
            .order_by(Archive.id.desc())
        )
        return [
            ArchiveOut(
                id=a.id,
                fileName=a.file_name,
                streamKeyId=a.stream_id,
                status=a.status,
                sizeBytes=a.size_bytes,
                durationSeconds=a.duration_seconds,
                url=a.url,
                createdAt=a.created_ms,
            )
            for a in rows
        ]


@router.post("/recover", response_model=SuccessMessage, summary="Retry a failed archive upload")
async def recover_archive(body: RecoverIn, principal: Manager, ctx: Ctx) -> SuccessMessage:
    """Queue a failed upload again. A self-hosted server charges no network fee for this."""
    async with ctx.db.begin() as session:
        archive = await session.scalar(
            select(Archive).where(
                Archive.account_id == principal.account_id, Archive.file_name == body.fileName
            )
        )
        if archive is None:
            raise not_found("Archive")
        if archive.status != "failed":
            raise ApiError(409, f"Archive is {archive.status}, not failed")
        archive.status = "uploading"
    return SuccessMessage(message="Archive recovery started.")
