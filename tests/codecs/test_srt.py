"""The sans-I/O SRT pieces: packets, the stateless listener, the receiver (reliability, timing)."""

from __future__ import annotations

import hashlib
import struct

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.keywrap import aes_key_wrap

from simulcast.codecs.srt.caller import Caller, Connected, Refused
from simulcast.codecs.srt.crypto import (
    EVEN,
    ODD,
    BadSecret,
    Decryptor,
    KmState,
    km_state,
    unwrap_key_material,
)
from simulcast.codecs.srt.handshake import ConnectRequest, Listener, RejectReason
from simulcast.codecs.srt.packet import (
    REJECT_BASE,
    SEQ_MASK,
    ControlPacket,
    ControlType,
    DataPacket,
    Extension,
    Handshake,
    HandshakeType,
    SrtError,
    control,
    decode_loss_list,
    encode_loss_list,
    parse,
    parse_handshake,
    seq_add,
    seq_diff,
    swap_words,
)
from simulcast.codecs.srt.receiver import Receiver, State
from simulcast.ingest.srt_server import parse_stream_id


def data(seq: int, ts_us: int, payload: bytes = b"x", *, rexmit: bool = False) -> bytes:
    w1 = 0xE0000000 | (0x04000000 if rexmit else 0) | 1
    return struct.pack(">IIII", seq, w1, ts_us, 5) + payload


def caller_hs(hs_type: int, cookie: int = 0, sid: str = "publish:k", version: int = 5) -> bytes:
    hsreq = struct.pack(">III", 0x010501, 0x3F, (200 << 16) | 300)
    exts = ((Extension.HSREQ, hsreq), (Extension.SID, swap_words(sid.encode())))
    return Handshake(version, 0, 5, 42, 1500, 8192, hs_type, 9, cookie, bytes(16), exts).encode()


def test_sequence_arithmetic_wraps() -> None:
    assert seq_add(SEQ_MASK, 1) == 0
    assert seq_diff(0, SEQ_MASK) == 1
    assert seq_diff(SEQ_MASK, 0) == -1
    assert seq_diff(10, 5) == 5


def test_packets_round_trip() -> None:
    packet = parse(data(7, 1234, b"abc", rexmit=True))
    assert isinstance(packet, DataPacket)
    assert (packet.seq, packet.timestamp, packet.payload, packet.retransmitted) == (
        7,
        1234,
        b"abc",
        True,
    )
    ctl = parse(control(ControlType.ACK, 3, 99, 5, b"body"))
    assert isinstance(ctl, ControlPacket)
    assert (ctl.type, ctl.info, ctl.timestamp, ctl.dest, ctl.body) == (2, 3, 99, 5, b"body")
    losses = [(5, 5), (10, 20)]
    assert decode_loss_list(encode_loss_list(losses)) == losses
    assert swap_words(swap_words(b"publish:k")) == b"publish:k\x00\x00\x00"


def test_listener_is_stateless_until_a_valid_cookie() -> None:
    listener = Listener(b"s" * 32, 0, 120)
    answer = listener.receive("10.0.0.1", 5000, caller_hs(HandshakeType.INDUCTION, 0, "", 4), 0.0)
    assert isinstance(answer, bytes)
    induction = parse_handshake(answer[16:])
    assert (induction.version, induction.extension) == (5, 0x4A17)
    # A wrong cookie, or the right one from another port, is dropped without an answer.
    assert listener.receive("10.0.0.1", 5000, caller_hs(-1, induction.cookie ^ 1), 1.0) is None
    assert listener.receive("10.0.0.1", 5001, caller_hs(-1, induction.cookie), 1.0) is None
    request = listener.receive("10.0.0.1", 5000, caller_hs(-1, induction.cookie), 61.0)
    assert not isinstance(request, bytes | None)  # last minute's cookie still counts
    assert request.stream_id == "publish:k"
    assert (request.peer_rcv_latency_ms, request.peer_snd_latency_ms) == (200, 300)
    accepted = listener.accept(request, 1234, bytes(16))
    assert accepted.latency_ms == 300  # the larger of ours (120) and the sender's proposal
    hs = parse_handshake(parse(accepted.response).body)  # type: ignore[union-attr]
    assert hs.type == HandshakeType.CONCLUSION and hs.socket_id == 1234
    hsrsp = hs.extension_block(Extension.HSRSP)
    assert hsrsp is not None and struct.unpack(">III", hsrsp)[2] >> 16 == 300
    rejected = parse_handshake(listener.reject(request, RejectReason.FORBIDDEN, bytes(16))[16:])
    assert rejected.type == REJECT_BASE + 1403
    # An old caller (HSv4 conclusion) is told its version is the problem.
    old = listener.receive("10.0.0.1", 5000, caller_hs(-1, induction.cookie, version=4), 1.0)
    assert isinstance(old, bytes)
    assert parse_handshake(old[16:]).type == REJECT_BASE + RejectReason.VERSION


