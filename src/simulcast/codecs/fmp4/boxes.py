"""ISO BMFF box primitives shared by the init and media segment writers."""

from __future__ import annotations

import struct

_HEADER = struct.Struct(">I4s")
_FULL_HEADER = struct.Struct(">I4sI")

UNITY_MATRIX = struct.pack(">9I", 0x10000, 0, 0, 0, 0x10000, 0, 0, 0, 0x40000000)


def box(kind: bytes, *payload: bytes) -> bytes:
    """Return a box of type ``kind`` holding the concatenated ``payload``."""
    body = b"".join(payload)
    return _HEADER.pack(8 + len(body), kind) + body


def full_box(kind: bytes, version: int, flags: int, *payload: bytes) -> bytes:
    """Return a FullBox (version and 24-bit flags before the payload)."""
    body = b"".join(payload)
    return _FULL_HEADER.pack(12 + len(body), kind, (version << 24) | flags) + body
