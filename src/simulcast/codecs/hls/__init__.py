"""HLS packaging (sans-I/O): the CMAF segmenter and playlist rendering."""

from simulcast.codecs.hls.playlist import (
    LowLatency,
    PlaylistPart,
    PlaylistSegment,
    Readiness,
    ReloadRequest,
    awaited_position,
    reload_readiness,
    render_media_playlist,
    render_multivariant_playlist,
)
from simulcast.codecs.hls.segmenter import InitSegment, Part, Segment, Segmenter, SegmentEvent

__all__ = [
    "InitSegment",
    "LowLatency",
    "Part",
    "PlaylistPart",
    "PlaylistSegment",
    "Readiness",
    "ReloadRequest",
    "Segment",
    "SegmentEvent",
    "Segmenter",
    "awaited_position",
    "reload_readiness",
    "render_media_playlist",
    "render_multivariant_playlist",
]
