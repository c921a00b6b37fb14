"""The loop side of an SRT connection: timers on a loop whose clock runs them a little early."""

from __future__ import annotations

import struct
from collections.abc import Callable

from simulcast.codecs.srt.packet import ControlPacket, ControlType, parse
from simulcast.codecs.srt.receiver import Receiver
from simulcast.codecs.unit import MediaUnit
from simulcast.ingest.srt_receiving import SrtReceiving


class Handle:
    def __init__(self, when: float, callback: Callable[[], None]) -> None:
        self.when = when
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class Loop:
    """The part of an event loop a connection uses, on a clock the test sets."""

    def __init__(self) -> None:
        self.now = 0.0
        self.handles: list[Handle] = []

    def time(self) -> float:
        return self.now

    def call_at(self, when: float, callback: Callable[[], None]) -> Handle:
        handle = Handle(when, callback)
        self.handles.append(handle)
        return handle

    def armed(self) -> Handle:
        (handle,) = [h for h in self.handles if not h.cancelled]
        return handle


class Connection(SrtReceiving):
    def __init__(self, loop: Loop) -> None:
        super().__init__(loop, ("127.0.0.1", 9000))  # type: ignore[arg-type]
        self.sent: list[bytes] = []

    def _send(self, datagram: bytes) -> None:
        self.sent.append(datagram)

    def _units(self, units: list[MediaUnit]) -> None:
        pass

    def close(self, reason: str, *, explicit: bool) -> None:
        self._end = (reason, explicit)
        self._stop()


def test_a_timer_run_early_by_the_loop_clock_does_what_is_due() -> None:
    # uvloop's clock ticks in milliseconds and it rounds delays: a timer may run when
    # loop.time() is still up to a millisecond before the deadline it was armed for.
    loop = Loop()
    connection = Connection(loop)
    receiver = Receiver(
        socket_id=5, peer_socket_id=9, isn=100, latency_ms=120, flow_window=8192, now=0.0
    )
    connection._begin(receiver)
    connection._receive(struct.pack(">IIII", 100, 0xE0000001, 0, 5) + b"x")
    timer = loop.armed()
    assert timer.when == 0.01  # the ACK period
    loop.handles.remove(timer)
    loop.now = 0.0093
    timer.callback()
    sent = [parse(d) for d in connection.sent]
    assert [p.type for p in sent if isinstance(p, ControlPacket)] == [ControlType.ACK]
    assert loop.armed().when > 0.011  # the next one, not the same deadline again at once
