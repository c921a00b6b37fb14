"""Bytes of self-hosted HLS served, counted in memory and persisted every few seconds.

Counting happens on the request path, so it is a dict update; a flusher task adds the counts to
:class:`~simulcast.control.db.models.BandwidthBucket` rows (one per destination and clock hour)
with an upsert-add at least every ``bandwidth_flush_seconds``, and once more on shutdown. A crash
loses at most one interval. Readers add :meth:`BandwidthCounter.unflushed_bytes` to what the
database holds, so usage figures are exact at any moment.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from simulcast.control.db.models import BandwidthBucket
from simulcast.control.timeutil import hour_start
from simulcast.periodic import Periodic

log = logging.getLogger("simulcast.bandwidth")

_Key = tuple[int, int, int]  # (account id, destination id, hour start)


class BandwidthCounter:
    """Per (account, destination, clock hour) byte counters with periodic persistence."""

    def __init__(
        self,
        db: async_sessionmaker[AsyncSession],
        flush_seconds: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._db = db
        self._interval = flush_seconds
        self._clock = clock
        self._pending: Counter[_Key] = Counter()
        self._flushing: Counter[_Key] = Counter()  # taken by a flush that has not committed yet
        self._lock = asyncio.Lock()
        self.flushes = 0
        """Flushes that committed so far. A reader that memoizes what the database holds keys it
        on this: after a flush, the bytes it moved are no longer unflushed, and a memo from
        before it would count them nowhere."""
        self.job = Periodic("bandwidth-flush", self.flush, flush_seconds)

    def add(self, *, account_id: int, destination_id: int, nbytes: int) -> None:
        """Count ``nbytes`` served now for a destination of an account."""
        if nbytes > 0:
            self._pending[(account_id, destination_id, hour_start(self._clock()))] += nbytes

    def unflushed_bytes(self, *, account_id: int, hour_start: int) -> int:
        """Bytes an account served in an hour that are not in the database yet."""
        return sum(
            n
            for counter in (self._pending, self._flushing)
            for (account, _dest, hour), n in counter.items()
            if account == account_id and hour == hour_start
        )

    def unflushed_hourly(self, *, account_id: int) -> dict[int, int]:
        """Bytes per hour start of an account that are not in the database yet."""
        hours: Counter[int] = Counter()
        for counter in (self._pending, self._flushing):
            for (account, _dest, hour), n in counter.items():
                if account == account_id:
                    hours[hour] += n
        return dict(hours)

    async def start(self) -> None:
        """Start the periodic flusher."""
        self.job.start(first_after=self._interval)

    async def stop(self) -> None:
        """Stop the flusher and persist what is left."""
        await self.job.stop()
        await self.flush()

    async def flush(self) -> None:
        """Add the pending counts to the database; on failure they stay pending for the next try."""
        async with self._lock:
            if not self._pending:
                return
            self._flushing, self._pending = self._pending, Counter()
            try:
                async with self._db() as session, session.begin():
                    for (account_id, destination_id, hour), nbytes in self._flushing.items():
                        await _upsert_add(session, account_id, destination_id, hour, nbytes)
            except Exception:
                log.exception("bandwidth flush failed; %d counters kept", len(self._flushing))
                self._pending.update(self._flushing)
            else:
                self.flushes += 1
            finally:
                self._flushing = Counter()


async def _upsert_add(
    session: AsyncSession, account_id: int, destination_id: int, hour: int, nbytes: int
) -> None:
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    stmt = insert(BandwidthBucket).values(
        account_id=account_id, destination_id=destination_id, hour_start=hour, bytes=nbytes
    )
    stmt = stmt.on_conflict_do_update(
        index_elements=[BandwidthBucket.destination_id, BandwidthBucket.hour_start],
        set_={"bytes": BandwidthBucket.bytes + stmt.excluded.bytes},
    )
    await session.execute(stmt)
