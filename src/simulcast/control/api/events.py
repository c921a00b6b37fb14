"""Live changes for dashboards as server-sent events (``sk_`` key or session)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter
from fastapi.responses import StreamingResponse

from simulcast.control.api.deps import Ctx, Manager
from simulcast.control.context import ControlContext
from simulcast.control.live_events import LiveEvent
from simulcast.control.schemas.common import ERRORS
from simulcast.engine import SessionInfo

router = APIRouter(prefix="/api", tags=["Events"], responses=ERRORS)

STATS_SECONDS = 2.0
"""How often the counters of live outputs (bitrate, bytes) are sent while a stream is live."""
HEARTBEAT_SECONDS = 15.0
"""A comment line this often keeps proxies from closing an idle stream."""


def _frame(event: str, data: dict[str, Any]) -> str:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


def _session_stats(info: SessionInfo) -> dict[str, Any]:
    return {
        "protecting": info.protecting,
        "protectionEndsAt": info.protection_ends_at_ms if info.protecting else None,
        "bytesIn": info.bytes_in,
        "destinations": {
            str(dest_id): {
                "state": out.state,
                "ready": out.ready,
                "bitrateKbps": round(out.bitrate_kbps, 1),
                "bytesSent": out.bytes_sent,
                "lastError": out.last_error,
                "droppedFrames": out.dropped_frames,
                "reconnects": out.reconnects,
            }
            for dest_id, out in info.outputs.items()
        },
    }


def _stats(ctx: ControlContext, account_id: int) -> dict[str, Any]:
    """The account's live sessions on this node, from the engine's memory (no query)."""
    return {
        str(stream_id): _session_stats(info)
        for stream_id, info in ctx.engine.sessions().items()
        if info.account_id == account_id
    }


async def _stream(ctx: ControlContext, account_id: int) -> AsyncIterator[str]:
    loop = asyncio.get_running_loop()
    with ctx.live_events.subscribe(account_id) as sub:
        yield "retry: 3000\n\n"
        yield _frame("hello", {"streams": _stats(ctx, account_id)})
        last_sent = last_stats = loop.time()
        while True:
            event: LiveEvent | None = None
            with contextlib.suppress(TimeoutError):
                event = await asyncio.wait_for(sub.queue.get(), STATS_SECONDS)
            frames = []
            if sub.overflowed:
                # Fell behind: the page reloads its state instead of replaying what it missed.
                while not sub.queue.empty():
                    sub.queue.get_nowait()
                sub.overflowed = False
                frames.append(_frame("resync", {}))
            elif event is not None:
                frames.append(_frame(event.kind, event.data))
            now = loop.time()
            if now - last_stats >= STATS_SECONDS:
                last_stats = now
                stats = _stats(ctx, account_id)
                if stats:
                    frames.append(_frame("stats", {"streams": stats}))
            if not frames and now - last_sent >= HEARTBEAT_SECONDS:
                frames.append(": keep-alive\n\n")
            if frames:
                last_sent = now
                yield "".join(frames)


# Left out of /openapi.json: an endless stream is no request/response contract to fuzz.
@router.get("/events", response_class=StreamingResponse, include_in_schema=False)
async def events(principal: Manager, ctx: Ctx) -> StreamingResponse:
    """A ``text/event-stream`` of the account's live changes, for dashboards.

    Events: ``hello`` (the live sessions now), ``stream`` (``streamId``, ``status``
    active/idle, ``reason`` when it ended, ``protecting``), ``output`` (``streamId``,
    ``destinationId``, ``state``, ``lastError``), ``stats`` every 2 s while something is live
    (per stream: ``protecting`` and per destination ``state``, ``ready`` (HLS playable),
    ``bitrateKbps``, ``bytesSent``, ``lastError``), and ``resync`` when the client fell behind
    and should reload. Fed by the media engine's events on this node, not by polling.
    """
    return StreamingResponse(
        _stream(ctx, principal.account_id),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
