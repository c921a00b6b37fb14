"""HLS playlist rendering (RFC 8216 / draft-pantos-hls-rfc8216bis), sans-I/O.

Low-latency HLS (rfc8216bis sections 4.4.3.7-4.4.5.2, 6.2.5): partial segments, preload hints,
blocking playlist reload and delta updates; :func:`reload_readiness` decides a blocking request.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum

__all__ = [
    "LowLatency",
    "PlaylistPart",
    "PlaylistSegment",
    "Readiness",
    "ReloadRequest",
    "awaited_position",
    "reload_readiness",
    "render_media_playlist",
    "render_multivariant_playlist",
]

PART_LISTED_TARGET_DURATIONS = 3
"""Parts are listed for the segments that start within this many target durations of the
playlist end (rfc8216bis: EXT-X-PART tags SHOULD be removed past three target durations)."""
SKIP_TARGET_DURATIONS = 6
"""CAN-SKIP-UNTIL, in target durations: the smallest the spec allows, so deltas stay short."""


@dataclass(frozen=True, slots=True)
class PlaylistPart:
    """A partial segment: a resource of its own, ``independent`` if it starts on a keyframe."""

    uri: str
    duration_s: float
    independent: bool = False


@dataclass(frozen=True, slots=True)
class PlaylistSegment:
    """A segment as listed in a media playlist.

    ``init_uri`` names its initialization segment (None: the playlist's default ``init_uri``);
    ``program_date_time`` is the wall-clock time of its first sample (timezone-aware).
    ``parts`` are its partial segments (low latency). ``uri`` None is the segment still being
    written, known only by its parts: it may only be last.
    """

    uri: str | None
    duration_s: float
    discontinuity: bool = False
    init_uri: str | None = None
    program_date_time: datetime | None = None
    parts: tuple[PlaylistPart, ...] = ()


@dataclass(frozen=True, slots=True)
class LowLatency:
    """What a low-latency playlist adds: the part target (seconds), the URI of the next part
    (``EXT-X-PRELOAD-HINT``), and whether delta updates are offered."""

    part_target: float
    preload_hint_uri: str | None
    can_skip: bool = True


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
    low_latency: LowLatency | None = None,
    skip: bool = False,
) -> str:
    """Render a media playlist of fMP4 segments.

    ``#EXT-X-TARGETDURATION`` is the ceiling of the longest segment, never below the
    configured target, so it stays stable across reloads in the usual case. ``uri_suffix`` is
    appended to every URI (init, segments and parts), e.g. ``?apiKey=...``. ``#EXT-X-MAP`` is
    repeated whenever a segment's init segment differs from the previous one's.

    With ``low_latency``: ``EXT-X-SERVER-CONTROL`` (blocking reload, ``PART-HOLD-BACK`` of
    three part targets, ``CAN-SKIP-UNTIL`` of six target durations), ``EXT-X-PART-INF``, the
    parts of the segments within three target durations of the end, and the preload hint.
    ``skip`` (a ``_HLS_skip`` request) replaces the segments older than ``CAN-SKIP-UNTIL`` by
    one ``EXT-X-SKIP`` (a delta update); segments and the window are otherwise unchanged.
    """
    complete = [s for s in segments if s.uri is not None]
    longest = max((s.duration_s for s in complete), default=0.0)
    # EXTINF values are printed with 3 decimals; round first so 2.0004 does not become 3.
    target = max(math.ceil(target_duration), math.ceil(round(longest, 3)))
    skipped = 0
    if low_latency is not None and low_latency.can_skip and skip:
        skipped = _skippable(complete, SKIP_TARGET_DURATIONS * target)
    lines = [
        "#EXTM3U",
        f"#EXT-X-VERSION:{9 if skipped else 7}",
        f"#EXT-X-TARGETDURATION:{target}",
    ]
    if low_latency is not None:
        # Every part must fit the part target: a part a frame longer (timestamps in ms) raises it.
        longest_part = max((p.duration_s for s in segments for p in s.parts), default=0.0)
        part_target = max(low_latency.part_target, round(longest_part, 3))
        control = f"CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK={3 * part_target:.3f}"
        if low_latency.can_skip:
            control += f",CAN-SKIP-UNTIL={SKIP_TARGET_DURATIONS * target:.1f}"
        lines.append(f"#EXT-X-SERVER-CONTROL:{control}")
        lines.append(f"#EXT-X-PART-INF:PART-TARGET={part_target:.3f}")
    lines += [
        f"#EXT-X-MEDIA-SEQUENCE:{media_sequence}",
        f"#EXT-X-DISCONTINUITY-SEQUENCE:{discontinuity_sequence}",
        "#EXT-X-INDEPENDENT-SEGMENTS",
    ]
    if skipped:
        lines.append(f"#EXT-X-SKIP:SKIPPED-SEGMENTS={skipped}")
    listed = segments[skipped:]
    with_parts = _with_parts(listed, PART_LISTED_TARGET_DURATIONS * target)
    current_map: str | None = None
    for index, segment in enumerate(listed):
        if segment.discontinuity:
            lines.append("#EXT-X-DISCONTINUITY")
        segment_map = segment.init_uri or init_uri
        if segment_map != current_map:
            lines.append(f'#EXT-X-MAP:URI="{segment_map}{uri_suffix}"')
            current_map = segment_map
        if segment.program_date_time is not None:
            lines.append(f"#EXT-X-PROGRAM-DATE-TIME:{_date_time(segment.program_date_time)}")
        if low_latency is not None and index >= with_parts:
            lines += (
                f"#EXT-X-PART:DURATION={part.duration_s:.3f},"
                f'URI="{part.uri}{uri_suffix}"{",INDEPENDENT=YES" if part.independent else ""}'
                for part in segment.parts
            )
        if segment.uri is not None:
            lines.append(f"#EXTINF:{segment.duration_s:.3f},")
            lines.append(f"{segment.uri}{uri_suffix}")
    if low_latency is not None and low_latency.preload_hint_uri is not None and not ended:
        lines.append(
            f'#EXT-X-PRELOAD-HINT:TYPE=PART,URI="{low_latency.preload_hint_uri}{uri_suffix}"'
        )
    if ended:
        lines.append("#EXT-X-ENDLIST")
    return "\n".join(lines) + "\n"


def _skippable(complete: Sequence[PlaylistSegment], skip_until: float) -> int:
    """How many leading segments end at least ``skip_until`` seconds before the playlist's end."""
    remaining = sum(s.duration_s for s in complete)
    count = 0
    for segment in complete:
        remaining -= segment.duration_s
        if remaining < skip_until:
            break
        count += 1
    return count


def _with_parts(segments: Sequence[PlaylistSegment], span: float) -> int:
    """Index of the first segment whose parts are listed: those that start within the last
    ``span`` seconds."""
    elapsed = 0.0
    for index in range(len(segments) - 1, -1, -1):
        elapsed += segments[index].duration_s
        if round(elapsed, 3) > span:
            return index + 1
    return 0


class Readiness(Enum):
    """What to do with a playlist request."""

    READY = "ready"
    WAIT = "wait"
    BAD = "bad"


@dataclass(frozen=True, slots=True)
class ReloadRequest:
    """The delivery directives of a playlist request (``_HLS_msn``, ``_HLS_part``,
    ``_HLS_skip``)."""

    msn: int | None = None
    part: int | None = None
    skip: bool = False

    @classmethod
    def parse(cls, msn: str | None, part: str | None, skip: str | None) -> ReloadRequest:
        """Parse the query values; raises ``ValueError`` for a malformed one (a 400)."""
        numbers = []
        for value in (msn, part):
            if value is not None and not (value.isascii() and value.isdigit() and len(value) < 16):
                raise ValueError("_HLS_msn and _HLS_part must be non-negative integers")
            numbers.append(int(value) if value is not None else None)
        if skip not in (None, "YES", "v2"):
            raise ValueError("_HLS_skip must be YES or v2")
        return cls(numbers[0], numbers[1], skip is not None)


def awaited_position(
    request: ReloadRequest, next_msn: int, previous_parts: int
) -> tuple[int, int] | None:
    """The playlist position ``(open segment's msn, its parts)`` from which ``request`` is
    satisfied; None when it asks for nothing.

    Parts are ordered segment by segment, so a complete segment satisfies any of its parts. A
    part index past the end of the last complete segment (``previous_parts`` parts) stands for
    the next segment's first part, as a client that saw that segment still open would ask.
    """
    msn, part = request.msn, request.part
    if msn is None:
        return None
    if part is None:
        return msn + 1, 0
    if msn == next_msn - 1 and part >= previous_parts:
        return next_msn, 1
    return msn, part + 1


def reload_readiness(
    request: ReloadRequest,
    next_msn: int,
    open_parts: int,
    part_target: float | None,
    previous_parts: int = 0,
) -> Readiness:
    """Whether a playlist with segments up to ``next_msn - 1`` complete (the last of them in
    ``previous_parts`` parts) and ``open_parts`` parts of segment ``next_msn`` satisfies
    ``request`` now, later, or never (rfc8216bis 6.2.5.2).

    A request more than one segment ahead of the next (``_HLS_msn`` beyond the last segment
    plus two), a part further ahead of the last listed part than the Advance Part Limit (three
    seconds' worth, at least three parts), or ``_HLS_part`` without ``_HLS_msn`` is BAD (400).
    """
    msn, part = request.msn, request.part
    if msn is None:
        return Readiness.BAD if part is not None else Readiness.READY
    if msn > next_msn + 1:
        return Readiness.BAD
    if part is not None:
        if part_target is None:
            return Readiness.BAD  # parts asked of a playlist that has none
        limit = max(3, math.ceil(3 / part_target))
        if msn == next_msn + 1:
            ahead = part + 1
        elif msn == next_msn:
            ahead = part - (open_parts - 1)
        elif msn == next_msn - 1:
            ahead = part - (previous_parts - 1) - open_parts
        else:
            ahead = 0
        if ahead > limit:
            return Readiness.BAD
    awaited = awaited_position(request, next_msn, previous_parts)
    assert awaited is not None
    return Readiness.READY if awaited <= (next_msn, open_parts) else Readiness.WAIT


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
