"""Probing uploaded files: what container and codecs they hold, and whether they play.

Uploads are untrusted input for a demuxer and decoder, so probing runs in a child process
(``python -m simulcast.control.media_probe PATH`` prints one JSON object) with a time limit: a
file that crashes or hangs the decoder costs that child, never the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

VIDEO_CODECS = ("h264", "hevc")
AUDIO_CODECS = ("aac",)
MP4_FORMAT = "mov,mp4,m4a,3gp,3g2,mj2"
PNG_FORMATS = ("png_pipe", "image2", "apng")


class ProbeError(Exception):
    """The file cannot be used; the message names the reason."""


@dataclass(frozen=True, slots=True)
class Probe:
    """What a playable upload holds."""

    kind: str  # "mp4" | "png"
    container: str
    video_codec: str
    audio_codec: str | None
    width: int
    height: int
    duration_seconds: float | None

    def as_dict(self) -> dict[str, Any]:
        """The JSON form stored with the file."""
        return {
            "kind": self.kind,
            "container": self.container,
            "videoCodec": self.video_codec,
            "audioCodec": self.audio_codec,
            "width": self.width,
            "height": self.height,
            "durationSeconds": self.duration_seconds,
        }


def inspect(path: str) -> dict[str, Any]:
    """Open and decode the start of a file with PyAV: the :class:`Probe` fields, or ``error``."""
    import av

    try:
        container = av.open(path)
    except Exception as exc:
        return {"error": f"not a media file this server can read ({exc.__class__.__name__})"}
    with container:
        fmt = container.format.name
        if fmt in PNG_FORMATS:
            kind, container_name = "png", "png"
        elif fmt == MP4_FORMAT:
            kind, container_name = "mp4", "mp4"
        else:
            return {"error": f"not an MP4 or PNG file (the container is {fmt!r})"}
        if not container.streams.video:
            return {"error": "the file has no video (or image) stream"}
        video = container.streams.video[0]
        vcodec = video.codec_context.name
        if kind == "png" and vcodec != "png":
            return {"error": f"not a PNG image (codec {vcodec!r})"}
        if kind == "mp4" and vcodec not in VIDEO_CODECS:
            return {"error": f"video codec {vcodec!r} is not supported (H.264 or HEVC)"}
        audio = container.streams.audio[0] if container.streams.audio else None
        acodec = audio.codec_context.name if audio is not None else None
        if kind == "mp4" and acodec is not None and acodec not in AUDIO_CODECS:
            return {"error": f"audio codec {acodec!r} is not supported (AAC)"}
        try:
            frame = next(iter(container.decode(video=0)), None)
        except Exception as exc:
            return {"error": f"the video does not decode ({exc.__class__.__name__})"}
        if frame is None:
            return {"error": "the file holds no decodable picture"}
        duration = None
        if kind == "mp4":
            if container.duration is None or container.duration <= 0:
                return {"error": "the video has no duration"}
            duration = round(container.duration / 1_000_000, 3)
        return Probe(
            kind=kind,
            container=container_name,
            video_codec=vcodec,
            audio_codec=acodec,
            width=frame.width,
            height=frame.height,
            duration_seconds=duration,
        ).as_dict()


async def probe(path: Path, *, within: float) -> Probe:
    """Probe ``path`` in a child process; :class:`ProbeError` naming why it cannot be used."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        __name__,
        str(path),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), within)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        raise ProbeError(f"probing took longer than {within:g} s") from None
    try:
        result = json.loads(out)
    except ValueError:
        raise ProbeError("the file made the decoder fail") from None
    if "error" in result:
        raise ProbeError(str(result["error"]))
    return Probe(
        kind=result["kind"],
        container=result["container"],
        video_codec=result["videoCodec"],
        audio_codec=result["audioCodec"],
        width=int(result["width"]),
        height=int(result["height"]),
        duration_seconds=result["durationSeconds"],
    )


if __name__ == "__main__":
    print(json.dumps(inspect(sys.argv[1])))
