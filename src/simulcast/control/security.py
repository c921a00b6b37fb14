"""Secrets: generation, hashing and constant-time checks of keys, tokens and passwords.

API keys and session tokens are high-entropy random strings, so a SHA-256 digest is a safe
stored form and allows an indexed lookup; passwords are low-entropy and get argon2.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import secrets
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_HASHER = PasswordHasher()
T = TypeVar("T")
# argon2 takes ~180 ms of CPU by design; on the event loop that stalls every request and relay
# sharing it. argon2-cffi releases the GIL, so a few threads hash in parallel with the loop.
_HASH_THREADS = max(1, (os.cpu_count() or 2) // 2)  # at most half the cores: the loop needs one
_HASH_QUEUE = 4  # hashes waiting or running at once (a wait of ~2 hashes); beyond: refused
_pool: ThreadPoolExecutor | None = None
_pending = 0
_pending_lock = threading.Lock()


class HasherBusy(Exception):
    """Too many password hashes are queued already (a login flood): refuse, do not queue."""


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


def csrf_token(session_token: str) -> str:
    """The CSRF token of a dashboard session: an HMAC keyed by the session's own secret token.

    A page of the session embeds it and sends it back in ``X-CSRF-Token``; another site can
    neither read the page nor compute it (the cookie is HttpOnly and only its digest is stored).
    """
    return hmac.new(session_token.encode(), b"simulcast-csrf", hashlib.sha256).hexdigest()


def csrf_valid(session_token: str, presented: str | None) -> bool:
    """Whether ``presented`` is the CSRF token of ``session_token`` (constant time)."""
    return presented is not None and hmac.compare_digest(
        csrf_token(session_token).encode(), presented.encode()
    )


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


async def in_hash_pool(check: Callable[[], T]) -> T:
    """Run a password hash/verify off the event loop, in a small bounded pool.

    Raises :class:`HasherBusy` (without queueing) when ``_HASH_QUEUE`` are already waiting.
    """
    global _pool, _pending
    with _pending_lock:
        if _pending >= _HASH_QUEUE:
            raise HasherBusy
        _pending += 1
        if _pool is None:
            _pool = ThreadPoolExecutor(_HASH_THREADS, thread_name_prefix="argon2")
        pool = _pool
    try:
        return await asyncio.get_running_loop().run_in_executor(pool, check)
    finally:
        with _pending_lock:
            _pending -= 1


async def verify_password_off_loop(stored_hash: str | None, password: str) -> bool:
    """:func:`verify_password` in the hash pool (raises :class:`HasherBusy` when flooded)."""
    return await in_hash_pool(lambda: verify_password(stored_hash, password))


async def hash_password_off_loop(password: str) -> str:
    """:func:`hash_password` in the hash pool (raises :class:`HasherBusy` when flooded)."""
    return await in_hash_pool(lambda: hash_password(password))
