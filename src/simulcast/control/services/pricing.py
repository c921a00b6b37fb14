"""Prices as pure functions of the settings: per-minute streaming and per-hour bandwidth overage.

Streaming: each enabled destination beyond the first ``free_platforms`` (in creation order) costs
``cost_per_platform`` sats per *completed* minute. Minute ``k`` of a session is the interval
``[started + k*M, started + (k+1)*M)``; a destination counts for it when it was live during the
minute and still part of the session **at the minute's end** (joined before the end, left at or
after it). So a destination added mid-minute pays from that minute on, one removed mid-minute does
not pay for that minute, and a session of 5 min 30 s with one paid destination at 2 sats/min costs
10 sats (the unfinished sixth minute is free). The free destinations of a minute are the first
``free_platforms`` of those counting for it, by creation order (ids grow with creation).

Only platform destinations (``rtmp``, ``twitch``, ``cloud-archive``) are platform minutes: a
``self-hosted`` destination never is (testing mode is free, production mode pays for bandwidth
only, as the seed says), so it is neither charged nor one of the free ones.

Bandwidth: 1 GB = 10^9 bytes; in each clock-hour bucket the bytes over
``bandwidth_limit_gb_per_hour`` cost ``bandwidth_overage_sats_per_gb`` per GB, rounded up to whole
sats per bucket (2.30 GB over at 5 sats/GB = 12 sats).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

from simulcast.settings import Settings

GB = 10**9
_CENTI_GB = Decimal(GB) / 100


PLATFORM_TYPES = ("rtmp", "twitch", "cloud-archive")
"""Destination types billed per minute; ``self-hosted`` is billed for bandwidth only."""


def is_platform(dest_type: str) -> bool:
    """Whether a destination of this type counts as a platform minute."""
    return dest_type in PLATFORM_TYPES


def paid_destinations(settings: Settings, destination_ids: Sequence[int]) -> list[int]:
    """The destinations that cost money: all but the first ``free_platforms`` by creation order.

    ``destination_ids`` are the enabled platform destinations; ids grow with creation, so
    sorting them gives creation order.
    """
    return sorted(destination_ids)[settings.free_platforms :]


@dataclass(frozen=True, slots=True)
class DestinationSpan:
    """A destination's part in a session: live from ``joined_ms`` until ``left_ms`` (``None``:
    still part of it)."""

    destination_id: int
    joined_ms: int
    left_ms: int | None = None


def minute_ms(settings: Settings) -> int:
    """The billing minute in integer milliseconds (60 000 unless shortened for tests)."""
    return max(1, round(settings.billing_minute_seconds * 1000))


def minute_charges(
    settings: Settings, spans: Sequence[DestinationSpan], *, started_ms: int, minute: int
) -> dict[int, int]:
    """Sats owed for completed minute ``minute`` of a session, by paid destination id.

    Only destinations with a non-zero price appear; an empty dict means the minute is free.
    """
    if settings.cost_per_platform == 0:
        return {}
    end = started_ms + (minute + 1) * minute_ms(settings)
    present = [
        s.destination_id
        for s in spans
        if s.joined_ms < end and (s.left_ms is None or s.left_ms >= end)
    ]
    return {dest: settings.cost_per_platform for dest in paid_destinations(settings, present)}


def session_cost(
    settings: Settings, spans: Sequence[DestinationSpan], *, started_ms: int, ended_ms: int
) -> int:
    """Sats a session costs in total: the sum of its completed minutes' charges."""
    minutes = completed_minutes(ended_ms - started_ms, minute_ms(settings))
    return sum(
        sum(minute_charges(settings, spans, started_ms=started_ms, minute=k).values())
        for k in range(minutes)
    )


def rate_per_minute(settings: Settings, enabled_destinations: int) -> int:
    """Sats per minute for a session with this many enabled platform destinations."""
    return max(0, enabled_destinations - settings.free_platforms) * settings.cost_per_platform


def completed_minutes(elapsed_ms: int, minute_ms: int) -> int:
    """Whole minutes in ``elapsed_ms`` (5 min 30 s -> 5)."""
    return max(0, elapsed_ms) // minute_ms


def overage_bytes(settings: Settings, used_bytes: int) -> int:
    """Bytes over the free allowance in one hour bucket."""
    return max(0, used_bytes - settings.bandwidth_limit_gb_per_hour * GB)


def overage_sats(settings: Settings, used_bytes: int) -> int:
    """Sats owed for one hour bucket: the overage in GB times the price, rounded up."""
    over = overage_bytes(settings, used_bytes) * settings.bandwidth_overage_sats_per_gb
    return -(-over // GB)


def _centi_gb(nbytes: int) -> Decimal:
    """Bytes as GB rounded to two decimals (half up)."""
    return (Decimal(nbytes) / _CENTI_GB).quantize(Decimal(1), rounding=ROUND_HALF_UP) / 100


@dataclass(frozen=True, slots=True)
class BandwidthUsage:
    """One hour bucket as the status endpoint shows it: GB strings with two decimals."""

    used_gb: str
    remaining_gb: str
    overage_gb: str
    overage_sats: int


def bandwidth_usage(settings: Settings, used_bytes: int) -> BandwidthUsage:
    """Format one bucket; ``remaining`` is derived from the rounded ``used`` so they add up."""
    used = _centi_gb(used_bytes)
    limit = Decimal(settings.bandwidth_limit_gb_per_hour)
    return BandwidthUsage(
        used_gb=f"{used:.2f}",
        remaining_gb=f"{max(Decimal(0), limit - used):.2f}",
        overage_gb=f"{_centi_gb(overage_bytes(settings, used_bytes)):.2f}",
        overage_sats=overage_sats(settings, used_bytes),
    )
