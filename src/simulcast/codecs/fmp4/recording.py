"""Keep one recording's tracks fixed while its sequence headers change (sans-I/O).

A fragmented MP4 file has one ``moov``, written first, so its tracks and their decoder
configurations cannot change later, while a live session's can: a disconnect-protection slate
or a returning publisher brings its own SPS/PPS. :class:`TrackGate` sits in front of the
segmenter: it passes the headers the file starts with and, when an H.264 configuration
changes later, swallows the new header and carries its parameter sets in band (prepended to
the next keyframe), which decoders apply from that frame on (even a new picture size). What
this does not carry (another codec, an HEVC or AV1 configuration change, another NALU length
size, an audio format change, a track that was not there when the file began) is dropped until
the original configuration returns.
"""

from __future__ import annotations

import dataclasses

from simulcast.codecs import flv
from simulcast.codecs.aac import parse_aac_config
from simulcast.codecs.avc import ConfigError, parse_avc_config
from simulcast.codecs.unit import Kind, MediaUnit

__all__ = ["TrackGate", "in_band_parameter_sets"]


def in_band_parameter_sets(record: bytes, nal_length_size: int) -> bytes:
    """The SPS and PPS of an AVC configuration record as length-prefixed NAL units."""
    config = parse_avc_config(record)
    return b"".join(
        len(nalu).to_bytes(nal_length_size, "big") + nalu for nalu in config.sps + config.pps
    )


def _audio_shape(codec: str, data: bytes) -> tuple[object, ...]:
    if codec == "aac":
        aac = parse_aac_config(data)
        return codec, aac.sample_rate, aac.channels
    return codec, data


class TrackGate:
    """Filters one session's units so that a single fMP4 file can hold all of them."""

    def __init__(self) -> None:
        self._headers: dict[Kind, tuple[str, bytes]] = {}
        self._frozen = False  # media flowed: the file's tracks are what ``_headers`` holds
        self._current: dict[Kind, tuple[str, bytes]] = {}
        self._in_band: bytes | None = None  # parameter sets for the next video keyframe
        self._blocked: set[Kind] = set()

    def admit(self, unit: MediaUnit) -> MediaUnit | None:
        """``unit`` as the segmenter should see it, or ``None`` to drop it."""
        if unit.kind not in (Kind.VIDEO, Kind.AUDIO) or not unit.payload:
            return unit
        try:
            tag = (
                flv.parse_video(unit.payload)
                if unit.kind == Kind.VIDEO
                else flv.parse_audio(unit.payload)
            )
        except flv.FlvError:
            return unit  # the segmenter skips what it cannot parse
        if tag.track_id:
            return unit
        data = unit.payload[tag.data_offset : tag.data_end]
        if tag.is_sequence_header:
            return self._header(unit, tag.codec, data)
        if unit.kind in self._blocked:
            return None
        if not self._frozen:
            self._frozen = True
            self._current = dict(self._headers)
        if unit.kind not in self._headers:
            return None  # a track the file does not have
        if self._in_band is not None and unit.kind == Kind.VIDEO:
            if not unit.keyframe:
                return None  # frames of the new configuration decode from its first keyframe
            if tag.data_end != len(unit.payload):
                return unit
            payload = unit.payload[: tag.data_offset] + self._in_band + data
            self._in_band = None
            return dataclasses.replace(unit, payload=payload, wire={})
        return unit

    def _header(self, unit: MediaUnit, codec: str, data: bytes) -> MediaUnit | None:
        kind = unit.kind
        if not self._frozen:
            self._headers[kind] = (codec, data)
            return unit
        first = self._headers.get(kind)
        if first is None or self._current.get(kind) == (codec, data):
            return None
        self._current[kind] = (codec, data)
        if first == (codec, data):
            self._blocked.discard(kind)
            if kind == Kind.VIDEO:
                self._in_band = self._video_in_band(codec, data, first[1])
            return None
        try:
            if kind == Kind.VIDEO:
                self._in_band = self._video_in_band(codec, data, first[1])
                compatible = self._in_band is not None
            else:
                compatible = _audio_shape(codec, data) == _audio_shape(*first)
        except ConfigError:
            compatible = False
        if compatible:
            self._blocked.discard(kind)
        else:
            self._blocked.add(kind)
        return None

    @staticmethod
    def _video_in_band(codec: str, record: bytes, first_record: bytes) -> bytes | None:
        if codec != "avc":
            return None
        first = parse_avc_config(first_record)
        if parse_avc_config(record).nal_length_size != first.nal_length_size:
            return None
        return in_band_parameter_sets(record, first.nal_length_size)
