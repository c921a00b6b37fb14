"""Builders of synthetic media units for the media-plane unit tests."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from simulcast.media.unit import Kind, MediaUnit

METADATA_PAYLOAD = b"\x02\x00\x0aonMetaData\x08\x00\x00\x00\x00\x00\x00\x09"


def video(ts: int, *, key: bool = False, size: int = 100) -> MediaUnit:
    """An AVC coded frame (keyframe or inter frame) of ``size`` bytes."""
    head = b"\x17\x01\x00\x00\x00" if key else b"\x27\x01\x00\x00\x00"
    return MediaUnit(Kind.VIDEO, ts, head + bytes(max(0, size - 5)), keyframe=key)


def audio(ts: int, *, size: int = 20) -> MediaUnit:
    """An AAC raw frame of ``size`` bytes."""
    return MediaUnit(Kind.AUDIO, ts, b"\xaf\x01" + bytes(max(0, size - 2)))


def video_header(ts: int = 0, tag: bytes = b"\x01") -> MediaUnit:
    """An AVC sequence header."""
    return MediaUnit(Kind.VIDEO, ts, b"\x17\x00\x00\x00\x00" + tag, sequence_header=True)


def audio_header(ts: int = 0) -> MediaUnit:
    """An AAC sequence header."""
    return MediaUnit(Kind.AUDIO, ts, b"\xaf\x00\x12\x10", sequence_header=True)


def metadata(ts: int = 0) -> MediaUnit:
    """An onMetaData data unit."""
    return MediaUnit(Kind.DATA, ts, METADATA_PAYLOAD)


async def eventually(predicate: Callable[[], object], within: float = 2.0) -> None:
    """Wait until ``predicate()`` is true, failing after ``within`` seconds."""
    async with asyncio.timeout(within):
        while not predicate():  # noqa: ASYNC110 -- polling state owned by other tasks
            await asyncio.sleep(0.005)
