"""Pricing: the seed's examples and properties of minute and bandwidth charges."""

from __future__ import annotations

from fractions import Fraction

from hypothesis import given
from hypothesis import strategies as st

from simulcast.control.services import pricing
from simulcast.control.services.pricing import GB, DestinationSpan
from simulcast.settings import Settings

SETTINGS = Settings(cost_per_platform=2, free_platforms=1, billing_minute_seconds=60)
MIN = 60_000


def test_seed_five_and_a_half_minutes_cost_ten_sats() -> None:
    spans = [DestinationSpan(1, 0), DestinationSpan(2, 0)]
    assert pricing.session_cost(SETTINGS, spans, started_ms=0, ended_ms=5 * MIN + 30_000) == 10
    assert pricing.rate_per_minute(SETTINGS, 2) == 2


def test_seed_bandwidth_overage_is_twelve_sats() -> None:
    used = 12_300_000_000  # 2.30 GB over the free 10 GB
    assert pricing.overage_sats(Settings(), used) == 12
    usage = pricing.bandwidth_usage(Settings(), used)
    assert (usage.used_gb, usage.remaining_gb, usage.overage_gb) == ("12.30", "0.00", "2.30")
    assert usage.overage_sats == 12
    assert pricing.bandwidth_usage(Settings(), 0).remaining_gb == "10.00"


def test_first_created_destinations_are_free() -> None:
    spans = [DestinationSpan(7, 0), DestinationSpan(3, 0), DestinationSpan(5, 0)]
    assert pricing.minute_charges(SETTINGS, spans, started_ms=0, minute=0) == {5: 2, 7: 2}
    free = Settings(cost_per_platform=0)
    assert pricing.minute_charges(free, spans, started_ms=0, minute=0) == {}


def test_destination_counts_when_present_at_the_minute_end() -> None:
    added = DestinationSpan(2, joined_ms=int(1.5 * MIN))
    removed = DestinationSpan(3, joined_ms=0, left_ms=int(3.5 * MIN))
    spans = [DestinationSpan(1, 0), added, removed]
    charges = [pricing.minute_charges(SETTINGS, spans, started_ms=0, minute=k) for k in range(5)]
    # minute 0: only 3 is paid; 1..2: 2 and 3; minute 3 (3:00-4:00): 3 left at 3:30 -> only 2.
    assert charges == [{3: 2}, {2: 2, 3: 2}, {2: 2, 3: 2}, {2: 2}, {2: 2}]
    # Leaving exactly at a boundary still pays the minute that ended there; joining there doesn't.
    edge = [DestinationSpan(1, 0), DestinationSpan(2, 0, left_ms=MIN), DestinationSpan(3, MIN)]
    assert pricing.minute_charges(SETTINGS, edge, started_ms=0, minute=0) == {2: 2}


@given(
    n=st.integers(0, 6),
    free=st.integers(0, 3),
    cost=st.integers(0, 50),
    elapsed=st.integers(0, 10**8),
    started=st.integers(0, 2 * 10**12),
)
def test_static_session_costs_completed_minutes_times_rate(
    n: int, free: int, cost: int, elapsed: int, started: int
) -> None:
    settings = Settings(cost_per_platform=cost, free_platforms=free, billing_minute_seconds=60)
    spans = [DestinationSpan(i, started) for i in range(n)]
    total = pricing.session_cost(settings, spans, started_ms=started, ended_ms=started + elapsed)
    assert total == (elapsed // MIN) * pricing.rate_per_minute(settings, n)


@given(used=st.integers(0, 10**13), limit=st.integers(0, 20), price=st.integers(0, 100))
def test_overage_is_the_exact_price_rounded_up(used: int, limit: int, price: int) -> None:
    settings = Settings(bandwidth_limit_gb_per_hour=limit, bandwidth_overage_sats_per_gb=price)
    exact = Fraction(max(0, used - limit * GB), GB) * price
    sats = pricing.overage_sats(settings, used)
    assert sats - 1 < exact <= sats
    assert pricing.overage_bytes(settings, used) == max(0, used - limit * GB)


def test_minute_length_follows_the_setting() -> None:
    assert pricing.minute_ms(Settings(billing_minute_seconds=0.5)) == 500
    assert pricing.completed_minutes(5 * MIN + 30_000, MIN) == 5
