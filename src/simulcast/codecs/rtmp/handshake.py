"""RTMP handshake: the simple (echo) form and the Flash Player 9 digest form.

The digest form, as ffmpeg, librtmp/OBS and nginx-rtmp implement it: a 32-byte HMAC-SHA256
digest sits inside the 1536-byte C1/S1 random block. Its offset is derived from four bytes of
the block (schema 0: bytes 8..11, digest at ``sum % 728 + 12``; schema 1: bytes 772..775,
digest at ``sum % 728 + 776``) and it signs the block minus the digest itself, keyed with the
first 30 bytes of the Flash Player key (client) or 36 bytes of the Media Server key (server).
S2 (and C2) are then 1504 random bytes followed by ``HMAC(HMAC(full_key, peer_digest), random)``.

Everything here is a pure function over bytes; callers supply the random bytes.
:class:`ServerHandshake` and :class:`ClientHandshake` run one side's exchange over a byte buffer
(the first stage of :mod:`simulcast.codecs.rtmp.connection`).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from simulcast.codecs.rtmp.errors import RemoteProtocolError

__all__ = [
    "CLIENT_VERSION",
    "PACKET_SIZE",
    "RTMP_VERSION",
    "SERVER_VERSION",
    "ClientHandshake",
    "ClientHello",
    "ServerHandshake",
    "client_c2",
    "client_hello",
    "find_digest",
    "server_response",
    "verify_s2",
]

RTMP_VERSION: Final = 3
PACKET_SIZE: Final = 1536
DIGEST_SIZE: Final = 32
CLIENT_VERSION: Final = bytes((9, 0, 124, 2))  # what ffmpeg announces; >= 9 enables digests
SERVER_VERSION: Final = bytes((13, 14, 10, 13))  # nginx-rtmp's; first byte >= 3 tells ffmpeg "FP9"

_KEY_TAIL: Final = bytes.fromhex("f0eec24a8068bee82e00d0d1029e7e576eec5d2d29806fab93b8e636cfeb31ae")
FP_KEY: Final = b"Genuine Adobe Flash Player 001" + _KEY_TAIL
FMS_KEY: Final = b"Genuine Adobe Flash Media Server 001" + _KEY_TAIL
FP_KEY_PARTIAL: Final = FP_KEY[:30]
FMS_KEY_PARTIAL: Final = FMS_KEY[:36]
_SCHEMA_BASES: Final = (8, 772)  # schema 0, schema 1


def _hmac(key: bytes, data: bytes) -> bytes:
    return hmac.new(key, data, hashlib.sha256).digest()


def _digest_offset(packet: bytes, schema: int) -> int:
    base = _SCHEMA_BASES[schema]
    return sum(packet[base : base + 4]) % 728 + base + 4


def _sign(packet: bytes, key: bytes, schema: int) -> tuple[bytes, bytes]:
    """Write the digest into ``packet`` (1536 bytes) at ``schema``'s offset; return both."""
    pos = _digest_offset(packet, schema)
    digest = _hmac(key, packet[:pos] + packet[pos + DIGEST_SIZE :])
    return packet[:pos] + digest + packet[pos + DIGEST_SIZE :], digest


def find_digest(packet: bytes, key: bytes) -> tuple[int, bytes] | None:
    """Return ``(schema, digest)`` if ``packet`` (C1 or S1) carries a valid digest for ``key``."""
    for schema in (0, 1):
        pos = _digest_offset(packet, schema)
        digest = packet[pos : pos + DIGEST_SIZE]
        expected = _hmac(key, packet[:pos] + packet[pos + DIGEST_SIZE :])
        if hmac.compare_digest(digest, expected):
            return schema, digest
    return None


def _answer(peer_digest: bytes, full_key: bytes, random: bytes) -> bytes:
    body = random[: PACKET_SIZE - DIGEST_SIZE]
    return body + _hmac(_hmac(full_key, peer_digest), body)


def _check_random(random: bytes, n: int) -> None:
    if len(random) < n:
        raise ValueError(f"need {n} random bytes, got {len(random)}")


def server_response(c0c1: bytes, random: bytes) -> bytes:
    """Answer C0+C1 (1537 bytes) with S0+S1+S2, given 2 * 1536 random bytes.

    A C1 with a valid Flash Player digest (either schema) gets a digest S1 in the same schema and
    a signed S2; anything else (simple handshake, unknown schema) gets S2 = C1.
    """
    if len(c0c1) != 1 + PACKET_SIZE:
        raise ValueError("c0c1 must be 1537 bytes")
    _check_random(random, 2 * PACKET_SIZE)
    if c0c1[0] != RTMP_VERSION:
        raise RemoteProtocolError(f"unsupported RTMP version {c0c1[0]} (RTMPE is not supported)")
    c1 = c0c1[1:]
    found = find_digest(c1, FP_KEY_PARTIAL) if any(c1[4:8]) else None
    s1_body = random[8:PACKET_SIZE]
    if found is None:
        return bytes((RTMP_VERSION,)) + bytes(8) + s1_body + c1
    schema, digest = found
    s1, _ = _sign(bytes(4) + SERVER_VERSION + s1_body, FMS_KEY_PARTIAL, schema)
    s2 = _answer(digest, FMS_KEY, random[PACKET_SIZE:])
    return bytes((RTMP_VERSION,)) + s1 + s2


