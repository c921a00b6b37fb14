"""What the HTTP layer and services share: settings, database, engine, limiter, caches."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from simulcast.control.background import Background
from simulcast.control.live_events import LiveEvents
from simulcast.control.ratelimit import RateLimiter
from simulcast.control.services.auth import Principal
from simulcast.control.services.credentials import LAST_USED_RESOLUTION_MS
from simulcast.engine import Engine
from simulcast.settings import Settings

AUTH_CACHE_SECONDS = 5.0
STATUS_CACHE_SECONDS = 1.0


K = TypeVar("K")
V = TypeVar("V")


@dataclass
class TtlCache(Generic[K, V]):
    """A small time-bounded memo for hot read paths.

    Entries live ``ttl`` seconds. This node clears the caches whenever keys, destinations or
    logins change; other nodes see such a change within ``ttl``.
    """

    ttl: float
    max_entries: int = 100_000
    _entries: dict[K, tuple[V, float]] = field(default_factory=dict)
    _pending: dict[K, asyncio.Future[V]] = field(default_factory=dict)
    _generation: int = 0

    def get(self, key: K) -> tuple[bool, V | None]:
        """``(hit, value)``; a hit may hold ``None`` (e.g. a known-bad credential)."""
        entry = self._entries.get(key)
        if entry is None or entry[1] < time.monotonic():
            return False, None
        return True, entry[0]

    def put(self, key: K, value: V) -> None:
        """Remember a value."""
        if len(self._entries) >= self.max_entries:
            self._entries.clear()
        self._entries[key] = (value, time.monotonic() + self.ttl)

    def clear(self) -> None:
        """Forget everything, including loads under way (a revoked key read before the
        revocation must not be remembered after it)."""
        self._entries.clear()
        self._pending.clear()
        self._generation += 1

    async def get_or_load(self, key: K, load: Callable[[], Awaitable[V]]) -> V:
        """The cached value, else ``load()``'s result, loading once for concurrent callers.

        Without the single flight, every request arriving while an entry is expired would query
        the database at once: a stall on each expiry under load.
        """
        hit, value = self.get(key)
        if hit:
            return value  # type: ignore[return-value]
        pending = self._pending.get(key)
        if pending is None:
            pending = asyncio.ensure_future(load())
            self._pending[key] = pending
            generation = self._generation
            pending.add_done_callback(lambda done: self._loaded(key, done, generation))
        return await asyncio.shield(pending)

    def _loaded(self, key: K, done: asyncio.Future[V], generation: int) -> None:
        if generation != self._generation:
            return
        self._pending.pop(key, None)
        if not done.cancelled() and done.exception() is None:
            self.put(key, done.result())


@dataclass
class ControlContext:
    """Everything a request handler may use, built once by the composition root.

    ``db`` opens read-write transactions; ``read`` opens sessions for pure reads (on SQLite they
    do not take the write lock). ``auth_cache`` holds resolved credentials; ``status_cache``
    holds the stored part of status answers for a second, for viewers that poll;
    ``live_events`` fans the engine's events out to open dashboards.
    """

    settings: Settings
    db: async_sessionmaker[AsyncSession]
    read: async_sessionmaker[AsyncSession]
    engine: Engine
    limiter: RateLimiter
    auth_cache: TtlCache[str, Principal | None] = field(
        default_factory=lambda: TtlCache(ttl=AUTH_CACHE_SECONDS)
    )
    status_cache: TtlCache[tuple[int, int | None, int | None, int, int], object] = field(
        default_factory=lambda: TtlCache(ttl=STATUS_CACHE_SECONDS, max_entries=10_000)
    )
    use_stamps: TtlCache[str, bool] = field(
        default_factory=lambda: TtlCache(ttl=LAST_USED_RESOLUTION_MS / 1000)
    )
    """Credentials whose last use this node recorded within the minute (no write needed)."""
    live_events: LiveEvents = field(default_factory=LiveEvents)

    async def health(self, background: Background) -> dict[str, object]:
        """``/healthz`` of every role, once the database answers: ``{"ok": true,
        "liveSessions": N, "jobs": [...]}``, ``jobs`` being this node's background work (state,
        last pass, failures)."""
        async with self.read() as session:
            await session.connection()
        return {
            "ok": True,
            "liveSessions": len(self.engine.sessions()),
            "jobs": [
                {
                    "name": job.name,
                    "state": job.state,
                    "lastTickMs": job.last_tick_ms,
                    "failures": job.failures,
                    "lastError": job.last_error,
                }
                for job in background.status()
            ],
        }

    def forget_cached(self) -> None:
        """Drop every cached read after a change to keys, destinations or logins."""
        self.auth_cache.clear()
        self.status_cache.clear()
