"""HLS playlist rendering (RFC 8216 / draft-pantos-hls-rfc8216bis), sans-I/O."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

__all__ = ["PlaylistSegment", "render_media_playlist", "render_multivariant_playlist"]


@dataclass(frozen=True, slots=True)
class PlaylistSegment:
    """A segment as listed in a media playlist.

    ``init_uri`` names its initialization segment (None: the playlist's default ``init_uri``);
    ``program_date_time`` is the wall-clock time of its first sample (timezone-aware).
    """

    uri: str
    duration_s: float
    discontinuity: bool = False
    init_uri: str | None = None
    program_date_time: datetime | None = None


def _date_time(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def render_media_playlist(
    segments: Sequence[PlaylistSegment],
    target_duration: float,
    media_sequence: int,
    discontinuity_sequence: int,
    init_uri: str,
    uri_suffix: str = "",
    ended: bool = False,
) -> str:
    """Render a media playlist of fMP4 segments.

    ``#EXT-X-TARGETDURATION`` is the ceiling of the longest segment, never below the
    configured target, so it stays stable across reloads in the usual case. ``uri_suffix`` is
    appended to every URI (init and segments), e.g. ``?apiKey=...``. ``#EXT-X-MAP`` is
    repeated whenever a segment's init segment differs from the previous one's.
    """
    longest = max((s.duration_s for s in segments), default=0.0)
    # EXTINF values are printed with 3 decimals; round first so 2.0004 does not become 3.
    target = max(math.ceil(target_duration), math.ceil(round(longest, 3)))
    lines = [
        "#EXTM3U",
        "#EXT-X-VERSION:7",
        f"#EXT-X-TARGETDURATION:{target}",
        f"#EXT-X-MEDIA-SEQUENCE:{media_sequence}",
        f"#EXT-X-DISCONTINUITY-SEQUENCE:{discontinuity_sequence}",
        "#EXT-X-INDEPENDENT-SEGMENTS",
    ]
    current_map: str | None = None
    for segment in segments:
        if segment.discontinuity:
            lines.append("#EXT-X-DISCONTINUITY")
        segment_map = segment.init_uri or init_uri
        if segment_map != current_map:
            lines.append(f'#EXT-X-MAP:URI="{segment_map}{uri_suffix}"')
            current_map = segment_map
        if segment.program_date_time is not None:
            lines.append(f"#EXT-X-PROGRAM-DATE-TIME:{_date_time(segment.program_date_time)}")
        lines.append(f"#EXTINF:{segment.duration_s:.3f},")
        lines.append(f"{segment.uri}{uri_suffix}")
    if ended:
        lines.append("#EXT-X-ENDLIST")
    return "\n".join(lines) + "\n"


def render_multivariant_playlist(
    uri: str,
    bandwidth: int,
    codecs: str,
    resolution: tuple[int, int] | None = None,
    frame_rate: float | None = None,
    uri_suffix: str = "",
) -> str:
    """Render a multivariant playlist with a single variant stream."""
    attributes = [f"BANDWIDTH={bandwidth}", f'CODECS="{codecs}"']
    if resolution is not None:
        attributes.append(f"RESOLUTION={resolution[0]}x{resolution[1]}")
    if frame_rate is not None:
        attributes.append(f"FRAME-RATE={frame_rate:.3f}")
    return "\n".join(
        (
            "#EXTM3U",
            "#EXT-X-VERSION:7",
            "#EXT-X-INDEPENDENT-SEGMENTS",
            f"#EXT-X-STREAM-INF:{','.join(attributes)}",
            f"{uri}{uri_suffix}",
            "",
        )
    )
