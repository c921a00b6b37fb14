"""Prometheus metrics of the media plane, in a dedicated registry.

The HTTP layer serves :data:`REGISTRY` at ``/metrics``. A dedicated registry (not the
process-global default) keeps tests and several engines in one process from colliding on names
and keeps the default process/platform collectors out of our exposition unless we add them.
"""

from __future__ import annotations

import weakref
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge

REGISTRY = CollectorRegistry(auto_describe=True)


class Buffers(Protocol):
    """Something holding media in memory (the engine's hub of live streams)."""

    def buffered(self) -> tuple[int, int, int]:
        """(GOP cache bytes, queued bytes, queued units) it holds now."""
        ...


_BUFFERS: weakref.WeakSet[Buffers] = weakref.WeakSet()


def watch_buffers(source: Buffers) -> None:
    """Report ``source``'s buffers in the gauges below (read at scrape time, so the relay's
    path pays nothing; totals over the node, so no per-stream label cardinality)."""
    _BUFFERS.add(source)


def _buffered(index: int) -> float:
    return float(sum(source.buffered()[index] for source in list(_BUFFERS)))


LIVE_SESSIONS = Gauge(
    "simulcast_live_sessions", "Live publish sessions on this node.", registry=REGISTRY
)
BYTES_IN = Counter(
    "simulcast_ingest_bytes", "Bytes received from publishers (RTMP wire bytes).", registry=REGISTRY
)
BYTES_OUT = Counter(
    "simulcast_output_bytes",
    "Bytes written to outputs, by output kind.",
    ["kind"],
    registry=REGISTRY,
)
RECONNECTS = Counter(
    "simulcast_output_reconnects",
    "Times an output that had gone live was reconnected, by output kind.",
    ["kind"],
    registry=REGISTRY,
)
DROPPED_FRAMES = Counter(
    "simulcast_output_dropped_frames",
    "Media frames dropped by slow outputs' bounded queues, by output kind.",
    ["kind"],
    registry=REGISTRY,
)
INGEST_REJECTED = Counter(
    "simulcast_ingest_rejected",
    "Publish attempts refused or closed for malformed input, by reason.",
    ["reason"],
    registry=REGISTRY,
)
PROTECTION = Counter(
    "simulcast_protection_events",
    "Disconnect protection: publishers lost while protected (disconnect), back in time "
    "(resume), taken over by another device (shift), never back (timeout).",
    ["event"],
    registry=REGISTRY,
)
# -- SRT ingest --
SRT_PACKETS = Counter(
    "simulcast_srt_packets",
    "SRT data packets of ended publishers: received, gaps (found missing on arrival), recovered "
    "(lost, repaired by retransmission), reordered (arrived late), dropped (given up on as too "
    "late), ts_discontinuity (PES packets lost to the demuxer), undecryptable (encrypted with a "
    "key we lack), rekeyed (in-band key material: the publisher rotated its AES key).",
    ["event"],
    registry=REGISTRY,
)
FLEET_NODES = Gauge(
    "simulcast_fleet_nodes",
    "Registered media nodes, by state (live: lease held; lost: lease ran out).",
    ["state"],
    registry=REGISTRY,
)
BACKGROUND_FAILURES = Counter(
    "simulcast_background_failures",
    "Failed passes of a piece of background work (each retried after a backoff), by job.",
    ["job"],
    registry=REGISTRY,
)
GOP_CACHE_BYTES = Gauge(
    "simulcast_gop_cache_bytes",
    "Bytes held by the GOP caches of live streams (each bounded by output_queue_bytes).",
    registry=REGISTRY,
)
GOP_CACHE_BYTES.set_function(lambda: _buffered(0))
QUEUED_BYTES = Gauge(
    "simulcast_output_queued_bytes",
    "Media bytes queued for outputs that are behind (each queue bounded by output_queue_bytes).",
    registry=REGISTRY,
)
QUEUED_BYTES.set_function(lambda: _buffered(1))
QUEUED_UNITS = Gauge(
    "simulcast_output_queued_units",
    "Media units (frames) queued for outputs that are behind.",
    registry=REGISTRY,
)
QUEUED_UNITS.set_function(lambda: _buffered(2))
