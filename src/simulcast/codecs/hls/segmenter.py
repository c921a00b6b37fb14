"""Cut a stream of MediaUnits into CMAF segments for HLS (sans-I/O).

Segments start at a video keyframe once ``target_duration`` has accumulated (audio-only streams
cut on duration alone). A segment holds every sample of each track decoded before the next cut;
audio that arrives ahead of the cutting keyframe but is timed after it is carried over.

A new or changed sequence header closes the open segment and produces a new
:class:`InitSegment`; the next segment is marked as a discontinuity only when the codec,
picture size or audio format changed (a re-sent or equivalent header, like a disconnect
slate's, just continues the timeline). Video then restarts at a keyframe so every segment
decodes on its own.

With a ``part_target`` (low-latency HLS) the open segment is also cut into parts: each part is
one CMAF fragment (moof+mdat) emitted as a :class:`Part` as soon as it is complete, at most
``part_target`` long, and the segment is exactly the concatenation of its parts, so a player
reading parts and one reading whole segments see the same bytes. Without it a segment is one
fragment, as before.
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
from simulcast.codecs.unit import Kind, MediaUnit

__all__ = ["InitSegment", "Part", "Segment", "SegmentEvent", "Segmenter"]

_VIDEO_CODECS = frozenset({"avc", "hevc", "av1"})
_AUDIO_CODECS = frozenset({"aac", "opus"})
_PART_SLACK_MS = 2


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


@dataclass(frozen=True, slots=True)
class Part:
    """One partial segment (a moof+mdat fragment) of the open segment, in order.

    ``independent``: it starts with a video keyframe (or has no video), so it decodes on its
    own; ``discontinuity``: its segment will be marked as one; ``start_dts_ms``: its first
    sample's time.
    """

    data: bytes
    duration_s: float
    independent: bool
    discontinuity: bool
    start_dts_ms: int


SegmentEvent = InitSegment | Part | Segment


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

    def __init__(self, target_duration: float = 2.0, part_target: float | None = None) -> None:
        self._target_ms = round(target_duration * 1000)
        self._part_ms = round(part_target * 1000) if part_target else None
        self._video_config: tuple[str, bytes] | None = None
        self._audio_config: tuple[str, bytes] | None = None
        self._dirty = False  # a sequence header changed since the last init segment
        self._video: _Lane | None = None
        self._audio: _Lane | None = None
        self._init_version = 0
        self._sequence = 0
        self._segment_start: int | None = None
        self._part_start: int | None = None
        self._parts: list[bytes] = []  # fragments of the open segment already emitted as parts
        self._fragments = 0
        self._last_video_dts: int | None = None
        self._samples_end = 0  # ms: where the open segment's emitted samples end
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
        elif self._part_due(unit.timestamp, self._last_video_dts):
            events += self._cut_part(unit.timestamp)
        self._last_video_dts = unit.timestamp
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
        if self._video is None:
            if self._due(unit.timestamp):
                events += self._close(unit.timestamp)
            elif self._part_due(unit.timestamp, self._audio_last_dts()):
                events += self._cut_part(unit.timestamp)
        self._append(self._audio, _Frame(unit.timestamp, 0, True, data))
        return events

    def _due(self, dts: int) -> bool:
        start = self._segment_start
        return start is not None and dts - start >= self._target_ms

    def _part_due(self, dts: int, previous: int | None) -> bool:
        """Whether the open part must end before a sample at ``dts``: with it, the part would
        outlast the part target (its duration estimated as the gap from the ``previous`` one).
        A few ms of slack absorb millisecond timestamps (30 fps: gaps of 33 and 34 ms), which
        would otherwise cut a frame early and leave a one-frame part before the keyframe."""
        start = self._part_start
        if self._part_ms is None or start is None or previous is None:
            return False
        return dts + max(dts - previous, 0) - start > self._part_ms + _PART_SLACK_MS

    def _audio_last_dts(self) -> int | None:
        frames = self._audio.frames if self._audio is not None else []
        return frames[-1].dts if frames else None

    def _append(self, lane: _Lane | None, frame: _Frame) -> None:
        if lane is None:
            return
        if self._segment_start is None:
            self._segment_start = frame.dts
        if self._part_start is None:
            self._part_start = frame.dts
        lane.frames.append(frame)

    def _cut_part(self, end: int) -> list[SegmentEvent]:
        """Emit the open part, ending at ``end`` ms; the segment stays open."""
        start = self._part_start
        fragment = self._fragment_until(end)
        if fragment is None or start is None:
            return []
        data, independent = fragment
        self._parts.append(data)
        return [Part(data, (end - start) / 1000, independent, self._discontinuity, start)]

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
        """Emit the open segment, ending at ``end`` ms (a cut) or at its last sample (None);
        with parts, its last part first."""
        start = self._segment_start
        part_start = self._part_start
        fragment = self._fragment_until(end)
        samples_end, self._samples_end = self._samples_end, 0
        self._segment_start = end
        parts, self._parts = self._parts, []
        if start is None or (fragment is None and not parts):
            return []
        segment_end = end if end is not None else max(start, samples_end)
        events: list[SegmentEvent] = []
        if fragment is not None:
            parts.append(fragment[0])
            if self._part_ms is not None and part_start is not None:
                duration = (segment_end - part_start) / 1000
                events.append(
                    Part(fragment[0], duration, fragment[1], self._discontinuity, part_start)
                )
        self._sequence += 1
        events.append(
            Segment(
                self._sequence,
                b"".join(parts),
                start,
                (segment_end - start) / 1000,
                self._discontinuity,
                self._init_version,
            )
        )
        self._discontinuity = False
        return events

    def _fragment_until(self, end: int | None) -> tuple[bytes, bool] | None:
        """The buffered samples timed before ``end`` (all of them when None) as one moof+mdat,
        and whether it decodes on its own. Audio timed at or after a cutting ``end`` stays
        buffered for the next fragment."""
        self._part_start = end
        fragments = []
        independent = self._video is None
        for lane in (self._video, self._audio):
            if lane is None or not lane.frames:
                continue
            frames, carried = lane.frames, []
            if lane is self._audio and end is not None and self._video is not None:
                carried = [f for f in frames if f.dts >= end]
                frames = [f for f in frames if f.dts < end]
            lane.frames = carried
            if not frames:
                continue
            if lane is self._video:
                independent = frames[0].keyframe
            # Audio frames have their own length: the last one before a cut keeps it (the next
            # one may be timed just after the cut), or the track would have a hole at every cut.
            following = carried[0].dts if carried else (None if lane is self._audio else end)
            fragments.append(self._fragment(lane, frames, following))
            last = frames[-1].dts + lane.last_duration * 1000 // lane.track.timescale
            self._samples_end = max(self._samples_end, last)
        if not fragments:
            return None
        self._fragments += 1
        return media_segment(self._fragments, fragments), independent

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
