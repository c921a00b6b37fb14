"""SRT encryption, receiving side: key material (KMREQ/KMRSP) and AES-CTR payload decryption.

The caller sends a Key Material message (the SRT RFC draft, section 3.2.2) in its conclusion's
KMREQ extension, and again in-band (a USER control packet) when it rotates keys::

    byte 0: S(1) V(3)=1 PT(4)=2   1-2: sign 0x2029   3: KK (1 even, 2 odd, 3 both)
    4-7: KEKI   8: cipher (2 = AES-CTR)   9: auth   10: SE (2 = SRT)   11-13: reserved
    14: salt length / 4   15: key length / 4   then the salt, then the wrapped key(s)

The stream encrypting keys (one per KK bit, even first) are wrapped with RFC 3394 AES key wrap
under a KEK derived from the passphrase: PBKDF2-HMAC-SHA1 over the last 8 bytes of the salt,
2048 iterations, as long as a key. A payload is AES-CTR with the key its packet's KK flags name,
and the IV ``salt[0:14] XOR (packet sequence number at bytes 10-13)``, block counter in 14-15.
"""

from __future__ import annotations

import hashlib
import os
import struct
from dataclasses import dataclass

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap, aes_key_wrap

from simulcast.codecs.srt.packet import SrtError

KM_SIGN = 0x2029
KM_HEADER = 16
CIPHER_AES_CTR = 2
PBKDF2_ITERATIONS = 2048
PBKDF2_SALT_BYTES = 8
KEY_LENGTHS = (16, 24, 32)
PASSPHRASE_MIN = 10
PASSPHRASE_MAX = 79
EVEN, ODD = 1, 2
"""Key flags (KK) of a data packet and of a key material message."""


class KmState:
    """``SRT_KM_S_*``: the one-word KMRSP a listener sends instead of the key material."""

    UNSECURED = 0
    NOSECRET = 3
    BADSECRET = 4


class BadSecret(SrtError):
    """The key material does not unwrap with our passphrase."""


@dataclass(frozen=True, slots=True)
class KeyMaterial:
    """A parsed, unwrapped Key Material message: the keys by KK flag, and the salt."""

    raw: bytes
    keys: dict[int, bytes]
    salt: bytes


def valid_passphrase(passphrase: str) -> bool:
    """SRT takes passphrases of 10 to 79 characters."""
    return PASSPHRASE_MIN <= len(passphrase) <= PASSPHRASE_MAX


def _kek(passphrase: str, salt: bytes, key_len: int) -> bytes:
    return hashlib.pbkdf2_hmac(
        "sha1", passphrase.encode(), salt[-PBKDF2_SALT_BYTES:], PBKDF2_ITERATIONS, key_len
    )


def new_key_material(passphrase: str, key_len: int) -> KeyMaterial:
    """Fresh key material for a caller that sets a passphrase (a random even key and salt):
    the caller's KMREQ; the peer encrypts what it sends us with this key."""
    if key_len not in KEY_LENGTHS:
        raise SrtError(f"SRT key length must be one of {KEY_LENGTHS}")
    salt, key = os.urandom(16), os.urandom(key_len)
    header = bytes([0x12, 0x20, 0x29, EVEN, 0, 0, 0, 0, CIPHER_AES_CTR, 0, 2, 0, 0, 0, 4])
    raw = header + bytes([key_len // 4]) + salt + aes_key_wrap(_kek(passphrase, salt, key_len), key)
    return KeyMaterial(raw, {EVEN: key}, salt)


def unwrap_key_material(raw: bytes, passphrase: str) -> KeyMaterial:
    """Parse a Key Material message and unwrap its keys with ``passphrase``.

    Raises :class:`SrtError` for a message we cannot use, :class:`BadSecret` when the
    passphrase is not the one the keys were wrapped with.
    """
    if len(raw) < KM_HEADER:
        raise SrtError("key material shorter than its header")
    first, sign, kk = raw[0], struct.unpack_from(">H", raw, 1)[0], raw[3] & 0x03
    cipher, salt_len, key_len = raw[8], raw[14] * 4, raw[15] * 4
    if first != 0x12 or sign != KM_SIGN or not kk:
        raise SrtError("not an SRT key material message")
    if cipher != CIPHER_AES_CTR:
        raise SrtError(f"unsupported SRT cipher {cipher} (only AES-CTR)")
    if key_len not in KEY_LENGTHS or salt_len != 16:
        raise SrtError("key material with an unsupported key or salt length")
    count = 2 if kk == 3 else 1
    wrapped = raw[KM_HEADER + salt_len : KM_HEADER + salt_len + 8 + count * key_len]
    if len(wrapped) != 8 + count * key_len:
        raise SrtError("key material truncated")
    salt = raw[KM_HEADER : KM_HEADER + salt_len]
    try:
        plain = aes_key_unwrap(_kek(passphrase, salt, key_len), wrapped)
    except InvalidUnwrap:
        raise BadSecret("the key material does not match the passphrase") from None
    flags = [f for f in (EVEN, ODD) if kk & f]
    keys = {f: plain[i * key_len : (i + 1) * key_len] for i, f in enumerate(flags)}
    return KeyMaterial(bytes(raw[: KM_HEADER + salt_len + len(wrapped)]), keys, salt)


def km_state(state: int) -> bytes:
    """A KMRSP carrying only a state word (``KmState``): the caller learns why it failed."""
    return struct.pack(">I", state)


class Decryptor:
    """Decrypts one connection's payloads; takes new key material when the sender rotates."""

    def __init__(self, passphrase: str, material: KeyMaterial) -> None:
        self._passphrase = passphrase
        self._keys: dict[int, algorithms.AES] = {}
        self._nonce = 0
        self.update(material)

    def update(self, material: KeyMaterial) -> None:
        """Use ``material``'s keys (a key the message leaves out stays as it was)."""
        for flag, key in material.keys.items():
            self._keys[flag] = algorithms.AES(key)
        self._nonce = int.from_bytes(material.salt[:14] + b"\x00\x00", "big")

    def rekey(self, raw: bytes) -> bytes:
        """An in-band KMREQ: unwrap and use it; returns the KMRSP (the message echoed back,
        or a ``BADSECRET`` state when it does not unwrap)."""
        try:
            material = unwrap_key_material(raw, self._passphrase)
        except BadSecret:
            return km_state(KmState.BADSECRET)
        self.update(material)
        return material.raw

    def decrypt(self, seq: int, flags: int, payload: bytes) -> bytes | None:
        """The clear payload of packet ``seq`` encrypted with key ``flags`` (``None``: no such
        key, the packet is unusable)."""
        key = self._keys.get(flags)
        if key is None:
            return None
        iv = (self._nonce ^ (seq << 16)).to_bytes(16, "big")
        decryptor = Cipher(key, modes.CTR(iv)).decryptor()
        return decryptor.update(payload) + decryptor.finalize()
