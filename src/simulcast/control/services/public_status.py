"""What the public (``pk_``) endpoints report: the stored facts behind a stream's status, and
what each live session has cost so far. Every function takes the caller's session and never
commits."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from simulcast.control.db.models import Destination, LiveSession, Stream
from simulcast.control.services import ledger, pricing, streams, usage
from simulcast.control.services.auth import Principal
from simulcast.settings import Settings


@dataclass(frozen=True, slots=True)
class StatusFacts:
    """The stored facts behind a status answer (live media state is read elsewhere)."""

    stream: Stream
    hosted: Destination | None
    """Its enabled self-hosted destination (a ``pk_`` key's own), if any."""
    live: LiveSession | None
    flushed_bytes: int
    """HLS bytes of the account's hour already in the database."""


async def status_facts(
    session: AsyncSession, *, principal: Principal, stream_id: int | None, hour_start: int
) -> StatusFacts | None:
    """The stream a status request is about, its self-hosted destination, open session and the
    account's stored bytes of the hour; ``None`` when there is no such stream.

    A ``pk_`` key names its own destination. An account-wide credential may pass ``stream_id``;
    without it, the account's live stream (most recent first), else its newest stream.
    """
    if principal.kind == "pk":
        assert principal.stream_id is not None
        stream = await streams.get_stream(
            session, account_id=principal.account_id, stream_id=principal.stream_id
        )
        if stream is None:
            return None
        dests = await streams.list_destinations(session, stream_ids=[stream.id])
        hosted = next((d for d in dests if d.id == principal.destination_id), None)
    else:
        if stream_id is not None:
            found = await streams.get_stream(
                session, account_id=principal.account_id, stream_id=stream_id
            )
        else:
            all_streams = await streams.list_streams(session, account_id=principal.account_id)
            open_rows = await streams.open_sessions(session, stream_ids=[s.id for s in all_streams])
            live_first = sorted(open_rows.values(), key=lambda row: row.started_ms, reverse=True)
            by_id = {s.id: s for s in all_streams}
            if live_first:
                found = by_id[live_first[0].stream_id]
            else:
                found = all_streams[-1] if all_streams else None
        if found is None:
            return None
        stream = found
        dests = await streams.list_destinations(session, stream_ids=[stream.id])
        hosted = next((d for d in dests if d.type == "self-hosted" and d.enabled), None)
    live = (await streams.open_sessions(session, stream_ids=[stream.id])).get(stream.id)
    used = await usage.hour_bytes(session, account_id=principal.account_id, hour_start=hour_start)
    return StatusFacts(stream, hosted, live, used)


@dataclass(frozen=True, slots=True)
class LiveCost:
    """One live session and what it has cost so far."""

    session: LiveSession
    label: str
    charged_sats: int
    rate_per_minute: int


async def live_costs(
    session: AsyncSession, *, settings: Settings, principal: Principal
) -> list[LiveCost]:
    """The live sessions the credential may see (a ``pk_`` key: its own stream), oldest first,
    with the sats charged to each and its current per-minute rate."""
    account_streams = await streams.list_streams(session, account_id=principal.account_id)
    if principal.kind == "pk":
        assert principal.stream_id is not None
        stream_ids = [principal.stream_id]
    else:
        stream_ids = [s.id for s in account_streams]
    live = await streams.open_sessions(session, stream_ids=stream_ids)
    charged = await ledger.charged_by_session(
        session, session_pks=[row.id for row in live.values()]
    )
    dests = await streams.list_destinations(session, stream_ids=list(live))
    labels = {s.id: s.label for s in account_streams}
    out = []
    for stream_id, row in sorted(live.items(), key=lambda kv: kv[1].started_ms):
        enabled = sum(
            1
            for d in dests
            if d.stream_id == stream_id and d.enabled and pricing.is_platform(d.type)
        )
        out.append(
            LiveCost(
                row,
                labels.get(stream_id, ""),
                charged.get(row.id, 0),
                pricing.rate_per_minute(settings, enabled),
            )
        )
    return out