def test_listener_rate_limits_per_host() -> None:
    listener = Listener(b"s" * 32, 0, 120, handshakes_per_second=10, handshake_burst=5)
    hs = caller_hs(HandshakeType.INDUCTION, version=4)
    answers = [listener.receive("10.0.0.1", 1, hs, 0.0) for _ in range(100)]
    assert sum(a is not None for a in answers) == 5
    assert listener.receive("10.0.0.2", 1, hs, 0.0) is not None  # another host is unaffected
    assert listener.receive("10.0.0.1", 1, hs, 0.5) is not None  # refilled
    assert listener.rate_limited == 95


def test_stream_ids() -> None:
    assert parse_stream_id("publish:abc") == ("abc", {})
    assert parse_stream_id("publish:abc?shift=1") == ("abc", {"shift": "1"})
    assert parse_stream_id("#!::r=abc,m=publish") == ("abc", {})
    assert parse_stream_id("#!::u=joe,r=abc,m=publish,shift=1") == ("abc", {"shift": "1"})
    for bad in ("#!::r=abc", "#!::r=abc,m=request", "abc", "publish:", "#!::garbage"):
        assert parse_stream_id(bad) is None, bad


def new_receiver(latency_ms: int = 100, isn: int = 100) -> Receiver:
    return Receiver(
        socket_id=5, peer_socket_id=9, isn=isn, latency_ms=latency_ms, flow_window=8192, now=0.0
    )


def controls(receiver: Receiver, ctype: int) -> list[ControlPacket]:
    out = [parse(d) for d in receiver.datagrams_to_send()]
    return [p for p in out if isinstance(p, ControlPacket) and p.type == ctype]


def test_tsbpd_delivers_at_base_plus_latency_in_order() -> None:
    r = new_receiver()
    r.receive(data(100, 0, b"a"), 0.0)
    r.receive(data(101, 20_000, b"b"), 0.02)
    assert r.deliver() == []
    r.on_timer(0.085)  # a is due at 0.1: not within the delivery batch yet
    assert r.deliver() == []
    r.on_timer(0.092)  # up to one batch (10 ms) early, so deliveries come in batches
    assert r.deliver() == [b"a"]
    r.on_timer(0.105)  # b is due at 0.12
    assert r.deliver() == []
    deadline = r.next_deadline()
    assert deadline is not None and deadline <= 0.12 + 1e-9
    r.on_timer(0.111)
    assert r.deliver() == [b"b"]


def test_gap_is_nakked_repaired_and_acked() -> None:
    r = new_receiver()
    r.receive(data(100, 0), 0.0)
    r.receive(data(103, 3000), 0.003)  # 101 and 102 missing
    naks = controls(r, ControlType.NAK)
    assert [decode_loss_list(n.body) for n in naks] == [[(101, 102)]]
    r.on_timer(0.03)  # still missing after the NAK interval: asked again
    assert [decode_loss_list(n.body) for n in controls(r, ControlType.NAK)] == [[(101, 102)]]
    r.receive(data(101, 1000, rexmit=True), 0.031)
    r.receive(data(102, 2000, rexmit=True), 0.032)
    r.on_timer(0.05)
    acks = controls(r, ControlType.ACK)
    assert acks and struct.unpack_from(">I", acks[-1].body)[0] == 104
    r.on_timer(0.2)
    assert r.deliver() == [b"x"] * 4
    assert (r.stats.gaps, r.stats.recovered, r.stats.dropped) == (2, 2, 0)


