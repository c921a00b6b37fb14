"""The SRT listener's side of the caller-listener handshake (HSv5), stateless until accepted.

Induction: the caller's INDUCTION gets our version (5), the SRT magic and a SYN cookie derived
from its address and the current minute; nothing is stored. Conclusion: a CONCLUSION carrying a
cookie we could have issued (this minute or the previous) becomes a :class:`ConnectRequest`;
anything else is dropped silently. The owner then answers with :meth:`Listener.accept` or
:meth:`Listener.reject` (the reject code goes back in the handshake type field).

Handshakes are budgeted per source host (a token bucket), so one flooding address is ignored
while others connect normally.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import struct
from dataclasses import dataclass

from simulcast.codecs.srt.packet import (
    HS_EXT_HSREQ,
    HS_EXT_KMREQ,
    REJECT_BASE,
    SRT_MAGIC,
    ControlType,
    Extension,
    Handshake,
    HandshakeType,
    SrtError,
    control,
    parse_handshake,
    swap_words,
)

SRT_VERSION = 0x010501
"""The libsrt version we announce (1.5.1): HSv5 features, stream id, TSBPD both ways."""
MIN_PEER_VERSION = 0x010300
"""Callers older than this cannot do HSv5."""

# SRT_OPT_* flags of the HSREQ/HSRSP extension.
OPT_TSBPDSND = 0x01
OPT_TSBPDRCV = 0x02
OPT_HAICRYPT = 0x04
OPT_TLPKTDROP = 0x08
OPT_NAKREPORT = 0x10
OPT_REXMITFLG = 0x20
OPT_STREAM = 0x40
_OUR_FLAGS = OPT_TSBPDSND | OPT_TSBPDRCV | OPT_HAICRYPT | OPT_TLPKTDROP | OPT_NAKREPORT
_OUR_FLAGS |= OPT_REXMITFLG


class RejectReason:
    """SRT reject reasons (``SRT_REJ_*``; 1000+ are the application's, ``SRT_REJX_*``)."""

    PEER = 2
    ROGUE = 4
    VERSION = 8
    BADSECRET = 10
    UNSECURE = 11
    MESSAGEAPI = 12
    BAD_REQUEST = 1400
    UNAUTHORIZED = 1401
    FORBIDDEN = 1403
    NOT_FOUND = 1404
    CONFLICT = 1409


@dataclass(frozen=True, slots=True)
class ConnectRequest:
    """A caller's CONCLUSION that passed the cookie check: what the owner decides on."""

    host: str
    port: int
    socket_id: int
    isn: int
    mtu: int
    flow_window: int
    stream_id: str
    peer_version: int
    flags: int
    peer_rcv_latency_ms: int
    peer_snd_latency_ms: int
    key_material: bytes | None
    """The caller's KMREQ (it set a passphrase), or ``None``."""


@dataclass(frozen=True, slots=True)
class Accepted:
    """What the owner's yes produced: the answer to send and the negotiated receive latency."""

    response: bytes
    latency_ms: int


class _Bucket:
    __slots__ = ("at", "tokens")

    def __init__(self, tokens: float, at: float) -> None:
        self.tokens = tokens
        self.at = at


class Listener:
    """Answers handshakes for one UDP port; ``socket_id`` is the listening socket's id."""

    def __init__(
        self,
        secret: bytes,
        socket_id: int,
        latency_ms: int,
        *,
        handshakes_per_second: float = 20.0,
        handshake_burst: float = 40.0,
    ) -> None:
        self._secret = secret
        self.socket_id = socket_id
        self.latency_ms = latency_ms
        self._rate = handshakes_per_second
        self._burst = handshake_burst
        self._buckets: dict[str, _Bucket] = {}
        self.rate_limited = 0
        """Handshakes ignored because their source host was over its budget."""

    def receive(
        self, host: str, port: int, body: bytes, now: float
    ) -> bytes | ConnectRequest | None:
        """A handshake control packet's CIF from ``host:port`` (addressed to socket 0).

        Returns a datagram to send back, a :class:`ConnectRequest` to decide on, or ``None``
        (dropped: malformed, wrong cookie, or over the rate limit).
        """
        if not self._allow(host, now):
            self.rate_limited += 1
            return None
        try:
            hs = parse_handshake(body)
        except SrtError:
            return None
        if hs.type == HandshakeType.INDUCTION:
            return self._induction(host, port, hs, now)
        if hs.type == HandshakeType.CONCLUSION:
            if not self._cookie_ok(host, port, hs.cookie, now):
                return None
            return self._conclusion(host, port, hs)
        return None

    def accept(
        self, request: ConnectRequest, socket_id: int, peer_ip: bytes, kmrsp: bytes | None = None
    ) -> Accepted:
        """Accept ``request`` as our socket ``socket_id``: the CONCLUSION answer with HSRSP
        (and ``kmrsp``, the caller's key material echoed, when the connection is encrypted)."""
        # The receive latency is the larger of ours and what the sender proposes for us.
        latency = max(self.latency_ms, request.peer_snd_latency_ms)
        hsrsp = struct.pack(
            ">III",
            SRT_VERSION,
            _OUR_FLAGS,
            (latency << 16) | (request.peer_rcv_latency_ms & 0xFFFF),
        )
        extensions: tuple[tuple[int, bytes], ...] = ((Extension.HSRSP, hsrsp),)
        if kmrsp is not None:
            extensions += ((Extension.KMRSP, kmrsp),)
        hs = Handshake(
            version=5,
            encryption=0,
            extension=HS_EXT_HSREQ | (HS_EXT_KMREQ if kmrsp is not None else 0),
            isn=request.isn,
            mtu=min(request.mtu, 1500),
            flow_window=min(request.flow_window, 8192),
            type=HandshakeType.CONCLUSION,
            socket_id=socket_id,
            cookie=0,
            peer_ip=peer_ip,
            extensions=extensions,
        )
        return Accepted(self._handshake_packet(request.socket_id, hs), latency)

    def reject(self, request: ConnectRequest, reason: int, peer_ip: bytes) -> bytes:
        """The CONCLUSION answer that rejects ``request`` with ``reason`` (``SRT_REJ*``)."""
        hs = Handshake(
            version=5,
            encryption=0,
            extension=0,
            isn=request.isn,
            mtu=request.mtu,
            flow_window=request.flow_window,
            type=REJECT_BASE + reason,
            socket_id=self.socket_id,
            cookie=0,
            peer_ip=peer_ip,
        )
        return self._handshake_packet(request.socket_id, hs)

    # -- internals -----------------------------------------------------------------------------

    def _allow(self, host: str, now: float) -> bool:
        bucket = self._buckets.get(host)
        if bucket is None:
            if len(self._buckets) >= 4096:
                self._prune(now)
            bucket = self._buckets[host] = _Bucket(self._burst, now)
        bucket.tokens = min(self._burst, bucket.tokens + max(0.0, now - bucket.at) * self._rate)
        bucket.at = now
        if bucket.tokens < 1.0:
            return False
        bucket.tokens -= 1.0
        return True

    def _prune(self, now: float) -> None:
        # Buckets that have refilled hold no information: forget them.
        full = self._burst / self._rate
        for host in [h for h, b in self._buckets.items() if now - b.at >= full]:
            del self._buckets[host]

    def _cookie(self, host: str, port: int, minute: int) -> bytes:
        mac = hmac.new(self._secret, f"{host}|{port}|{minute}".encode(), hashlib.sha256)
        return mac.digest()[:4]

    def _cookie_ok(self, host: str, port: int, cookie: int, now: float) -> bool:
        minute = int(now // 60)
        theirs = (cookie & 0xFFFFFFFF).to_bytes(4, "big")
        return any(
            hmac.compare_digest(self._cookie(host, port, m), theirs) for m in (minute, minute - 1)
        )

    def _induction(self, host: str, port: int, hs: Handshake, now: float) -> bytes:
        answer = Handshake(
            version=5,
            encryption=0,
            extension=SRT_MAGIC,
            isn=hs.isn,
            mtu=hs.mtu,
            flow_window=hs.flow_window,
            type=HandshakeType.INDUCTION,
            socket_id=self.socket_id,
            cookie=int.from_bytes(self._cookie(host, port, int(now // 60)), "big", signed=True),
            peer_ip=peer_ip_field(host),
        )
        return self._handshake_packet(hs.socket_id, answer)

    def _conclusion(self, host: str, port: int, hs: Handshake) -> bytes | ConnectRequest:
        hsreq = hs.extension_block(Extension.HSREQ)
        version = flags = latency = 0
        if hsreq is not None and len(hsreq) >= 12:
            version, flags, latency = struct.unpack_from(">III", hsreq)
        sid = hs.extension_block(Extension.SID)
        request = ConnectRequest(
            host=host,
            port=port,
            socket_id=hs.socket_id,
            isn=hs.isn & 0x7FFFFFFF,
            mtu=hs.mtu,
            flow_window=hs.flow_window,
            stream_id=swap_words(sid).rstrip(b"\x00").decode("utf-8", "replace") if sid else "",
            peer_version=version,
            flags=flags,
            peer_rcv_latency_ms=latency >> 16,
            peer_snd_latency_ms=latency & 0xFFFF,
            key_material=hs.extension_block(Extension.KMREQ),
        )
        if hs.version != 5 or version < MIN_PEER_VERSION:
            return self.reject(request, RejectReason.VERSION, peer_ip_field(host))
        return request

    def _handshake_packet(self, dest: int, hs: Handshake) -> bytes:
        return control(ControlType.HANDSHAKE, 0, 0, dest, hs.encode())


def peer_ip_field(host: str) -> bytes:
    """The handshake's 16-byte peer address, laid out as libsrt does (IPv4 word byte-swapped)."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return bytes(16)
    if address.version == 4:
        return swap_words(address.packed) + bytes(12)
    return swap_words(address.packed)
