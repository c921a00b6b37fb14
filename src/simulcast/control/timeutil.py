"""Wall-clock helpers (the control plane's only clock)."""

from __future__ import annotations

import time


def now_ms() -> int:
    """Current unix time in integer milliseconds."""
    return int(time.time() * 1000)


def hour_start(unix_seconds: float) -> int:
    """The start (unix seconds) of the clock hour containing ``unix_seconds``."""
    return int(unix_seconds) // 3600 * 3600
