"""RTMP handshake: simple and digest forms (both schemas), client and server in memory."""

from __future__ import annotations

import hashlib
import hmac
import random

import pytest

from simulcast.codecs.rtmp import handshake as hs
from simulcast.codecs.rtmp.errors import RemoteProtocolError

N = hs.PACKET_SIZE


def rand(n: int, seed: int = 1) -> bytes:
    return random.Random(seed).randbytes(n)


def digest_c1(schema: int) -> tuple[bytes, bytes]:
    """A Flash Player style C1 signed in ``schema``, built independently of the module."""
    c1 = bytearray(bytes(4) + bytes((10, 0, 32, 18)) + rand(N - 8, schema + 7))
    base = (8, 772)[schema]
    pos = sum(c1[base : base + 4]) % 728 + base + 4
    digest = hmac.new(
        b"Genuine Adobe Flash Player 001", bytes(c1[:pos] + c1[pos + 32 :]), hashlib.sha256
    ).digest()
    c1[pos : pos + 32] = digest
    return bytes(c1), digest


def test_simple_handshake_echoes_c1() -> None:
    c1 = bytes(8) + rand(N - 8)
    reply = hs.server_response(b"\x03" + c1, rand(2 * N, 2))
    assert len(reply) == 1 + 2 * N
    assert reply[0] == 3
    assert reply[5:9] == bytes(4)  # simple S1: version zero
    assert reply[1 + N :] == c1


@pytest.mark.parametrize("schema", [0, 1])
def test_digest_handshake_both_schemas(schema: int) -> None:
    c1, c1_digest = digest_c1(schema)
    assert hs.find_digest(c1, hs.FP_KEY_PARTIAL) == (schema, c1_digest)
    reply = hs.server_response(b"\x03" + c1, rand(2 * N, 3))
    s1, s2 = reply[1 : 1 + N], reply[1 + N :]
    found = hs.find_digest(s1, hs.FMS_KEY_PARTIAL)
    assert found is not None and found[0] == schema
    # S2 as the spec (and ffmpeg's client check) computes it.
    key = hmac.new(hs.FMS_KEY, c1_digest, hashlib.sha256).digest()
    assert s2[-32:] == hmac.new(key, s2[:-32], hashlib.sha256).digest()
    assert hs.verify_s2(s2, c1_digest)


def test_version_without_digest_falls_back_to_echo() -> None:
    c1 = bytes(4) + bytes((9, 0, 124, 2)) + rand(N - 8)
    reply = hs.server_response(b"\x03" + c1, rand(2 * N))
    assert reply[1 + N :] == c1


def test_client_hello_is_ffmpeg_style() -> None:
    hello = hs.client_hello(rand(N - 8))
    assert hello.c0c1[0] == 3 and len(hello.c0c1) == 1 + N
    assert hello.c0c1[5:9] == bytes((9, 0, 124, 2))
    assert hs.find_digest(hello.c0c1[1:], hs.FP_KEY_PARTIAL) == (0, hello.digest)


def test_client_and_server_in_memory() -> None:
    hello = hs.client_hello(rand(N - 8, 4))
    reply = hs.server_response(hello.c0c1, rand(2 * N, 5))
    s1, s2 = reply[1 : 1 + N], reply[1 + N :]
    assert hs.verify_s2(s2, hello.digest)
    c2 = hs.client_c2(s1, rand(N, 6))
    s1_digest = hs.find_digest(s1, hs.FMS_KEY_PARTIAL)
    assert s1_digest is not None
    key = hmac.new(hs.FP_KEY, s1_digest[1], hashlib.sha256).digest()
    assert c2[-32:] == hmac.new(key, c2[:-32], hashlib.sha256).digest()


def test_client_echoes_simple_s1() -> None:
    s1 = bytes(8) + rand(N - 8)
    assert hs.client_c2(s1, rand(N)) == s1
    assert not hs.verify_s2(rand(N), b"\x00" * 32)


def test_rtmpe_is_refused() -> None:
    with pytest.raises(RemoteProtocolError):
        hs.server_response(b"\x06" + rand(N), rand(2 * N))
