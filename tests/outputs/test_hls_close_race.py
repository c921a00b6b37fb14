"""A session's HLS directory removed under an in-flight segment write (issue 20): no error
logged, no directory left behind."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from simulcast.codecs.hls import Segment
from simulcast.outputs import hls
from simulcast.outputs.hls import HlsChannel
from tests.support.hls import config, feed


@pytest.mark.parametrize("write_fails", [False, True])
async def test_close_during_a_segment_write_is_quiet(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    write_fails: bool,
) -> None:
    channel = HlsChannel(1, tmp_path, config())
    channel.begin_period()
    await feed(channel, 2)
    loop = asyncio.get_running_loop()
    original = hls._write_atomically

    def racing_write(path: Path, data: bytes) -> None:
        # The session ends (close() on the loop) while this worker thread writes.
        asyncio.run_coroutine_threadsafe(channel.close(), loop).result()
        if write_fails:
            raise FileNotFoundError(2, "No such file or directory", str(path))
        original(path, data)  # succeeds: it recreates the directory

    monkeypatch.setattr(hls, "_write_atomically", racing_write)
    caplog.set_level(logging.INFO, logger="simulcast")
    seq = channel._next_sequence
    await channel.add(Segment(seq, bytes(100), seq * 1000, 1.0, False, 1), 1010.0)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not channel.directory.exists()
