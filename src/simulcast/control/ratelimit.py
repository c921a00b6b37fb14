"""Per-key request limits on the `limits` library (memory by default, Redis for several nodes).

Redis is reached with redis-py (the control bus's client), each command bounded by a second.
While the storage is unreachable (Redis restarting), every decision follows ``on_storage_down``:
``open`` allows the request (limits are not enforced meanwhile), ``closed`` refuses it with a
``Retry-After``; either way a warning is logged (at most every ``WARN_EVERY_SECONDS``). Counting
resumes by itself once the storage answers again.

The library (and its storage's client) loads at the first counted request: a media node counts
only testing-mode HLS viewers and bad credentials, and most never do.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from limits import RateLimitItemPerMinute
    from limits.aio.strategies import MovingWindowRateLimiter
    from limits.errors import StorageError

log = logging.getLogger("simulcast.ratelimit")

WARN_EVERY_SECONDS = 10.0
CLOSED_RETRY_SECONDS = 5
REDIS_TIMEOUT_SECONDS = 1.0


@dataclass(frozen=True, slots=True)
class RateDecision:
    """The outcome of one hit: whether it is allowed and the values of the X-RateLimit headers."""

    allowed: bool
    limit: int
    remaining: int
    reset_at: int
    retry_after: int

    def headers(self) -> dict[str, str]:
        """``X-RateLimit-*`` headers (and ``Retry-After`` when refused)."""
        out = {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(self.remaining),
            "X-RateLimit-Reset": str(self.reset_at),
        }
        if not self.allowed:
            out["Retry-After"] = str(self.retry_after)
        return out


class RateLimiter:
    """A moving one-minute window per bucket name."""

    def __init__(
        self, storage_uri: str, on_storage_down: Literal["open", "closed"] = "open"
    ) -> None:
        self._uri = storage_uri if storage_uri.startswith("async+") else "async+" + storage_uri
        self._strategy: MovingWindowRateLimiter | None = None
        self._items: dict[int, RateLimitItemPerMinute] = {}
        self._down = on_storage_down
        self._warned_at = -math.inf

    @property
    def _limiter(self) -> MovingWindowRateLimiter:
        if self._strategy is None:
            from limits.aio.strategies import MovingWindowRateLimiter
            from limits.storage import storage_from_string

            options: dict[str, float | str | bool] = {"wrap_exceptions": True}
            if self._uri.startswith(("async+redis", "async+rediss")):
                options.update(
                    implementation="redispy",
                    socket_timeout=REDIS_TIMEOUT_SECONDS,
                    socket_connect_timeout=REDIS_TIMEOUT_SECONDS,
                )
            self._strategy = MovingWindowRateLimiter(storage_from_string(self._uri, **options))
        return self._strategy

    async def hit(self, bucket: str, per_minute: int) -> RateDecision:
        """Count one request against ``bucket`` and report whether it may proceed."""
        limiter = self._limiter
        from limits.errors import StorageError

        item = self._item(per_minute)
        try:
            allowed = await limiter.hit(item, bucket)
            return await self._decision(item, bucket, per_minute, allowed)
        except StorageError as exc:
            return self._storage_down(per_minute, exc)

    async def exhausted(self, bucket: str, per_minute: int) -> RateDecision | None:
        """The refusal if ``bucket`` is already at its limit, else ``None``; counts nothing.

        For limits on failures: check before the expensive attempt, :meth:`hit` after it failed.
        """
        limiter = self._limiter
        from limits.errors import StorageError

        item = self._item(per_minute)
        try:
            if await limiter.test(item, bucket):
                return None
            return await self._decision(item, bucket, per_minute, False)
        except StorageError as exc:
            decision = self._storage_down(per_minute, exc)
            return None if decision.allowed else decision

    def _storage_down(self, per_minute: int, exc: StorageError) -> RateDecision:
        """The decision while the storage is unreachable (``on_storage_down``)."""
        now = time.monotonic()
        if now - self._warned_at >= WARN_EVERY_SECONDS:
            self._warned_at = now
            log.warning(
                "rate limit storage unreachable (%s): failing %s (requests are %s)",
                exc.storage_error.__class__.__name__,
                self._down,
                "allowed" if self._down == "open" else "refused with 429",
            )
        allowed = self._down == "open"
        retry = 0 if allowed else CLOSED_RETRY_SECONDS
        reset = math.ceil(time.time()) + retry
        return RateDecision(allowed, per_minute, per_minute if allowed else 0, reset, retry)

    def _item(self, per_minute: int) -> RateLimitItemPerMinute:
        item = self._items.get(per_minute)
        if item is None:
            from limits import RateLimitItemPerMinute

            item = self._items[per_minute] = RateLimitItemPerMinute(per_minute)
        return item

    async def _decision(
        self, item: RateLimitItemPerMinute, bucket: str, per_minute: int, allowed: bool
    ) -> RateDecision:
        stats = await self._limiter.get_window_stats(item, bucket)
        now = time.time()
        retry = max(1, math.ceil(stats.reset_time - now)) if not allowed else 0
        return RateDecision(
            allowed=allowed,
            limit=per_minute,
            remaining=max(0, stats.remaining),
            reset_at=math.ceil(stats.reset_time),
            retry_after=retry,
        )
