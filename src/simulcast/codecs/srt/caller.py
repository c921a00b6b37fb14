"""The SRT caller's side of the caller-listener handshake (HSv5), sans-I/O: how a pull connects.

:meth:`Caller.request` is the datagram to send now (and again every :data:`RETRY_S` while no
answer comes): first an INDUCTION (version 4, as libsrt's callers send), then, with the
listener's SYN cookie, a CONCLUSION carrying HSREQ (we receive: TSBPD, too-late drop, NAK
reports), the stream id and, with a passphrase, our key material (KMREQ). :meth:`receive` takes
the listener's answers and returns :class:`Connected` or :class:`Refused` when it is settled.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from simulcast.codecs.srt.crypto import (
    BadSecret,
    Decryptor,
    KeyMaterial,
    new_key_material,
    unwrap_key_material,
)
from simulcast.codecs.srt.handshake import (
    OPT_HAICRYPT,
    OPT_NAKREPORT,
    OPT_REXMITFLG,
    OPT_TLPKTDROP,
    OPT_TSBPDRCV,
    SRT_VERSION,
    RejectReason,
)
from simulcast.codecs.srt.packet import (
    HS_EXT_CONFIG,
    HS_EXT_HSREQ,
    HS_EXT_KMREQ,
    REJECT_BASE,
    SRT_MAGIC,
    UDT_DGRAM,
    ControlPacket,
    ControlType,
    Extension,
    Handshake,
    HandshakeType,
    SrtError,
    control,
    parse,
    parse_handshake,
    swap_words,
)

RETRY_S = 0.25
"""How often an unanswered handshake request is sent again (as libsrt does)."""
_FLAGS = OPT_TSBPDRCV | OPT_TLPKTDROP | OPT_NAKREPORT | OPT_REXMITFLG


@dataclass(frozen=True, slots=True)
class Connected:
    """The listener accepted: what the receiver needs."""

    peer_socket_id: int
    isn: int
    latency_ms: int
    flow_window: int
    decryptor: Decryptor | None


@dataclass(frozen=True, slots=True)
class Refused:
    """The listener rejected the connection (``reason``: ``SRT_REJ_*``, 1000+ its own)."""

    reason: int


class Caller:
    """One connection attempt from our socket ``socket_id``."""

    def __init__(
        self,
        socket_id: int,
        isn: int,
        latency_ms: int,
        stream_id: str = "",
        passphrase: str = "",
        key_len: int = 16,
        flow_window: int = 8192,
    ) -> None:
        self.socket_id = socket_id
        self._isn = isn
        self._latency = latency_ms
        self._stream_id = stream_id
        self._passphrase = passphrase
        self._window = flow_window
        self._km: KeyMaterial | None = new_key_material(passphrase, key_len) if passphrase else None
        self._request = self._handshake(HandshakeType.INDUCTION, 0)

    def request(self) -> bytes:
        """The handshake datagram to send now (the latest request, for a retry too)."""
        return self._request

    def receive(self, datagram: bytes) -> Connected | Refused | None:
        """A datagram from the listener; ``None`` while the handshake goes on (send
        :meth:`request` again) or when the datagram is not for this attempt."""
        try:
            packet = parse(datagram)
            if not isinstance(packet, ControlPacket) or packet.type != ControlType.HANDSHAKE:
                return None
            hs = parse_handshake(packet.body)
        except SrtError:
            return None
        if hs.type >= REJECT_BASE:
            return Refused(hs.type - REJECT_BASE)
        if hs.type == HandshakeType.INDUCTION and hs.version == 5:
            if hs.extension != SRT_MAGIC:
                return Refused(RejectReason.VERSION)  # an HSv4-only (UDT) listener
            self._request = self._handshake(HandshakeType.CONCLUSION, hs.cookie)
            return None
        if hs.type == HandshakeType.CONCLUSION and hs.version == 5:
            return self._concluded(hs)
        return None

    def _concluded(self, hs: Handshake) -> Connected | Refused:
        hsrsp = hs.extension_block(Extension.HSRSP)
        if hsrsp is None or len(hsrsp) < 12:
            return Refused(RejectReason.VERSION)
        _, _, latency = struct.unpack_from(">III", hsrsp)
        decryptor = None
        if self._km is not None:
            kmrsp = hs.extension_block(Extension.KMRSP)
            if kmrsp is None or len(kmrsp) <= 4:
                return Refused(RejectReason.UNSECURE)  # the listener did not take our key
            try:
                material = unwrap_key_material(kmrsp, self._passphrase)
            except BadSecret:
                return Refused(RejectReason.BADSECRET)
            except SrtError:
                return Refused(RejectReason.UNSECURE)
            decryptor = Decryptor(self._passphrase, material)
        return Connected(
            peer_socket_id=hs.socket_id,
            isn=hs.isn & 0x7FFFFFFF,
            # The sender's TSBPD delay for us (low half) is the latency it agreed to.
            latency_ms=max(self._latency, latency & 0xFFFF),
            flow_window=min(hs.flow_window, self._window) or self._window,
            decryptor=decryptor,
        )

    def _handshake(self, hs_type: int, cookie: int) -> bytes:
        if hs_type == HandshakeType.INDUCTION:
            hs = Handshake(
                4, 0, UDT_DGRAM, self._isn, 1500, self._window, hs_type, self.socket_id, 0,
                bytes(16),
            )  # fmt: skip
        else:
            flags = _FLAGS | (OPT_HAICRYPT if self._km is not None else 0)
            hsreq = struct.pack(">III", SRT_VERSION, flags, (self._latency << 16) | self._latency)
            extensions: list[tuple[int, bytes]] = [(Extension.HSREQ, hsreq)]
            ext_flags = HS_EXT_HSREQ
            if self._km is not None:
                extensions.append((Extension.KMREQ, self._km.raw))
                ext_flags |= HS_EXT_KMREQ
            if self._stream_id:
                extensions.append((Extension.SID, swap_words(self._stream_id.encode())))
                ext_flags |= HS_EXT_CONFIG
            hs = Handshake(
                5,
                len(self._km.keys[1]) // 8 if self._km is not None else 0,
                ext_flags,
                self._isn,
                1500,
                self._window,
                hs_type,
                self.socket_id,
                cookie,
                bytes(16),
                tuple(extensions),
            )
        return control(ControlType.HANDSHAKE, 0, 0, 0, hs.encode())
