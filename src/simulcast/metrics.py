"""Prometheus metrics of the media plane, in a dedicated registry.

The HTTP layer serves :data:`REGISTRY` at ``/metrics``. A dedicated registry (not the
process-global default) keeps tests and several engines in one process from colliding on names
and keeps the default process/platform collectors out of our exposition unless we add them.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

REGISTRY = CollectorRegistry(auto_describe=True)

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
