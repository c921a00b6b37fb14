"""What every receiving SRT connection does, publisher (listener side) or pull (caller side).

Drives a sans-I/O :class:`~simulcast.codecs.srt.receiver.Receiver` on the event loop: datagrams
in, its control packets out, its timer armed at :meth:`Receiver.next_deadline`, delivered
payloads demuxed from MPEG-TS into the hub's units. Subclasses say where datagrams go, where
units go and what ending means.
"""

from __future__ import annotations

import asyncio
import logging

from simulcast import metrics
from simulcast.codecs.mpegts import TsDemuxer, TsError
from simulcast.codecs.srt.receiver import Receiver, State
from simulcast.codecs.unit import MediaUnit

log = logging.getLogger("simulcast.ingest.srt")

_TIMER_SLACK_S = 0.002


class SrtReceiving:
    """One SRT connection we receive MPEG-TS on."""

    def __init__(self, loop: asyncio.AbstractEventLoop, addr: tuple[str, int]) -> None:
        self._loop = loop
        self.addr = addr
        self._receiver: Receiver | None = None
        self._demuxer = TsDemuxer()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = float("inf")
        self._end: tuple[str, bool] | None = None

    # -- for subclasses ------------------------------------------------------------------------

    def _send(self, datagram: bytes) -> None:
        """Send a datagram to the peer."""
        raise NotImplementedError

    def _units(self, units: list[MediaUnit]) -> None:
        """Demuxed units (one timer period's worth) for the session."""
        raise NotImplementedError

    def close(self, reason: str, *, explicit: bool) -> None:
        """End the connection: ``explicit`` when the peer said goodbye (or we ended it)."""
        raise NotImplementedError

    def _begin(self, receiver: Receiver) -> None:
        """The handshake is done: receive with ``receiver``."""
        self._receiver = receiver
        self._schedule()

    def _stop(self) -> None:
        """Tell the peer we close, count what the connection saw, disarm the timer."""
        if self._receiver is not None:
            self._count(self._receiver)
            self._receiver.close(self._loop.time())
            for datagram in self._receiver.datagrams_to_send():
                self._send(datagram)
        if self._timer is not None:
            self._timer.cancel()

    # -- datagrams and timer -------------------------------------------------------------------

    def _receive(self, data: bytes) -> None:
        receiver = self._receiver
        if receiver is None or self._end is not None:
            return
        # Most datagrams are data in order: nothing to send, deliver or re-arm for them.
        if receiver.receive(data, self._loop.time()):
            self._after(receiver)

    def _after(self, receiver: Receiver) -> None:
        for datagram in receiver.datagrams_to_send():
            self._send(datagram)
        payloads = receiver.deliver()
        if payloads:
            self._media(payloads)
        if self._end is not None:
            return
        if receiver.state is State.SHUTDOWN:
            self._media([], end=True)
            self.close("publisher_disconnected", explicit=True)
        elif receiver.state is State.TIMED_OUT:
            log.warning("closing SRT %s:%s: peer stalled (no data)", *self.addr)
            self.close("publisher_stalled", explicit=False)
        else:
            self._schedule()

    def _media(self, payloads: list[bytes], *, end: bool = False) -> None:
        try:
            # One timer period's payloads at once: the demuxer appends whole runs of packets.
            units = self._demuxer.feed(b"".join(payloads))
            if end:
                units += self._demuxer.flush()
        except TsError as exc:
            log.warning("closing SRT %s:%s: malformed input: %s", *self.addr, exc)
            metrics.INGEST_REJECTED.labels("malformed").inc()
            self.close("protocol_error", explicit=False)
            return
        if units:
            self._units(units)

    def _schedule(self) -> None:
        assert self._receiver is not None
        deadline = self._receiver.next_deadline()
        if deadline is None or deadline >= self._timer_at - _TIMER_SLACK_S:
            return  # the armed timer comes first; it re-arms
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = deadline
        self._timer = self._loop.call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        # A loop may run a timer a little before its deadline by its own clock (uvloop's ticks
        # in milliseconds and rounds delays): it ran for that deadline, so that is the time to
        # work at. Otherwise what is due waits, and the timer is re-armed at once, over and
        # over until the clock ticks.
        deadline = self._timer_at
        self._timer = None
        self._timer_at = float("inf")
        if self._receiver is None or self._end is not None:
            return
        self._receiver.on_timer(max(self._loop.time(), deadline))
        self._after(self._receiver)

    def _count(self, receiver: Receiver) -> None:
        stats = receiver.stats
        for event, value in (
            ("received", stats.received),
            ("gaps", stats.gaps),
            ("recovered", stats.recovered),
            ("reordered", stats.reordered),
            ("dropped", stats.dropped),
            ("ts_discontinuity", self._demuxer.discontinuities),
            ("undecryptable", stats.undecryptable),
            ("rekeyed", stats.rekeyed),
        ):
            metrics.SRT_PACKETS.labels(event).inc(value)
        log.info(
            "SRT %s:%s ended: %s packets, %s recovered, %s reordered, %s dropped, %s TS gaps",
            *self.addr,
            stats.received,
            stats.recovered,
            stats.reordered,
            stats.dropped,
            self._demuxer.discontinuities,
        )
