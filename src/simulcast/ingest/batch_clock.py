"""The clock every publisher's batch window keeps: when reading rests until.

Its own module so that what measures the relay against a floor (``bench/floor_proxy.py``)
wakes on exactly the relay's cadence without importing the relay.
"""

from __future__ import annotations

# uvloop's time() and timers count whole milliseconds: a timer may wake this far from its time.
TIMER_SLACK = 0.002


def rest_until(now: float, window: float) -> float:
    """When a publisher that finished a batch at ``now`` reads again: the first boundary of the
    shared ``window`` clock after ``now``, at most ``window`` plus a timer's slack away.

    uvloop's clock and timers count whole milliseconds, so a rest timer fires at a boundary or a
    millisecond either side of it, and floor division of such a float lands on the boundary just
    reached (``1000.05 // 0.05 == 20000.0``): that rest would end at once and double the
    wake-ups. Within a timer's slack of a boundary counts as at it.
    """
    return ((now + TIMER_SLACK) // window + 1) * window
