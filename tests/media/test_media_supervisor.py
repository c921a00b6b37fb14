"""Supervisor: backoff with jitter, state transitions, counters, resume at a keyframe."""

from __future__ import annotations

import random

import pytest

from simulcast.engine import OutputSpec, OutputStatus
from simulcast.media.output import Output, OutputFailed, OutputLink, Supervisor
from simulcast.media.reader import Reader, ReaderClosed
from simulcast.media.stream import LiveStream
from simulcast.periodic import backoff_delay
from tests.support import eventually as wait_for
from tests.support.media_units import video, video_header


@pytest.mark.parametrize("attempt", range(1, 12))
def test_backoff_bounds(attempt: int) -> None:
    base = min(30.0, 2.0 ** (attempt - 1))
    for rng in (lambda: 0.0, lambda: 0.999999, random.random):
        delay = backoff_delay(attempt, 1.0, 30.0, rng)
        assert 1.0 <= delay <= 30.0
        assert max(1.0, base / 2) <= delay <= base


def test_backoff_jitter_spreads() -> None:
    delays = {round(backoff_delay(5, 1.0, 30.0), 3) for _ in range(50)}
    assert len(delays) > 10


class Scripted:
    """An output whose attempts follow a script: 'fail', 'live-then-fail', 'live', 'fatal'."""

    def __init__(self, script: list[str], seen: list[list[int]]) -> None:
        self.script = script
        self.seen = seen

    def __call__(self, spec: OutputSpec) -> Output:
        step = self.script.pop(0) if self.script else "live"
        seen = self.seen

        class Attempt(Output):
            async def run(self, reader: Reader, link: OutputLink) -> None:
                if step == "fail":
                    raise ConnectionRefusedError("refused")
                if step == "fatal":
                    raise OutputFailed("bad url")
                link.connected()
                got: list[int] = []
                seen.append(got)
                while True:
                    try:
                        unit = await reader.get()
                    except ReaderClosed:
                        return
                    got.append(unit.timestamp)
                    link.sent(unit.size)
                    if step == "live-then-fail" and len(got) >= 3:
                        raise ConnectionResetError("reset by peer")

        return Attempt()


def new_stream() -> LiveStream:
    return LiveStream(1, "s", gop_max_bytes=1_000_000, gop_max_seconds=4)


def start_supervisor(
    stream: LiveStream, factory: Scripted, changes: list[OutputStatus]
) -> Supervisor:
    """A supervisor of one RTMP output of ``stream`` (retries within 10-40 ms), started."""
    sup = Supervisor(
        OutputSpec(1, "rtmp", "rtmp://x/app/k"),
        factory,
        open_reader=lambda: stream.add_reader(max_bytes=1_000_000, max_seconds=4),
        close_reader=stream.remove_reader,
        retry_min_seconds=0.01,
        retry_max_seconds=0.04,
        on_change=changes.append,
        rng=lambda: 1.0,
    )
    sup.start()
    return sup


async def test_retry_then_live_then_reconnect_at_keyframe() -> None:
    stream = new_stream()
    stream.publish(video_header())
    stream.publish(video(0, key=True))
    seen: list[list[int]] = []
    changes: list[OutputStatus] = []
    sup = start_supervisor(
        stream, Scripted(["fail", "fail", "live-then-fail", "live"], seen), changes
    )
    await wait_for(lambda: len(seen) == 1)
    for ts in range(33, 200, 33):
        stream.publish(video(ts))
    await wait_for(lambda: len(seen) == 2 and sup.state == "live")
    stream.publish(video(300, key=True))
    await wait_for(lambda: len(seen[1]) >= 3)
    states = [c.state for c in changes]
    assert states == [
        "connecting", "retrying", "connecting", "retrying", "connecting", "live",
        "retrying", "connecting", "live",
    ]  # fmt: skip
    assert [c.attempt for c in changes if c.state == "retrying"] == [1, 2, 1]
    assert all(c.next_try_at_ms for c in changes if c.state == "retrying")
    assert changes[1].last_error == "refused"
    # Each attempt starts with the sequence header then a keyframe (ts 0: the GOP cache).
    assert seen[0][:2] == [0, 0]
    assert seen[1][:2] == [0, 0]
    # The drop is reported while retrying; live again clears it (no stale error on a live output).
    assert changes[6].state == "retrying" and changes[6].last_error == "reset by peer"
    status = sup.status()
    assert status.reconnects == 1 and status.bytes_sent > 0 and status.last_error is None
    await sup.stop()
    assert sup.state == "stopped" and changes[-1].state == "stopped"
    assert stream.readers == ()


async def test_fatal_error_fails_without_retry() -> None:
    stream = new_stream()
    changes: list[OutputStatus] = []
    sup = start_supervisor(stream, Scripted(["fatal"], []), changes)
    await wait_for(lambda: sup.state == "failed")
    assert sup.status().last_error == "bad url"
    assert stream.readers == ()
    await sup.stop()


async def test_stream_end_stops_retrying() -> None:
    stream = new_stream()
    changes: list[OutputStatus] = []
    sup = start_supervisor(stream, Scripted(["live"], []), changes)
    await wait_for(lambda: sup.state == "live")
    stream.close()
    await wait_for(lambda: sup._task is not None and sup._task.done())
    assert [c.state for c in changes] == ["connecting", "live"]
    await sup.stop()