def test_receive_says_when_the_owner_has_something_to_do() -> None:
    r = new_receiver()
    assert r.receive(data(100, 0), 0.0)  # the first: a delivery and an ACK are due now
    assert not r.receive(data(101, 1000), 0.001)  # in order: nothing new to do
    r.on_timer(0.011)
    (ack,) = controls(r, ControlType.ACK)
    assert not r.receive(control(ControlType.ACKACK, ack.info, 0, 5), 0.0115)  # RTT only
    assert r.receive(data(102, 2000), 0.012)  # unacknowledged again: the ACK period is due
    assert not r.receive(data(103, 3000), 0.013)
    assert r.receive(data(105, 5000), 0.015)  # a gap: the NAK is to send
    assert controls(r, ControlType.NAK)
    assert r.receive(data(104, 4000, rexmit=True), 0.016)  # its repair: the head may be due
    assert not r.receive(data(104, 4000, rexmit=True), 0.017)  # a duplicate changes nothing
    assert r.receive(control(ControlType.SHUTDOWN, 0, 0, 5), 0.018)


def test_too_late_packets_are_dropped_not_waited_for() -> None:
    r = new_receiver()
    r.receive(data(100, 0, b"a"), 0.0)
    r.receive(data(102, 20_000, b"c"), 0.02)
    r.on_timer(0.1)
    assert r.deliver() == [b"a"]
    r.on_timer(0.121)  # 102 is due and 101 never came: give up on it
    assert r.deliver() == [b"c"]
    assert r.stats.dropped == 1
    r.receive(data(101, 10_000, b"b", rexmit=True), 0.13)  # too late now
    assert r.deliver() == [] and r.stats.duplicates == 1


def test_rtt_from_ackack_keepalive_idle_and_shutdown() -> None:
    r = new_receiver(isn=SEQ_MASK)  # across the sequence wrap
    r.receive(data(SEQ_MASK, 0), 0.0)
    r.receive(data(0, 1000), 0.001)
    r.on_timer(0.011)
    ack = controls(r, ControlType.ACK)[0]
    assert struct.unpack_from(">I", ack.body)[0] == 1
    r.receive(control(ControlType.ACKACK, ack.info, 0, 5), 0.031)
    r.on_timer(1.1)
    assert controls(r, ControlType.KEEPALIVE)
    r.on_timer(6.1)
    assert r.state is State.TIMED_OUT
    s = new_receiver()
    s.receive(data(100, 0, b"a"), 0.0)
    s.receive(control(ControlType.SHUTDOWN, 0, 0, 5), 0.01)
    assert s.state is State.SHUTDOWN and s.deliver() == [b"a"]  # what arrived is handed over


def test_an_ackack_stamped_before_its_ack_does_not_break_the_rtt() -> None:
    r = new_receiver()
    r.receive(data(100, 0), 0.0)
    r.on_timer(0.011)
    (ack,) = controls(r, ControlType.ACK)
    r.receive(control(ControlType.ACKACK, ack.info, 0, 5), 0.0105)  # a coarser clock
    r.receive(data(101, 20_000), 0.02)
    r.on_timer(0.031)
    (ack,) = controls(r, ControlType.ACK)
    assert struct.unpack_from(">II", ack.body) == (102, int(0.875 * 0.1 * 1_000_000))


def test_garbage_is_ignored() -> None:
    r = new_receiver()
    for junk in (b"", b"\x00" * 5, b"\xff" * 40):
        r.receive(junk, 0.0)
    r.receive(data(100 + 100_000, 0), 0.0)  # far outside the window
    assert r.state is State.OPEN and r.stats.gaps == 0


# -- encryption: a sender built from the draft's formats, independently of the receiver ---------

SALT = bytes(range(16))