@dataclass(frozen=True, slots=True)
class ClientHello:
    """What the client sends first (C0+C1) and the digest it must remember to check S2."""

    c0c1: bytes
    digest: bytes


def client_hello(random: bytes) -> ClientHello:
    """Build a digest C0+C1 (schema 0, version 9.0.124.2, as ffmpeg does) from 1528 random bytes."""
    _check_random(random, PACKET_SIZE - 8)
    c1, digest = _sign(bytes(4) + CLIENT_VERSION + random[: PACKET_SIZE - 8], FP_KEY_PARTIAL, 0)
    return ClientHello(bytes((RTMP_VERSION,)) + c1, digest)


def client_c2(s1: bytes, random: bytes) -> bytes:
    """Build C2 for S1: signed against S1's server digest if it has one, else an echo of S1."""
    if len(s1) != PACKET_SIZE:
        raise ValueError("s1 must be 1536 bytes")
    _check_random(random, PACKET_SIZE)
    found = find_digest(s1, FMS_KEY_PARTIAL)
    if found is None:
        return s1
    return _answer(found[1], FP_KEY, random)


def verify_s2(s2: bytes, c1_digest: bytes) -> bool:
    """True if S2 is the digest-form answer to the C1 that carried ``c1_digest``."""
    body = s2[: PACKET_SIZE - DIGEST_SIZE]
    expected = _hmac(_hmac(FMS_KEY, c1_digest), body)
    return hmac.compare_digest(s2[PACKET_SIZE - DIGEST_SIZE :], expected)


RandomBytes = Callable[[int], bytes]


class ServerHandshake:
    """The server's side over a buffer of received bytes: C0+C1 in, S0+S1+S2 out, C2 in."""

    def __init__(self, random: RandomBytes) -> None:
        self._random = random
        self._answered = False
        self.peer_digest = False
        """Whether the client used the digest form."""
        self.done = False

    def receive(self, buffer: bytearray) -> bytes:
        """Consume what ``buffer`` holds of the client's part; the bytes to send back. Once
        :attr:`done`, what is left in ``buffer`` is the first chunks."""
        out = b""
        if not self._answered:
            if buffer[:1] and buffer[0] != RTMP_VERSION:
                raise RemoteProtocolError(f"unsupported RTMP version {buffer[0]}")
            if len(buffer) < 1 + PACKET_SIZE:
                return out
            c0c1 = bytes(buffer[: 1 + PACKET_SIZE])
            del buffer[: 1 + PACKET_SIZE]
            out = server_response(c0c1, self._random(2 * PACKET_SIZE))
            self._answered = True
            self.peer_digest = any(out[5:9])  # S1 version is zero for the simple form
        if len(buffer) < PACKET_SIZE:
            return out
        del buffer[:PACKET_SIZE]  # C2 is not checked: clients differ and it proves nothing
        self.done = True
        return out


class ClientHandshake:
    """The client's side: :meth:`hello` (C0+C1) out, S0+S1+S2 in, C2 out."""

    def __init__(self, random: RandomBytes) -> None:
        self._random = random
        self._c1 = self._c1_digest = b""
        self.verified: bool | None = None
        """Whether S2 matched our C1 (not fatal when it does not)."""
        self.peer_digest = False
        """Whether S1 carried a server digest."""
        self.done = False

    def hello(self) -> bytes:
        """C0+C1 (digest form, schema 0)."""
        hello = client_hello(self._random(PACKET_SIZE - 8))
        self._c1_digest, self._c1 = hello.digest, hello.c0c1[1:]
        return hello.c0c1

    def receive(self, buffer: bytearray) -> bytes:
        """Consume S0+S1+S2 once ``buffer`` holds them all; C2 then (else nothing yet)."""
        if buffer[:1] and buffer[0] != RTMP_VERSION:
            raise RemoteProtocolError(f"unsupported RTMP version {buffer[0]}")
        size = 1 + 2 * PACKET_SIZE
        if len(buffer) < size:
            return b""
        s1 = bytes(buffer[1 : 1 + PACKET_SIZE])
        s2 = bytes(buffer[1 + PACKET_SIZE : size])
        del buffer[:size]
        c2 = client_c2(s1, self._random(PACKET_SIZE))
        self.verified = s2 == self._c1 or verify_s2(s2, self._c1_digest)
        self.peer_digest = find_digest(s1, FMS_KEY_PARTIAL) is not None
        self.done = True
        return c2
