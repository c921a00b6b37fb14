"""Simulcast: one RTMP ingest fanned out to many platforms, HLS with DVR, metered in sats."""

__version__ = "0.5.0"
