"""Secrets: generation, hashing and constant-time checks of keys, tokens and passwords.

API keys and session tokens are high-entropy random strings, so a SHA-256 digest is a safe
stored form and allows an indexed lookup; passwords are low-entropy and get argon2.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_HASHER = PasswordHasher()


def new_api_key(kind: str) -> str:
    """A new ``sk_`` or ``pk_`` key: the prefix plus 32 random bytes, URL-safe."""
    return f"{kind}_{secrets.token_urlsafe(32)}"


def new_token(nbytes: int = 32) -> str:
    """A random URL-safe token (session tokens, playback tokens, webhook ids)."""
    return secrets.token_urlsafe(nbytes)


def new_stream_key() -> str:
    """A stream key as the seed shows it: lowercase hex."""
    return secrets.token_hex(16)


def new_session_id() -> str:
    """A short random session id (the seed shows e.g. ``ABC123``)."""
    alphabet = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
    return "".join(secrets.choice(alphabet) for _ in range(10))


def digest(secret: str) -> str:
    """The stored form of a key or token: hex SHA-256."""
    return hashlib.sha256(secret.encode()).hexdigest()


def digests_equal(a: str, b: str) -> bool:
    """Constant-time comparison of two stored digests."""
    return hmac.compare_digest(a.encode(), b.encode())


def hash_password(password: str) -> str:
    """argon2id hash of a password."""
    return _HASHER.hash(password)


def verify_password(stored_hash: str | None, password: str) -> bool:
    """Whether ``password`` matches; always spends argon2 time so timing does not leak users."""
    if stored_hash is None:
        _HASHER.hash(password)
        return False
    try:
        return _HASHER.verify(stored_hash, password)
    except (VerificationError, InvalidHashError):
        return False
