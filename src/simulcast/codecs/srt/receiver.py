"""One accepted SRT connection, receiving side: reliability and timing, sans-I/O.

Datagrams go to :meth:`Receiver.receive` with the current time (seconds, any monotonic clock);
:meth:`datagrams_to_send` returns ACKs, NAKs, keepalives; :meth:`deliver` returns the payloads
whose TSBPD time has come, in sequence order. :meth:`next_deadline` says when
:meth:`on_timer` must run next (ACK period, NAK report, delivery, keepalive, peer timeout).
:meth:`Receiver.receive` says whether any of that may have changed: most datagrams are data in
order that change nothing the owner must act on, and the owner skips the rest for them.

Reliability follows the SRT draft: a gap in sequence numbers is reported at once in a NAK and
again every NAK interval while it lasts; the sender retransmits. Each packet is delivered at
``base + timestamp + latency`` (TSBPD), up to :data:`DELIVERY_BATCH` early so that deliveries
(and the owner's wake-ups and output writes) come in batches rather than one per packet; a
missing packet whose successors are due is given up (too-late drop, counted in ``dropped``) so
the stream keeps its latency.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

from simulcast.codecs.srt.crypto import Decryptor
from simulcast.codecs.srt.packet import (
    HEADER_SIZE,
    SEQ_MASK,
    ControlPacket,
    ControlType,
    Extension,
    control,
    decode_loss_list,
    encode_loss_list,
    parse,
    seq_add,
    seq_diff,
)

ACK_PERIOD = 0.01
DELIVERY_BATCH = 0.01
"""Packets due within this much of a delivery go with it (the same period as ACKs)."""
KEEPALIVE_PERIOD = 1.0
_MIN_NAK_INTERVAL = 0.02
_NAK_MAX_RANGES = 150  # one NAK stays well under the MTU
_US = 1_000_000
_DATA_HEADER = struct.Struct(">III")
_REXMIT = 0x04000000
_KEY_FLAGS = 0x18000000
_KEY_FLAGS_SHIFT = 27


class State(enum.Enum):
    """Connection state."""

    OPEN = "open"
    SHUTDOWN = "shutdown"  # the peer said goodbye
    TIMED_OUT = "timed_out"  # nothing from the peer for the idle timeout
    CLOSED = "closed"  # we closed it


@dataclass(slots=True)
class Stats:
    """Counters for metrics and tests."""

    received: int = 0
    retransmitted: int = 0
    duplicates: int = 0
    gaps: int = 0  # sequence numbers found missing on arrival (lost or merely reordered)
    recovered: int = 0  # missing ones that came by retransmission (really lost, then repaired)
    reordered: int = 0  # missing ones whose original arrived late
    dropped: int = 0  # given up on: too late, dropped by the sender, or the sender left
    undecryptable: int = 0  # encrypted with a key we do not have (or sent clear to us)
    rekeyed: int = 0  # in-band key material messages (the sender announcing its next key)
    naks_sent: int = 0
    acks_sent: int = 0
    bytes_received: int = 0


class Receiver:
    """The receive side of one SRT connection (live mode, message per packet)."""

    def __init__(
        self,
        *,
        socket_id: int,
        peer_socket_id: int,
        isn: int,
        latency_ms: int,
        flow_window: int,
        now: float,
        idle_timeout: float = 5.0,
        decryptor: Decryptor | None = None,
    ) -> None:
        self.socket_id = socket_id
        self.peer_socket_id = peer_socket_id
        self.latency = latency_ms / 1000
        self.flow_window = flow_window
        self.idle_timeout = idle_timeout
        self.state = State.OPEN
        self.stats = Stats()
        self._decryptor = decryptor
        self._start = now
        self._next = isn  # next sequence number to deliver
        self._expected = isn  # one past the highest sequence number received
        # seq -> (sender timestamp unwrapped, payload); it plays at _play_base + timestamp.
        self._buffer: dict[int, tuple[int, bytes]] = {}
        self._losses: set[int] = set()
        self._out: list[bytes] = []
        self._delivered: list[bytes] = []
        self._play_base: float | None = None  # local time sender timestamp 0 plays (TSBPD)
        self._last_ts_raw = 0
        self._last_ts = 0
        self._ack_number = 0
        self._acks_in_flight: dict[int, float] = {}
        self._rtt = 0.1
        self._rtt_var = 0.05
        self._last_heard = now
        self._last_sent = now
        self._next_ack = now + ACK_PERIOD
        self._next_nak = now + _MIN_NAK_INTERVAL
        self._unacked = False
        self._window_start = now  # the receive rate reported in ACKs: since then,
        self._window_received = 0  # from this many packets
        self._window_bytes = 0  # and payload bytes
        self._rate_packets = 0
        self._rate_bytes = 0

    # -- input ---------------------------------------------------------------------------------

    def receive(self, datagram: bytes, now: float) -> bool:
        """One datagram addressed to this connection; malformed ones are ignored.

        Returns whether the owner has anything to do: datagrams to send, payloads to deliver,
        a changed state, or a :meth:`next_deadline` that may have come earlier. ``False`` (the
        usual answer for data arriving in order) means all of those are as they were.
        """
        if self.state is not State.OPEN or len(datagram) < HEADER_SIZE:
            return False
        self._last_heard = now
        if datagram[0] & 0x80:
            packet = parse(datagram)
            assert isinstance(packet, ControlPacket)
            return self._control(packet, now)
        # Data packets are most of the traffic: read the three header words we need directly.
        seq, flags, timestamp = _DATA_HEADER.unpack_from(datagram)
        return self._data(seq, flags, timestamp, datagram[HEADER_SIZE:], now)

    def on_timer(self, now: float) -> None:
        """Run what is due: ACK, periodic NAK, delivery, keepalive, idle check."""
        if self.state is not State.OPEN:
            return
        if now - self._last_heard >= self.idle_timeout:
            self.state = State.TIMED_OUT
            return
        if now >= self._next_ack:
            if self._unacked:
                self._send_ack(now)
            self._next_ack = now + ACK_PERIOD
        if self._losses and now >= self._next_nak:
            self._send_nak(sorted(self._losses, key=lambda s: seq_diff(s, self._next)), now)
        if now >= self._next_nak:
            self._next_nak = now + max(_MIN_NAK_INTERVAL, (self._rtt + 4 * self._rtt_var) / 2)
        if now - self._last_sent >= KEEPALIVE_PERIOD:
            self._send(ControlType.KEEPALIVE, 0, b"", now)
        self._deliver_due(now)

    def close(self, now: float) -> None:
        """Close from our side: tell the peer (SHUTDOWN)."""
        if self.state is State.OPEN:
            self._send(ControlType.SHUTDOWN, 0, b"\x00\x00\x00\x00", now)
            self.state = State.CLOSED

    # -- output --------------------------------------------------------------------------------

    def datagrams_to_send(self) -> list[bytes]:
        """Control packets to send to the peer, oldest first."""
        out, self._out = self._out, []
        return out

    def deliver(self) -> list[bytes]:
        """Payloads whose delivery time has come, in order (gaps given up are skipped).

        Delivery happens in :meth:`on_timer` (and on the peer's shutdown), so payloads come out
        in batches of one timer period rather than one per datagram.
        """
        out, self._delivered = self._delivered, []
        return out

    def next_deadline(self) -> float | None:
        """When :meth:`on_timer` must run next, or ``None`` once closed."""
        if self.state is not State.OPEN:
            return None
        deadline = min(self._last_heard + self.idle_timeout, self._last_sent + KEEPALIVE_PERIOD)
        if self._unacked:
            deadline = min(deadline, self._next_ack)
        if self._losses:
            deadline = min(deadline, self._next_nak)
        due = self._head_due()
        if due is not None:
            deadline = min(deadline, due)
        return deadline

    # -- data ----------------------------------------------------------------------------------

    def _data(self, seq: int, flags: int, timestamp: int, payload: bytes, now: float) -> bool:
        stats = self.stats
        stats.received += 1
        stats.bytes_received += len(payload)
        retransmitted = flags & _REXMIT
        if retransmitted:
            stats.retransmitted += 1
        if seq == self._expected:
            ahead = 0  # the next one (no duplicate: everything buffered is before it)
        else:
            ahead = seq_diff(seq, self._expected)
            if seq_diff(seq, self._next) < 0 or seq in self._buffer:
                stats.duplicates += 1
                return False
            if ahead >= self.flow_window:
                return False  # far outside the window: not from this stream's sender
        if flags & _KEY_FLAGS or self._decryptor is not None:
            key = (flags & _KEY_FLAGS) >> _KEY_FLAGS_SHIFT
            clear = self._decryptor.decrypt(seq, key, payload) if self._decryptor else None
            if clear is None:
                # Kept as an empty payload, so the sequence stays whole and is not NAKed again.
                self.stats.undecryptable += 1
            payload = clear or b""
        # Whether a deadline appears: the ACK once something is unacknowledged, a delivery
        # once something is buffered.
        news = not self._unacked or not self._buffer
        self._buffer[seq] = (self._unwrap(timestamp, now), payload)
        self._unacked = True
        if ahead >= 0:
            if ahead > 0:
                first, last = self._expected, seq_add(seq, -1)
                for i in range(ahead):
                    self._losses.add(seq_add(first, i))
                self.stats.gaps += ahead
                self._send_nak([first] if ahead == 1 else [first, last], now, ranges=True)
            self._expected = (seq + 1) & SEQ_MASK
        elif seq in self._losses:
            self._losses.discard(seq)
            if retransmitted:
                stats.recovered += 1
            else:
                stats.reordered += 1
        # Out of order, a gap (NAKed) or its repair (the head may be due earlier) is news too.
        return news or ahead != 0

    def _unwrap(self, timestamp: int, now: float) -> int:
        # Sender timestamps are 32-bit microseconds: unwrap against the newest one seen. The
        # first packet fixes the base (its transit time becomes part of everyone's).
        if self._play_base is None:
            self._play_base = now - timestamp / _US + self.latency
            self._last_ts_raw = self._last_ts = timestamp
            return timestamp
        delta = (timestamp - self._last_ts_raw) & 0xFFFFFFFF
        if delta >= 0x80000000:
            delta -= 0x100000000
        unwrapped = self._last_ts + delta
        if delta > 0:
            self._last_ts_raw, self._last_ts = timestamp, unwrapped
        return unwrapped

    def _head_due(self) -> float | None:
        """When the next delivery (or too-late drop) is due."""
        if not self._buffer or self._play_base is None:
            return None
        entry = self._buffer.get(self._next)
        if entry is not None:
            return self._play_base + entry[0] / _US
        # The head is missing: the first packet after the gap decides when to give up on it.
        for i in range(1, seq_diff(self._expected, self._next)):
            entry = self._buffer.get(seq_add(self._next, i))
            if entry is not None:
                return self._play_base + entry[0] / _US
        return None

    def _deliver_due(self, now: float) -> None:
        buffer = self._buffer
        if not buffer or self._play_base is None:
            return
        limit = (now + DELIVERY_BATCH - self._play_base) * _US  # in sender time
        while buffer:
            entry = buffer.get(self._next)
            if entry is not None:
                if entry[0] > limit:
                    return
                del buffer[self._next]
                self._delivered.append(entry[1])
                self._next = (self._next + 1) & SEQ_MASK
                continue
            due = self._head_due()
            if due is None or due > now:
                return
            # Too late: skip the missing packets up to the first one that is due.
            while self._next not in self._buffer:
                self._losses.discard(self._next)
                self.stats.dropped += 1
                self._next = seq_add(self._next, 1)
            self._unacked = True

    # -- control -------------------------------------------------------------------------------

    def _control(self, packet: ControlPacket, now: float) -> bool:
        """Handle a control packet; whether the owner has anything to do (see :meth:`receive`)."""
        if packet.type == ControlType.ACKACK:  # (one per ACK) only the RTT changes
            sent = self._acks_in_flight.pop(packet.info, None)
            if sent is not None:
                # Never negative: a coarse loop clock (uvloop's ticks in milliseconds) can show
                # a fast answer as older than its ACK, whose time was the timer's deadline.
                sample = max(now - sent, 0.0)
                self._rtt_var = 0.75 * self._rtt_var + 0.25 * abs(sample - self._rtt)
                self._rtt = 0.875 * self._rtt + 0.125 * sample
            return False
        if packet.type == ControlType.SHUTDOWN:
            self.state = State.SHUTDOWN
            self._drain()
        elif packet.type == ControlType.DROPREQ and len(packet.body) >= 8:
            first, last = struct.unpack_from(">II", packet.body)
            self._sender_dropped(first & 0x7FFFFFFF, last & 0x7FFFFFFF)
        elif packet.type == ControlType.NAK:
            decode_loss_list(packet.body)  # a receiver-only peer never gets one; ignore
        elif (
            packet.type == ControlType.USER
            and packet.subtype == Extension.KMREQ
            and self._decryptor is not None
        ):
            # The sender rotates its keys in-band: answer KMRSP (echo, or a failure state).
            self.stats.rekeyed += 1
            self._send(
                ControlType.USER, 0, self._decryptor.rekey(packet.body), now, Extension.KMRSP
            )
        return True

    def _drain(self) -> None:
        # The sender is gone, so no retransmission will come: hand over what arrived, in order.
        for seq in sorted(self._buffer, key=lambda s: seq_diff(s, self._next)):
            self._delivered.append(self._buffer[seq][1])
        self.stats.dropped += len(self._losses)
        self._buffer.clear()
        self._losses.clear()

    def _sender_dropped(self, first: int, last: int) -> None:
        # The sender gave up on these (too late on its side): stop asking for them.
        span = seq_diff(last, first)
        if span < 0 or span >= self.flow_window:
            return
        for i in range(span + 1):
            seq = seq_add(first, i)
            if seq in self._losses:
                self._losses.discard(seq)
        if seq_diff(seq_add(last, 1), self._expected) > 0:
            self._expected = seq_add(last, 1)
        if self._next not in self._buffer and seq_diff(first, self._next) <= 0 < seq_diff(
            seq_add(last, 1), self._next
        ):
            while seq_diff(self._next, last) <= 0 and self._next not in self._buffer:
                self.stats.dropped += 1
                self._next = seq_add(self._next, 1)
        self._unacked = True

    def _ack_seq(self) -> int:
        """The first sequence number not yet received in order."""
        if not self._losses:
            return self._expected
        return min(self._losses, key=lambda s: seq_diff(s, self._next))

    def _send_ack(self, now: float) -> None:
        self._ack_number = (self._ack_number + 1) & 0x7FFFFFFF or 1
        self._acks_in_flight[self._ack_number] = now
        if len(self._acks_in_flight) > 64:
            del self._acks_in_flight[next(iter(self._acks_in_flight))]
        elapsed = now - self._window_start
        if elapsed >= 1.0:
            received, nbytes = self.stats.received, self.stats.bytes_received
            packets = received - self._window_received
            self._rate_packets = int(packets / elapsed)
            # On the wire: with the SRT, UDP and IP headers.
            self._rate_bytes = int((nbytes - self._window_bytes + 44 * packets) / elapsed)
            self._window_start, self._window_received, self._window_bytes = now, received, nbytes
        body = struct.pack(
            ">IIIIIII",
            self._ack_seq(),
            int(self._rtt * _US),
            int(self._rtt_var * _US),
            max(2, self.flow_window - len(self._buffer)),
            self._rate_packets,
            max(self._rate_packets, 1),
            self._rate_bytes,
        )
        self._send(ControlType.ACK, self._ack_number, body, now)
        self.stats.acks_sent += 1
        self._unacked = False

    def _send_nak(self, seqs: list[int], now: float, *, ranges: bool = False) -> None:
        if ranges:
            losses = [(seqs[0], seqs[-1])]
        else:
            losses = []
            for seq in seqs:
                if losses and seq == seq_add(losses[-1][1], 1):
                    losses[-1] = (losses[-1][0], seq)
                else:
                    losses.append((seq, seq))
        self._send(ControlType.NAK, 0, encode_loss_list(losses[:_NAK_MAX_RANGES]), now)
        self.stats.naks_sent += 1

    def _send(self, ctype: int, info: int, body: bytes, now: float, subtype: int = 0) -> None:
        ts = int((now - self._start) * _US)
        self._out.append(control(ctype, info, ts, self.peer_socket_id, body, subtype))
        self._last_sent = now
