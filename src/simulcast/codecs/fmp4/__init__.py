"""CMAF / fragmented MP4 writer (sans-I/O): init segments and moof+mdat media segments."""

from simulcast.codecs.fmp4.init import init_segment
from simulcast.codecs.fmp4.segment import Sample, TrackFragment, media_segment
from simulcast.codecs.fmp4.tracks import AudioTrack, Track, VideoTrack, audio_track, video_track

__all__ = [
    "AudioTrack",
    "Sample",
    "Track",
    "TrackFragment",
    "VideoTrack",
    "audio_track",
    "init_segment",
    "media_segment",
    "video_track",
]
