"""Cut a stream of MediaUnits into CMAF segments for HLS (sans-I/O).

Segments start at a video keyframe once ``target_duration`` has accumulated (audio-only streams
cut on duration alone). A segment holds every sample of each track decoded before the next cut;
audio that arrives ahead of the cutting keyframe but is timed after it is carried over.

A new or changed sequence header closes the open segment and produces a new
:class:`InitSegment`; the next segment is marked as a discontinuity only when the codec,
picture size or audio format changed (a re-sent or equivalent header, like a disconnect
slate's, just continues the timeline). Video then restarts at a keyframe so every segment
decodes on its own.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from simulcast.codecs import flv
from simulcast.codecs.fmp4 import (
    AudioTrack,
    Sample,
    Track,
    TrackFragment,
    VideoTrack,
    audio_track,
    init_segment,
    media_segment,
    video_track,
)
from simulcast.media.unit import Kind, MediaUnit

__all__ = ["InitSegment", "Segment", "SegmentEvent", "Segmenter"]

_VIDEO_CODECS = frozenset({"avc", "hevc", "av1"})
_AUDIO_CODECS = frozenset({"aac", "opus"})


@dataclass(frozen=True, slots=True)
class InitSegment:
    """A new initialization segment; ``version`` counts (re)configurations from 1."""

    data: bytes
    version: int
    video: VideoTrack | None
    audio: AudioTrack | None

    @property
    def codecs(self) -> str:
        """The HLS ``CODECS`` attribute value, e.g. ``avc1.64001f,mp4a.40.2``."""
        return ",".join(t.codec_string for t in (self.video, self.audio) if t is not None)


@dataclass(frozen=True, slots=True)
class Segment:
    """One media segment (moof+mdat) that decodes with init segment ``init_version``."""

    sequence: int
    data: bytes
    start_dts_ms: int
    duration_s: float
    discontinuity: bool
    init_version: int
    independent: bool = True


SegmentEvent = InitSegment | Segment


@dataclass(slots=True)
class _Frame:
    dts: int  # ms
    cts: int  # ms
    keyframe: bool
    data: bytes


@dataclass(slots=True)
class _Lane:
    """Samples buffered for one track of the open segment."""

    track: Track
    frames: list[_Frame] = field(default_factory=list)
    last_duration: int = 0  # ticks, for the last sample when no later timestamp is known

    def ticks(self, ms: int) -> int:
        return (ms * self.track.timescale + 500) // 1000


class Segmenter:
    """Turns MediaUnits into :class:`InitSegment` and :class:`Segment` events."""

    def __init__(self, target_duration: float = 2.0) -> None:
        self._target_ms = round(target_duration * 1000)
        self._video_config: tuple[str, bytes] | None = None
        self._audio_config: tuple[str, bytes] | None = None
        self._dirty = False  # a sequence header changed since the last init segment
        self._video: _Lane | None = None
        self._audio: _Lane | None = None
        self._init_version = 0
        self._sequence = 0
        self._segment_start: int | None = None
        self._discontinuity = False
        self._need_keyframe = True

    def push(self, unit: MediaUnit) -> list[SegmentEvent]:
        """Consume one unit; raises ``FlvError``/``ConfigError`` for malformed media."""
        if unit.kind == Kind.VIDEO:
            return self._push_video(unit)
        if unit.kind == Kind.AUDIO and unit.payload:
            return self._push_audio(unit)
        return []

    def flush(self) -> list[SegmentEvent]:
        """End of stream: emit the partial segment, if any."""
        return self._close(None)

    def _push_video(self, unit: MediaUnit) -> list[SegmentEvent]:
        tag = flv.parse_video(unit.payload)
        if tag.track_id or tag.codec not in _VIDEO_CODECS:
            return []
        data = unit.payload[tag.data_offset : tag.data_end]
        if tag.is_sequence_header:
            if self._video_config != (tag.codec, data):
                video_track(tag.codec, data)  # validate now: fail on the header, not later
                self._video_config = (tag.codec, data)
                self._dirty = True
            return []
        if tag.packet_type != flv.VideoPacketType.CODED_FRAMES or self._video_config is None:
            return []
        events = self._reconfigure() if self._dirty else []
        if self._need_keyframe:
            if not tag.is_keyframe:
                return events
            self._need_keyframe = False
        if tag.is_keyframe and self._due(unit.timestamp):
            events += self._close(unit.timestamp)
        self._append(
            self._video, _Frame(unit.timestamp, tag.composition_time, tag.is_keyframe, data)
        )
        return events

    def _push_audio(self, unit: MediaUnit) -> list[SegmentEvent]:
        tag = flv.parse_audio(unit.payload)
        if tag.track_id or tag.codec not in _AUDIO_CODECS:
            return []
        data = unit.payload[tag.data_offset : tag.data_end]
        if tag.is_sequence_header:
            if self._audio_config != (tag.codec, data):
                audio_track(tag.codec, data)
                self._audio_config = (tag.codec, data)
                self._dirty = True
            return []
        if tag.packet_type != flv.AudioPacketType.CODED_FRAMES or self._audio_config is None:
            return []
        events = self._reconfigure() if self._dirty else []
        if self._video is None and self._due(unit.timestamp):
            events += self._close(unit.timestamp)
        self._append(self._audio, _Frame(unit.timestamp, 0, True, data))
        return events

    def _due(self, dts: int) -> bool:
        start = self._segment_start
        return start is not None and dts - start >= self._target_ms

    def _append(self, lane: _Lane | None, frame: _Frame) -> None:
        if lane is None:
            return
        if self._segment_start is None:
            self._segment_start = frame.dts
        lane.frames.append(frame)

    def _reconfigure(self) -> list[SegmentEvent]:
        events = self._close(None)
        self._dirty = False
        video = video_track(*self._video_config, track_id=1) if self._video_config else None
        audio = audio_track(*self._audio_config, track_id=2) if self._audio_config else None
        shape = _shape(self._video, self._audio)
        self._video = _Lane(video) if video else None
        self._audio = _Lane(audio) if audio else None
        tracks = [track for track in (video, audio) if track is not None]
        self._init_version += 1
        # Same codecs, size and audio format (e.g. a slate encoded to match): a new init
        # segment, but the timeline simply continues.
        self._discontinuity = self._init_version > 1 and shape != _shape(self._video, self._audio)
        self._need_keyframe = video is not None
        events.append(InitSegment(init_segment(tracks), self._init_version, video, audio))
        return events

    def _close(self, end: int | None) -> list[SegmentEvent]:
        """Emit the open segment, ending at ``end`` ms (a cut) or at its last sample (None)."""
        start = self._segment_start
        lanes = [lane for lane in (self._video, self._audio) if lane is not None and lane.frames]
        if start is None or not lanes:
            return []
        fragments = []
        segment_end = start
        carried: list[_Frame] = []
        for lane in lanes:
            frames = lane.frames
            if lane is self._audio and end is not None and self._video is not None:
                # Audio timed at or after the cutting keyframe belongs to the next segment.
                carried = [f for f in frames if f.dts >= end]
                frames = [f for f in frames if f.dts < end]
            if not frames:
                continue
            following = carried[0].dts if carried else end
            fragments.append(self._fragment(lane, frames, following))
            last = frames[-1]
            segment_end = max(
                segment_end, last.dts + lane.last_duration * 1000 // lane.track.timescale
            )
        if end is not None:
            segment_end = end
        if self._audio is not None:
            self._audio.frames = carried
        if self._video is not None:
            self._video.frames = []
        self._segment_start = end
        if not fragments:
            return []
        self._sequence += 1
        segment = Segment(
            self._sequence,
            media_segment(self._sequence, fragments),
            start,
            (segment_end - start) / 1000,
            self._discontinuity,
            self._init_version,
        )
        self._discontinuity = False
        return [segment]

    def _fragment(self, lane: _Lane, frames: list[_Frame], following: int | None) -> TrackFragment:
        ticks = [lane.ticks(f.dts) for f in frames]
        if following is not None:
            ticks.append(lane.ticks(following))
        durations = [max(b - a, 0) for a, b in itertools.pairwise(ticks)]
        if len(durations) < len(frames):
            durations.append(lane.last_duration or _default_duration(lane.track))
        lane.last_duration = durations[-1]
        samples = [
            Sample(f.data, d, lane.ticks(f.cts), f.keyframe)
            for f, d in zip(frames, durations, strict=True)
        ]
        return TrackFragment(lane.track.track_id, ticks[0], samples)


def _shape(video: _Lane | None, audio: _Lane | None) -> tuple[object, ...]:
    """What a player must be told about (a discontinuity) when it changes."""
    v = video.track if video is not None else None
    a = audio.track if audio is not None else None
    return (
        (v.codec, v.width, v.height) if isinstance(v, VideoTrack) else None,
        (a.codec, a.sample_rate, a.channels) if isinstance(a, AudioTrack) else None,
    )


def _default_duration(track: Track) -> int:
    if isinstance(track, AudioTrack):
        return track.frame_duration
    return round(track.timescale / (track.frame_rate or 30))
