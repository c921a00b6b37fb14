"""Read back what the fMP4 writer wrote (sans-I/O): box headers, timescales, fragment times.

Used to check a recording after the fact: where its last complete fragment ends (a process
killed mid-write leaves a partial one) and how long it plays.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

__all__ = ["BoxHeader", "box_header", "children", "fragment_times", "track_timescales"]

BoxHeader = tuple[int, bytes, int]
"""``(size, type, header length)``; size 0 means "to the end of the file"."""


def box_header(data: bytes) -> BoxHeader | None:
    """The header at the start of ``data`` (8 or 16 bytes), or ``None`` if it is incomplete."""
    if len(data) < 8:
        return None
    size, kind = struct.unpack_from(">I4s", data)
    if size == 1:
        if len(data) < 16:
            return None
        return struct.unpack_from(">Q", data, 8)[0], kind, 16
    return size, kind, 8


def children(payload: bytes) -> Iterator[tuple[bytes, bytes]]:
    """The ``(type, body)`` of each box inside a container's payload."""
    pos = 0
    while pos + 8 <= len(payload):
        header = box_header(payload[pos:])
        if header is None:
            return
        size, kind, head = header
        size = size or len(payload) - pos
        if size < head or pos + size > len(payload):
            return
        yield kind, payload[pos + head : pos + size]
        pos += size


def _child(payload: bytes, kind: bytes) -> bytes | None:
    return next((body for k, body in children(payload) if k == kind), None)


def track_timescales(moov_body: bytes) -> dict[int, int]:
    """Track id -> media timescale, from the body of a ``moov`` box."""
    out: dict[int, int] = {}
    for kind, trak in children(moov_body):
        if kind != b"trak":
            continue
        tkhd, mdia = _child(trak, b"tkhd"), _child(trak, b"mdia")
        mdhd = _child(mdia, b"mdhd") if mdia is not None else None
        if tkhd is None or mdhd is None:
            continue
        track_id = struct.unpack_from(">I", tkhd, 20 if tkhd[0] == 1 else 12)[0]
        timescale = struct.unpack_from(">I", mdhd, 20 if mdhd[0] == 1 else 12)[0]
        out[track_id] = timescale
    return out


def fragment_times(moof_body: bytes) -> dict[int, tuple[int, int]]:
    """Track id -> ``(base decode time, summed sample durations)`` of one ``moof`` box."""
    out: dict[int, tuple[int, int]] = {}
    for kind, traf in children(moof_body):
        if kind != b"traf":
            continue
        tfhd = _child(traf, b"tfhd")
        if tfhd is None or len(tfhd) < 8:
            continue
        flags = int.from_bytes(tfhd[1:4], "big")
        track_id = struct.unpack_from(">I", tfhd, 4)[0]
        pos = 8 + (8 if flags & 0x01 else 0) + (4 if flags & 0x02 else 0)
        default_duration = struct.unpack_from(">I", tfhd, pos)[0] if flags & 0x08 else 0
        tfdt = _child(traf, b"tfdt")
        base = 0
        if tfdt is not None:
            base = struct.unpack_from(">Q" if tfdt[0] == 1 else ">I", tfdt, 4)[0]
        total = 0
        for child_kind, trun in children(traf):
            if child_kind == b"trun":
                total += _trun_duration(trun, default_duration)
        out[track_id] = (base, total)
    return out


def _trun_duration(trun: bytes, default_duration: int) -> int:
    flags = int.from_bytes(trun[1:4], "big")
    count = int(struct.unpack_from(">I", trun, 4)[0])
    pos = 8 + (4 if flags & 0x01 else 0) + (4 if flags & 0x04 else 0)
    fields = [bit for bit in (0x100, 0x200, 0x400, 0x800) if flags & bit]
    if not flags & 0x100:
        return default_duration * count
    stride = 4 * len(fields)
    if pos + stride * count > len(trun):
        raise ValueError("trun truncated")
    return sum(int(struct.unpack_from(">I", trun, pos + i * stride)[0]) for i in range(count))
