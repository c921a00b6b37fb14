"""HLS packaging (sans-I/O): the CMAF segmenter and playlist rendering."""

from simulcast.codecs.hls.playlist import (
    PlaylistSegment,
    render_media_playlist,
    render_multivariant_playlist,
)
from simulcast.codecs.hls.segmenter import InitSegment, Segment, Segmenter, SegmentEvent

__all__ = [
    "InitSegment",
    "PlaylistSegment",
    "Segment",
    "SegmentEvent",
    "Segmenter",
    "render_media_playlist",
    "render_multivariant_playlist",
]
