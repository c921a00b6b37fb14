"""The slate: what outputs get while a protected session has no publisher (pure, no I/O).

:class:`ParamsProbe` learns a live stream's parameters from its sequence headers (and, when the
SPS has no timing info, from video timestamps) as :class:`SlateParams`, the cache key of an
encoded slate. :class:`Slate` is one encoded loop (a single GOP starting with a keyframe, plus
silent AAC frames) parsed from the encoder's FLV output; :meth:`Slate.units` replays it forever
with timestamps continuing from any base, so the session timeline never goes back.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass

from simulcast.codecs import flv
from simulcast.codecs.aac import parse_aac_config
from simulcast.codecs.avc import ConfigError, parse_avc_config
from simulcast.codecs.unit import Kind, MediaUnit

__all__ = ["ParamsProbe", "Slate", "SlateParams"]

_FPS_SAMPLES = 15  # video frames measured when the SPS does not say its frame rate
_MAX_FPS = 120.0
_AUDIO_WAIT_MS = 1000  # a stream without an audio header by then is treated as video-only
_AAC_FRAME = 1024
_AAC_PRIMING_FRAMES = 2  # the encoder's first frames carry its start-up delay: not looped


@dataclass(frozen=True, slots=True)
class SlateParams:
    """What the slate must match for decoders to continue without a reset.

    ``profile``/``level`` are the H.264 ``profile_idc``/``level_idc``; ``width == 0`` means
    audio-only and ``sample_rate == 0`` video-only.
    """

    width: int = 0
    height: int = 0
    fps: float = 30.0
    profile: int = 100
    level: int = 31
    sample_rate: int = 0
    channels: int = 0

    @property
    def has_video(self) -> bool:
        """Whether the slate carries video."""
        return self.width > 0

    @property
    def has_audio(self) -> bool:
        """Whether the slate carries audio."""
        return self.sample_rate > 0


class ParamsProbe:
    """Learns :class:`SlateParams` from one publisher's units (AVC video and/or AAC audio).

    :meth:`feed` returns the parameters once, as soon as they are known; streams with another
    codec never produce any (they are protected, but without a slate).
    """

    def __init__(self) -> None:
        self._video: tuple[int, int, int, int, float | None] | None = None
        self._audio: tuple[int, int] | None = None
        self._unsupported = False
        self._video_ts: list[int] = []
        self._first_ts: int | None = None
        self._done = False

    def feed(self, unit: MediaUnit) -> SlateParams | None:
        """Observe one unit (as published, before any rebasing); the params when first known."""
        if self._done or unit.kind == Kind.DATA or not unit.payload:
            return None
        try:
            self._observe(unit)
        except (flv.FlvError, ConfigError):
            self._unsupported = True
        if self._unsupported:
            self._done = True
            return None
        params = self._params(unit.timestamp)
        if params is not None:
            self._done = True
        return params

    def _observe(self, unit: MediaUnit) -> None:
        if self._first_ts is None and not unit.sequence_header:
            self._first_ts = unit.timestamp
        if unit.kind == Kind.VIDEO:
            tag = flv.parse_video(unit.payload)
            if tag.is_sequence_header:
                if tag.codec != "avc":
                    self._unsupported = True
                    return
                avc = parse_avc_config(unit.payload[tag.data_offset : tag.data_end])
                self._video = (avc.width, avc.height, avc.profile, avc.level, avc.frame_rate)
            elif tag.packet_type == flv.VideoPacketType.CODED_FRAMES:
                self._video_ts.append(unit.timestamp)
        else:
            tag_a = flv.parse_audio(unit.payload)
            if tag_a.is_sequence_header:
                if tag_a.codec != "aac":
                    self._unsupported = True
                    return
                aac = parse_aac_config(unit.payload[tag_a.data_offset : tag_a.data_end])
                self._audio = (aac.sample_rate, aac.channels or 2)

    def _params(self, now_ts: int) -> SlateParams | None:
        waited = self._first_ts is not None and now_ts - self._first_ts >= _AUDIO_WAIT_MS
        if self._audio is None and not waited:
            return None
        rate, channels = self._audio or (0, 0)
        if self._video is None:
            return SlateParams(sample_rate=rate, channels=channels) if waited and rate else None
        width, height, profile, level, fps = self._video
        if fps is None or not 1 <= fps <= _MAX_FPS:
            fps = self._measured_fps()
            if fps is None:
                return None
        return SlateParams(width, height, round(fps, 3), profile, level, rate, channels)

    def _measured_fps(self) -> float | None:
        stamps = sorted(self._video_ts)
        if len(stamps) < _FPS_SAMPLES:
            return None
        span = stamps[-1] - stamps[0]
        if span <= 0:
            return None
        return min(_MAX_FPS, max(1.0, (len(stamps) - 1) * 1000 / span))


@dataclass(frozen=True, slots=True)
class Slate:
    """One encoded slate loop: sequence headers, one GOP of video, silent audio frames."""

    params: SlateParams
    video_header: bytes | None
    audio_header: bytes | None
    video: tuple[bytes, ...]
    audio: tuple[bytes, ...]

    @classmethod
    def from_flv(cls, params: SlateParams, data: bytes) -> Slate:
        """Parse the encoder's FLV file; raise ``ValueError`` when it is not a usable loop."""
        video_header = audio_header = None
        video: list[bytes] = []
        audio: list[bytes] = []
        for type_id, _ts, body in flv.iter_tags(data):
            if type_id == Kind.VIDEO:
                keyframe, header = flv.classify(Kind.VIDEO, body)
                if header:
                    video_header = body
                elif keyframe and video:
                    break  # the loop is exactly one GOP
                elif keyframe or video:
                    video.append(body)
            elif type_id == Kind.AUDIO and body:
                if flv.classify(Kind.AUDIO, body)[1]:
                    audio_header = body
                else:
                    audio.append(body)
        audio = audio[_AAC_PRIMING_FRAMES:]
        if params.has_video and (video_header is None or not video):
            raise ValueError("slate encoder produced no video GOP")
        if params.has_audio and (audio_header is None or not audio):
            raise ValueError("slate encoder produced no audio")
        return cls(params, video_header, audio_header, tuple(video), tuple(audio))

    def headers(self, timestamp: int) -> list[MediaUnit]:
        """The slate's sequence headers, timed at ``timestamp`` (video first)."""
        out = []
        if self.video_header is not None:
            out.append(MediaUnit(Kind.VIDEO, timestamp, self.video_header, sequence_header=True))
        if self.audio_header is not None:
            out.append(MediaUnit(Kind.AUDIO, timestamp, self.audio_header, sequence_header=True))
        return out

    def units(self, base: int) -> Iterator[MediaUnit]:
        """The loop replayed forever from ``base`` ms, video and audio merged in time order.

        Each track is timed from its own exact frame duration, so rounding never drifts.
        """
        tracks: list[Iterator[MediaUnit]] = []
        if self.params.has_video and self.video:
            tracks.append(_track(Kind.VIDEO, self.video, base, 1000 / self.params.fps))
        if self.params.has_audio and self.audio:
            step = _AAC_FRAME * 1000 / self.params.sample_rate
            tracks.append(_track(Kind.AUDIO, self.audio, base, step))
        return _merge(tracks)


def _track(kind: Kind, frames: tuple[bytes, ...], base: int, step_ms: float) -> Iterator[MediaUnit]:
    """``frames`` looped forever, frame ``k`` at ``base + k * step_ms`` (frame 0 starts a GOP)."""
    for k, body in enumerate(itertools.cycle(frames)):
        keyframe = kind == Kind.VIDEO and k % len(frames) == 0
        yield MediaUnit(kind, base + round(k * step_ms), body, keyframe=keyframe)


def _merge(tracks: list[Iterator[MediaUnit]]) -> Iterator[MediaUnit]:
    heads = [next(track) for track in tracks]
    while heads:
        index = min(range(len(heads)), key=lambda i: heads[i].timestamp)
        yield heads[index]
        heads[index] = next(tracks[index])
