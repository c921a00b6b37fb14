"""Streams and their destinations: keyword-only queries and changes (the caller commits)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from simulcast.control import security
from simulcast.control.db.models import ApiKey, Destination, LiveSession, Stream
from simulcast.control.services import auth
from simulcast.control.services.destinations import Sealer, normalize, output_spec
from simulcast.control.timeutil import now_ms
from simulcast.engine import OutputSpec


async def create_stream(session: AsyncSession, *, account_id: int, label: str) -> Stream:
    """Create a stream key for an account."""
    stream = Stream(
        account_id=account_id,
        stream_key=security.new_stream_key(),
        label=label,
        settings={},
        created_ms=now_ms(),
    )
    session.add(stream)
    await session.flush()
    return stream


def rotate_stream_key(stream: Stream) -> str:
    """Give a stream a new RTMP stream key; the old one is unknown from the commit on."""
    stream.stream_key = security.new_stream_key()
    return stream.stream_key


async def get_stream(session: AsyncSession, *, account_id: int, stream_id: int) -> Stream | None:
    """The account's stream with that id (``None`` if absent, deleted or someone else's)."""
    return await session.scalar(
        select(Stream).where(
            Stream.id == stream_id, Stream.account_id == account_id, Stream.deleted_ms.is_(None)
        )
    )


async def stream_by_key(session: AsyncSession, *, stream_key: str) -> Stream | None:
    """The live-able stream whose RTMP stream key is ``stream_key``."""
    return await session.scalar(
        select(Stream).where(
            Stream.stream_key_digest == security.digest(stream_key), Stream.deleted_ms.is_(None)
        )
    )


async def list_streams(session: AsyncSession, *, account_id: int) -> Sequence[Stream]:
    """The account's streams, oldest first."""
    return (
        await session.scalars(
            select(Stream)
            .where(Stream.account_id == account_id, Stream.deleted_ms.is_(None))
            .order_by(Stream.id)
        )
    ).all()


async def list_destinations(
    session: AsyncSession, *, stream_ids: Sequence[int]
) -> Sequence[Destination]:
    """Destinations (not deleted) of the given streams, in creation order."""
    if not stream_ids:
        return []
    return (
        await session.scalars(
            select(Destination)
            .where(Destination.stream_id.in_(stream_ids), Destination.deleted_ms.is_(None))
            .order_by(Destination.id)
        )
    ).all()


async def open_sessions(
    session: AsyncSession, *, stream_ids: Sequence[int]
) -> dict[int, LiveSession]:
    """The live (not ended) session of each given stream that has one."""
    if not stream_ids:
        return {}
    rows = await session.scalars(
        select(LiveSession).where(
            LiveSession.stream_id.in_(stream_ids), LiveSession.ended_ms.is_(None)
        )
    )
    return {row.stream_id: row for row in rows}


async def add_destination(
    session: AsyncSession,
    *,
    stream: Stream,
    dest_type: str,
    config: dict[str, Any],
    enabled: bool = True,
    seal: Sealer | None = None,
    dvr_max_seconds: int | None = None,
) -> tuple[Destination, str | None]:
    """Validate and add a destination; returns it and, for self-hosted, its new ``pk_`` key.

    Raises :class:`~simulcast.control.services.destinations.DestinationError` on a bad body.
    """
    url, platform, stored = normalize(dest_type, config, seal=seal, dvr_max_seconds=dvr_max_seconds)
    dest = Destination(
        stream_id=stream.id,
        account_id=stream.account_id,
        type=dest_type,
        platform=platform,
        url=url,
        enabled=enabled,
        config=stored,
        playback_token=security.new_token(18) if dest_type == "self-hosted" else None,
        created_ms=now_ms(),
    )
    session.add(dest)
    await session.flush()
    key = None
    if dest_type == "self-hosted":
        key = await auth.create_api_key(
            session, account_id=stream.account_id, kind="pk", destination_id=dest.id
        )
    return dest, key


