"""Per-key request limits on the `limits` library (memory by default, Redis for several nodes)."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from limits import RateLimitItemPerMinute
from limits.aio.strategies import MovingWindowRateLimiter
from limits.storage import storage_from_string


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

    def __init__(self, storage_uri: str) -> None:
        uri = storage_uri if storage_uri.startswith("async+") else "async+" + storage_uri
        self._limiter = MovingWindowRateLimiter(storage_from_string(uri))
        self._items: dict[int, RateLimitItemPerMinute] = {}

    async def hit(self, bucket: str, per_minute: int) -> RateDecision:
        """Count one request against ``bucket`` and report whether it may proceed."""
        item = self._items.get(per_minute)
        if item is None:
            item = self._items[per_minute] = RateLimitItemPerMinute(per_minute)
        allowed = await self._limiter.hit(item, bucket)
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
