"""The one media unit type that flows from ingest through the hub to every output.

A unit carries an RTMP audio/video/data message body exactly as the publisher sent it (the FLV tag
body, legacy or Enhanced RTMP), so relaying to RTMP destinations never re-encodes anything. Outputs
that need another wire format (HLS fMP4) parse ``payload`` with ``simulcast.codecs.flv``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any


class Kind(enum.IntEnum):
    """What a unit carries; the values are the RTMP message type ids."""

    AUDIO = 8
    VIDEO = 9
    DATA = 18  # AMF0 data message (onMetaData, onTextData, ...)


@dataclass(frozen=True, slots=True)
class MediaUnit:
    """One timed media message.

    ``timestamp`` is the decode timestamp in milliseconds on the session's timeline (already
    unwrapped from RTMP's 32-bit clock, so it only grows within one publish). ``keyframe`` is true
    for video units that start a GOP. ``sequence_header`` is true for codec configuration units
    (AVC/HEVC/AV1 decoder configuration records, AAC AudioSpecificConfig, Enhanced RTMP
    SequenceStart); these are not media and never dropped. ``wire`` caches serialized forms of
    this unit, keyed by the output format (e.g. ``("rtmp", chunk_size, msid)``), so a message is
    serialized once per format and the same ``bytes`` object goes to every output of that format.
    """

    kind: Kind
    timestamp: int
    payload: bytes
    keyframe: bool = False
    sequence_header: bool = False
    wire: dict[Any, bytes] = field(default_factory=dict, compare=False, repr=False, hash=False)

    @property
    def size(self) -> int:
        """Payload size in bytes (what queues are bounded by)."""
        return len(self.payload)
