"""The media node assembled: the engine of ``simulcast.media`` with this node's sources and sinks.

``media/`` runs sessions and instances on whatever listeners, pulls and outputs it is handed;
``ingest/`` and ``outputs/`` implement them on the wire. This module, above all three, is the one
place that picks the concrete ones and their settings, so no layer imports the one above it.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from simulcast.engine import ControlPlane, OutputSpec
from simulcast.ingest.pull import PullTiming
from simulcast.ingest.rtmp_pull import RtmpPull
from simulcast.ingest.rtmp_server import RtmpIngestServer
from simulcast.ingest.srt_pull import SrtPull
from simulcast.ingest.srt_server import SrtIngestServer
from simulcast.media.local_engine import LocalEngine
from simulcast.media.output import Output, OutputFactory
from simulcast.media.sources import Pull, PullTarget
from simulcast.outputs.rtmp_push import RtmpPush
from simulcast.settings import Settings


def media_engine(
    settings: Settings,
    control: ControlPlane,
    outputs: Mapping[str, OutputFactory] = MappingProxyType({}),
) -> LocalEngine:
    """The node's media engine: RTMP(S) and SRT ingest, RTMP and SRT pulls, RTMP pushes, and the
    output kinds in ``outputs`` (``hls``, ``archive``: their factories share state the caller keeps,
    such as the HLS channels HTTP serves)."""

    def rtmp_push(spec: OutputSpec) -> Output:
        # The handshake timeout bounds how long a push may take to connect and get published.
        return RtmpPush(
            spec.url,
            chunk_size=settings.rtmp_chunk_size,
            connect_timeout=settings.rtmp_handshake_timeout,
            write_stall_seconds=settings.push_write_stall_seconds,
            close_grace_seconds=settings.close_grace_seconds,
        )

    timing = PullTiming(
        connect_timeout=settings.rtmp_handshake_timeout,
        stall_seconds=settings.rtmp_publish_stall_seconds,
        retry_min_seconds=settings.push_retry_min_seconds,
        retry_max_seconds=settings.push_retry_max_seconds,
    )

    def pull(url: str, target: PullTarget) -> Pull:
        """An RTMP(S) or SRT (caller mode) pull of ``url``."""
        if url.lower().startswith("srt://"):
            return SrtPull(url, target, timing, latency_ms=settings.srt_latency_ms)
        return RtmpPull(url, target, timing)

    return LocalEngine(
        settings,
        control,
        rtmp=lambda handler: RtmpIngestServer(settings, handler),
        srt=lambda handler: SrtIngestServer(settings, handler),
        pull=pull,
        outputs={"rtmp": rtmp_push, **outputs},
    )
