"""The HLS playback route as FastAPI documents it, and the served-bytes counter as a dependency.

:class:`~simulcast.control.api.hls.HlsFastPath` serves these requests ahead of routing; the
route stays mounted for OpenAPI (and for any request the fast path lets through). Kept apart
from ``hls`` so a media node serves HLS without loading FastAPI.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response

from simulcast.control.api.hls import PLAYLIST_TYPE, SEGMENT_TYPE, get_playback, hls_file
from simulcast.control.bandwidth_counter import BandwidthCounter
from simulcast.control.schemas.common import error_responses

router = APIRouter(prefix="/hls", tags=["HLS playback"])
router.api_route(
    "/{token}/{name}",
    methods=["GET", "HEAD"],
    summary="HLS playlist or segment",
    response_class=Response,
    responses={
        200: {"content": {PLAYLIST_TYPE: {}, SEGMENT_TYPE: {}}},
        206: {"description": "Partial segment (Range)"},
        **error_responses(
            {
                401: "Missing or invalid credential",
                403: "The key is not for this stream",
                400: "Blocking reload asks for a part too far ahead",
                404: "Unknown token or file, or not live",
                414: "Query string too long",
                416: "Range not satisfiable",
                429: "Testing mode: shared viewer limit reached",
                503: "Blocking reload: the part did not come in time",
            }
        ),
    },
)(hls_file)


async def get_served(request: Request) -> BandwidthCounter:
    """The counter of HLS bytes served, for endpoints that report usage (add its unflushed
    counts)."""
    return get_playback(request).served


Served = Annotated[BandwidthCounter, Depends(get_served)]
"""The counter of HLS bytes served, as a dependency."""