def key_material(passphrase: str, keys: dict[int, bytes]) -> bytes:
    """A Key Material message as a libsrt sender builds it (section 3.2.2 of the draft)."""
    key_len = len(next(iter(keys.values())))
    kek = hashlib.pbkdf2_hmac("sha1", passphrase.encode(), SALT[8:], 2048, key_len)
    kk = sum(keys)
    wrapped = aes_key_wrap(kek, b"".join(keys[f] for f in (EVEN, ODD) if f in keys))
    header = bytes([0x12, 0x20, 0x29, kk, 0, 0, 0, 0, 2, 0, 2, 0, 0, 0, 4, key_len // 4])
    return header + SALT + wrapped


def encrypted(seq: int, key: bytes, flags: int, clear: bytes) -> bytes:
    iv = bytearray(16)
    iv[10:14] = seq.to_bytes(4, "big")
    iv = bytes(a ^ b for a, b in zip(iv, SALT[:14] + b"\0\0", strict=True))
    body = Cipher(algorithms.AES(key), modes.CTR(iv)).encryptor().update(clear)
    return struct.pack(">IIII", seq, 0xE0000000 | (flags << 27) | 1, 0, 5) + body


@pytest.mark.parametrize("key_len", [16, 24, 32])
def test_key_material_unwraps_and_payloads_decrypt(key_len: int) -> None:
    even, odd = b"E" * key_len, b"O" * key_len
    raw = key_material("secret passphrase", {EVEN: even})
    material = unwrap_key_material(raw, "secret passphrase")
    assert material.keys == {EVEN: even} and material.raw == raw
    with pytest.raises(BadSecret):
        unwrap_key_material(raw, "another passphrase")
    for damaged in (raw[:20], b"\x13" + raw[1:], raw[:8] + b"\x01" + raw[9:]):
        with pytest.raises(SrtError):
            unwrap_key_material(damaged, "secret passphrase")

    decryptor = Decryptor("secret passphrase", material)
    r = Receiver(
        socket_id=5, peer_socket_id=9, isn=100, latency_ms=0, flow_window=8192, now=0.0,
        decryptor=decryptor,
    )  # fmt: skip
    r.receive(encrypted(100, even, EVEN, b"first payload"), 0.0)
    # The sender announces its odd key in-band, then switches to it; we answer KMRSP (echo).
    both = key_material("secret passphrase", {EVEN: even, ODD: odd})
    r.receive(control(ControlType.USER, 0, 0, 5, both, Extension.KMREQ), 0.0)
    [kmrsp] = controls(r, ControlType.USER)
    assert kmrsp.subtype == Extension.KMRSP and kmrsp.body == both
    r.receive(encrypted(101, odd, ODD, b"second payload"), 0.0)
    r.receive(data(102, 0, b"clear: not from this sender"), 0.0)
    r.on_timer(0.01)
    assert r.deliver() == [b"first payload", b"second payload", b""]
    assert r.stats.undecryptable == 1 and r.stats.rekeyed == 1
    # A rotation that does not unwrap is answered with the failure state; the keys stay.
    wrong = key_material("not the passphrase", {ODD: even})
    r.receive(control(ControlType.USER, 0, 0, 5, wrong, Extension.KMREQ), 0.0)
    [failed] = controls(r, ControlType.USER)
    assert failed.body == km_state(KmState.BADSECRET)


def test_caller_connects_to_our_listener_with_its_key() -> None:
    """The caller's handshake against the listener, both sans-I/O: induction, cookie,
    conclusion with HSREQ, stream id and key material; the listener's answer settles it."""
    listener = Listener(b"s" * 32, 0, 200)

    def call(caller: Caller, accept: bool) -> tuple[Connected | Refused | None, ConnectRequest]:
        answer = listener.receive("10.0.0.1", 4000, caller.request()[16:], 0.0)
        assert isinstance(answer, bytes) and caller.receive(answer) is None
        request = listener.receive("10.0.0.1", 4000, caller.request()[16:], 0.0)
        assert isinstance(request, ConnectRequest)
        if accept:
            kmrsp = request.key_material
            reply = listener.accept(request, 77, bytes(16), kmrsp).response
        else:
            reply = listener.reject(request, RejectReason.BADSECRET, bytes(16))
        return caller.receive(reply), request

    caller = Caller(5, 1234, 120, "publish:key", "caller passphrase", 24)
    connected, request = call(caller, accept=True)
    assert request.stream_id == "publish:key" and request.isn == 1234
    assert request.key_material is not None
    material = unwrap_key_material(request.key_material, "caller passphrase")
    assert len(material.keys[EVEN]) == 24
    assert isinstance(connected, Connected)
    # Our receive latency: the larger of ours and what the listener sends with (it echoed ours).
    assert (connected.peer_socket_id, connected.isn, connected.latency_ms) == (77, 1234, 120)
    assert connected.decryptor is not None
    refused, _ = call(Caller(6, 1, 120, "publish:key"), accept=False)
    assert refused == Refused(RejectReason.BADSECRET)
