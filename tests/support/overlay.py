"""HTML overlay helpers: red and blue test pages served on loopback, a live decoder of what an
in-test RTMP sink receives, and a colour check tolerant of the encoder's rounding."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import av

from tests.support import free_port
from tests.support.media import Processes, wait_listening
from tests.support.rtmp_sink import RtmpSink

PAGE = (
    "<html><body style='margin:0;background:transparent'>"
    "<div style='position:absolute;left:40px;top:30px;width:100px;height:80px;"
    "background:{colour}'></div></body></html>"
)
"""A transparent page with one box (x 40-140, y 30-110) of ``colour``."""


async def colour_pages(procs: Processes, root: Path) -> str:
    """Serve ``red.html`` and ``blue.html`` (``PAGE``) from ``root`` on loopback; the base URL."""
    _write_pages(root)
    port = free_port()
    await procs.start(
        sys.executable, "-m", "http.server", str(port), "-b", "127.0.0.1", "-d", str(root)
    )
    await wait_listening(port)
    return f"http://127.0.0.1:{port}"


def _write_pages(root: Path) -> None:
    root.mkdir()
    for name, colour in (("red", "#ff0000"), ("blue", "#0000ff")):
        (root / f"{name}.html").write_text(PAGE.format(colour=colour))


def is_colour(pixel: Sequence[int], rgb: tuple[int, int, int]) -> bool:
    """``pixel`` is ``rgb`` give or take the encoder's rounding."""
    return all(abs(int(p) - c) < 40 for p, c in zip(pixel, rgb, strict=True))


class LiveDecoder:
    """Decodes the H.264 a sink receives, as it arrives (the newest picture)."""

    def __init__(self, sink: RtmpSink) -> None:
        self._sink = sink
        self._next = 0
        self._codec: Any = None
        self.picture: Any = None

    def poll(self) -> Any:
        """Decode what arrived since the last call; return the newest picture."""
        messages = self._sink.messages
        while self._next < len(messages):
            type_id, _ts, body = messages[self._next]
            self._next += 1
            if type_id != 9 or len(body) < 6:
                continue
            if body[1] == 0:  # AVC sequence header
                self._codec = av.CodecContext.create("h264", "r")
                self._codec.extradata = body[5:]
            elif self._codec is not None:
                for frame in self._codec.decode(av.Packet(body[5:])):
                    self.picture = frame.to_ndarray(format="rgb24")
        return self.picture