async def get_destination(
    session: AsyncSession, *, account_id: int, destination_id: int, stream_id: int | None = None
) -> Destination | None:
    """The account's destination (optionally also required to belong to ``stream_id``)."""
    query = select(Destination).where(
        Destination.id == destination_id,
        Destination.account_id == account_id,
        Destination.deleted_ms.is_(None),
    )
    if stream_id is not None:
        query = query.where(Destination.stream_id == stream_id)
    return await session.scalar(query)


async def delete_destination(session: AsyncSession, *, destination: Destination) -> None:
    """Soft-delete a destination (history keeps it) and revoke its public keys."""
    stamp = now_ms()
    destination.deleted_ms = stamp
    await session.execute(
        update(ApiKey)
        .where(ApiKey.destination_id == destination.id, ApiKey.revoked_ms.is_(None))
        .values(revoked_ms=stamp)
    )


def update_destination(
    destination: Destination,
    *,
    enabled: bool | None,
    config: dict[str, Any] | None,
    seal: Sealer | None = None,
    dvr_max_seconds: int | None = None,
) -> None:
    """Change a destination's enabled flag and/or config (a new URL or key is re-validated)."""
    if config is not None:
        if destination.type == "cloud-archive":
            _, _, destination.config = normalize(
                "cloud-archive", config, previous=destination.config, seal=seal
            )
        elif destination.type == "self-hosted":
            _, _, destination.config = normalize(
                "self-hosted", {**destination.config, **config}, dvr_max_seconds=dvr_max_seconds
            )
        elif config.get("url") or config.get("key"):
            destination.url, destination.platform, destination.config = normalize(
                destination.type, config
            )
    if enabled is not None:
        destination.enabled = enabled


def apply_limits(stream: Stream, fields: dict[str, int | None]) -> None:
    """Set or clear (``None``) the given limits; any change unlocks a stream a limit locked."""
    if "maxSats" in fields:
        stream.max_sats = fields["maxSats"]
    if "maxDurationMinutes" in fields:
        stream.max_duration_minutes = fields["maxDurationMinutes"]
    if stream.locked_reason in ("limit_max_sats", "limit_max_duration"):
        stream.locked_reason = None


def limits_view(stream: Stream) -> dict[str, int]:
    """The ``limits`` object: only the limits that are set."""
    out: dict[str, int] = {}
    if stream.max_sats is not None:
        out["maxSats"] = stream.max_sats
    if stream.max_duration_minutes is not None:
        out["maxDurationMinutes"] = stream.max_duration_minutes
    return out


PROTECTION_DEFAULT: dict[str, Any] = {"enabled": True, "graceSeconds": 120}
"""Disconnect protection of a stream that never set it: on, two minutes."""


def protection_view(stream: Stream) -> dict[str, Any]:
    """The ``protection`` object: the stream's settings over the defaults."""
    return {**PROTECTION_DEFAULT, **(stream.settings or {}).get("protection", {})}


def apply_protection(stream: Stream, fields: dict[str, Any]) -> None:
    """Change the given protection fields (``enabled``, ``graceSeconds``); ``None`` skips one."""
    current = protection_view(stream)
    current.update({k: v for k, v in fields.items() if v is not None})
    # A new dict, so the JSON column sees the change.
    stream.settings = {**(stream.settings or {}), "protection": current}


def protection_seconds(stream: Stream) -> float:
    """The grace period a new session gets (0: not protected)."""
    view = protection_view(stream)
    return float(view["graceSeconds"]) if view["enabled"] else 0.0


def outputs_for(destinations: Sequence[Destination]) -> list[OutputSpec]:
    """The media outputs a session starts with: one per enabled destination."""
    specs = []
    for dest in destinations:
        if dest.enabled and dest.deleted_ms is None:
            spec = output_spec(dest.id, dest.type, dest.url, dest.config)
            if spec is not None:
                specs.append(spec)
    return specs
