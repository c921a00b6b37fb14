"""Turn stored rows plus live media state into the seed's response shapes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from simulcast.control.db.models import Destination, LiveSession, Stream
from simulcast.control.schemas.streams import (
    DestinationOut,
    ProtectionOut,
    StreamOut,
    StreamSummary,
)
from simulcast.control.services.destinations import ARCHIVE_FIELDS, mask_url
from simulcast.control.services.streams import limits_view, protection_view
from simulcast.control.timeutil import now_ms
from simulcast.engine import SessionInfo


def hls_path(token: str) -> str:
    """The path of a self-hosted destination's playlist."""
    return f"/hls/{token}/index.m3u8"


def destination_view(
    dest: Destination, live: SessionInfo | None, base_url: str, upload_error: str | None = None
) -> DestinationOut:
    """A destination with its masked URL and, while live, its output state and counters.

    ``upload_error``: a cloud-archive destination's recording records fine but its upload
    fails (e.g. credentials refused): shown as ``lastError`` while the session runs.
    """
    status = live.outputs.get(dest.id) if live else None
    archive = {}
    if dest.type == "cloud-archive":
        archive = {k: dest.config.get(k) for k in ARCHIVE_FIELDS}
    if dest.type == "self-hosted" and dest.playback_token:
        url: str | None = base_url + hls_path(dest.playback_token)
    elif dest.url:
        url = mask_url(dest.url)
    else:
        url = None
    return DestinationOut(
        id=dest.id,
        type=dest.type,
        platform=dest.platform,
        enabled=dest.enabled,
        url=url,
        createdAt=dest.created_ms,
        mode=dest.config.get("mode"),
        dvrWindowSeconds=dest.config.get("dvrWindowSeconds"),
        lowLatency=dest.config.get("lowLatency", True) if dest.type == "self-hosted" else None,
        playbackToken=dest.playback_token,
        **archive,
        state=status.state if status else ("disabled" if not dest.enabled else "idle"),
        attempt=status.attempt if status else 0,
        nextTryAt=status.next_try_at_ms if status else None,
        lastError=(status.last_error or upload_error) if status else None,
        bytesSent=status.bytes_sent if status else 0,
        bitrateKbps=round(status.bitrate_kbps, 1) if status else 0.0,
        droppedFrames=status.dropped_frames if status else 0,
        reconnects=status.reconnects if status else 0,
        protecting=status is not None and live is not None and live.protecting,
    )


def stream_summary(stream: Stream, live: LiveSession | None) -> StreamSummary:
    """A row of the stream list."""
    return StreamSummary(
        id=stream.id,
        streamKey=stream.stream_key,
        label=stream.label,
        status="active" if live else "idle",
        createdAt=stream.created_ms,
        locked=stream.locked_reason is not None,
        lockReason=stream.locked_reason,
    )


def stream_view(
    stream: Stream,
    live: LiveSession | None,
    media: SessionInfo | None,
    destinations: Sequence[Destination],
    base_url: str,
    upload_errors: Mapping[int, str] | None = None,
) -> StreamOut:
    """The full stream object of ``GET /api/streams/{id}``."""
    errors = upload_errors or {}
    ends = media.protection_ends_at_ms if media is not None and media.protecting else None
    return StreamOut(
        **stream_summary(stream, live).model_dump(),
        limits=limits_view(stream),
        startedAt=live.started_ms if live else None,
        sessionId=live.session_id if live else None,
        destinations=[destination_view(d, media, base_url, errors.get(d.id)) for d in destinations],
        protection=ProtectionOut(**protection_view(stream)),
        protecting=ends is not None,
        protectionSecondsLeft=max(0, -(-(ends - now_ms()) // 1000)) if ends is not None else None,
        srtPassphrase=stream.srt_passphrase,
    )
