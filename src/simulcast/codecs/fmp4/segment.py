"""CMAF media segment: moof (mfhd, traf per track with tfhd/tfdt/trun) + mdat."""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass

from simulcast.codecs.fmp4.boxes import box, full_box

__all__ = ["Sample", "TrackFragment", "media_segment"]

# trun flags: data-offset, sample duration, size, flags and composition time offset present.
_TRUN_FLAGS = 0x000001 | 0x000100 | 0x000200 | 0x000400 | 0x000800
_TFHD_DEFAULT_BASE_IS_MOOF = 0x020000
_SYNC_FLAGS = 0x02000000  # sample_depends_on = 2 (independent)
_NON_SYNC_FLAGS = 0x01010000  # sample_depends_on = 1, sample_is_non_sync_sample
_SAMPLE_ENTRY = struct.Struct(">IIIi")
_TRUN_HEADER_SIZE = 20  # box header, version/flags, sample_count, data_offset
_MDAT_HEADER_SIZE = 8


@dataclass(frozen=True, slots=True)
class Sample:
    """One access unit: durations and offsets are in the track's timescale."""

    data: bytes
    duration: int
    composition_offset: int = 0
    sync: bool = True


@dataclass(frozen=True, slots=True)
class TrackFragment:
    """The samples of one track in a segment, starting at ``base_decode_time``."""

    track_id: int
    base_decode_time: int
    samples: Sequence[Sample]


def media_segment(sequence_number: int, fragments: Sequence[TrackFragment]) -> bytes:
    """Return moof + mdat; sample data of all fragments follows in ``fragments`` order."""
    mfhd = full_box(b"mfhd", 0, 0, struct.pack(">I", sequence_number))
    # Everything but the trun headers, whose data offsets depend on the final moof size.
    heads: list[bytes] = []
    tables: list[bytes] = []
    for fragment in fragments:
        heads.append(
            full_box(b"tfhd", 0, _TFHD_DEFAULT_BASE_IS_MOOF, struct.pack(">I", fragment.track_id))
            + full_box(b"tfdt", 1, 0, struct.pack(">Q", fragment.base_decode_time))
        )
        tables.append(
            b"".join(
                _SAMPLE_ENTRY.pack(
                    s.duration,
                    len(s.data),
                    _SYNC_FLAGS if s.sync else _NON_SYNC_FLAGS,
                    s.composition_offset,
                )
                for s in fragment.samples
            )
        )
    moof_size = (
        8
        + len(mfhd)
        + sum(
            8 + len(head) + _TRUN_HEADER_SIZE + len(table)
            for head, table in zip(heads, tables, strict=True)
        )
    )
    offset = moof_size + _MDAT_HEADER_SIZE
    trafs = []
    for fragment, head, table in zip(fragments, heads, tables, strict=True):
        trun = full_box(
            b"trun", 1, _TRUN_FLAGS, struct.pack(">Ii", len(fragment.samples), offset), table
        )
        trafs.append(box(b"traf", head, trun))
        offset += sum(len(s.data) for s in fragment.samples)
    moof = box(b"moof", mfhd, *trafs)
    return moof + box(b"mdat", *(s.data for f in fragments for s in f.samples))
