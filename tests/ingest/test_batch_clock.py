"""The publisher's batch window: when reading rests and resumes (``rest_until``)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from simulcast.ingest.batch_clock import rest_until

WINDOWS = (0.01, 0.02, 0.05, 0.1, 0.25, 0.5)


@pytest.mark.parametrize("window", WINDOWS)
def test_a_rest_that_ends_on_a_boundary_lasts_a_whole_window(window: float) -> None:
    # uvloop's clock reads whole milliseconds: a timer set for a boundary wakes exactly on it
    # (or a millisecond off), and the next rest must last a window, not end at once.
    for k in range(1_000_000, 1_000_400):
        boundary = round(k * window, 3)
        for now in (boundary - 0.001, boundary, boundary + 0.001):
            rest = rest_until(now, window) - now
            assert window - 0.0011 <= rest <= window + 0.0021, (now, window, rest)


@given(
    ms=st.integers(min_value=0, max_value=10**10),
    window=st.sampled_from(WINDOWS),
)
def test_every_rest_ends_on_the_shared_clock_within_the_window(ms: int, window: float) -> None:
    now = ms / 1000  # the loop's clock: whole milliseconds
    resume = rest_until(now, window)
    assert 0 < resume - now <= window + 0.0021
    # On the clock every publisher shares, so their reads fall in one loop iteration.
    ticks = resume / window
    assert abs(ticks - round(ticks)) < 1e-6
