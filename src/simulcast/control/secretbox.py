"""Encryption at rest for secrets the server must read back.

API keys and passwords are stored as digests (``security``); secrets the server itself has to use
later (platform keys inside destination URLs, webhook signing secrets, Nostr Wallet Connect URIs)
are sealed with a server key instead. The key is ``SIMULCAST_SECRET_KEY`` or, when unset, a key
file created once in the data dir with mode 0600.

Rotation: set ``SIMULCAST_SECRET_KEY`` to ``NEW,OLD``; the first key seals, every key opens, so
secrets sealed with the old key keep working and are re-sealed with the new one when next written.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from collections.abc import Sequence
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from simulcast.settings import Settings

KEY_FILE = "secret.key"


class SecretBoxError(Exception):
    """A sealed value could not be opened (wrong key, or the value was tampered with)."""


class SecretBox:
    """Seals and opens short strings with Fernet (AES-128-CBC + HMAC-SHA256, timestamped)."""

    def __init__(self, keys: Sequence[bytes]) -> None:
        if not keys:
            raise ValueError("at least one key is needed")
        self._fernet = MultiFernet([Fernet(k) for k in keys])
        # Short signatures (URL tokens) use keys derived from the same secrets, never the raw
        # Fernet keys, so a signature reveals nothing about what seals.
        self._mac_keys = [hashlib.sha256(b"simulcast-mac:" + k).digest() for k in keys]

    @classmethod
    def from_settings(cls, settings: Settings) -> SecretBox:
        """The server's box: ``secret_key`` when set, else the data dir's key file (created)."""
        if settings.secret_key is not None:
            raw = settings.secret_key.get_secret_value()
            return cls([k.strip().encode() for k in raw.split(",") if k.strip()])
        return cls([_key_file(settings.data_dir)])

    def seal(self, plaintext: str) -> str:
        """The sealed form of ``plaintext`` (ASCII, safe to store in a text column)."""
        return self._fernet.encrypt(plaintext.encode()).decode()

    def open(self, sealed: str) -> str:
        """The plaintext of a value :meth:`seal` made; :class:`SecretBoxError` if it can't."""
        try:
            return self._fernet.decrypt(sealed.encode()).decode()
        except (InvalidToken, ValueError) as exc:
            raise SecretBoxError("sealed value cannot be opened with this server's key") from exc

    def sign(self, message: str) -> str:
        """A short URL-safe signature of ``message`` (128-bit HMAC-SHA256, with the first key)."""
        return _mac(self._mac_keys[0], message)

    def verify(self, message: str, signature: str) -> bool:
        """Whether ``signature`` is :meth:`sign`'s for ``message`` under any key (constant time)."""
        given = signature.encode()
        return any(hmac.compare_digest(_mac(k, message).encode(), given) for k in self._mac_keys)


def _mac(key: bytes, message: str) -> str:
    digest = hmac.new(key, message.encode(), hashlib.sha256).digest()[:16]
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def new_key() -> str:
    """A new random key in the form ``SIMULCAST_SECRET_KEY`` takes."""
    return Fernet.generate_key().decode()


def _key_file(data_dir: Path) -> bytes:
    path = data_dir / KEY_FILE
    if path.exists():
        return path.read_bytes().strip()
    data_dir.mkdir(parents=True, exist_ok=True)
    key = Fernet.generate_key()
    # O_EXCL: two processes starting together keep one key, the loser reads the winner's.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_bytes().strip()
    with os.fdopen(fd, "wb") as f:
        f.write(key)
    return key
