"""Encode slates with the bundled ffmpeg, once per parameter set, in the background.

An encode is an ffmpeg subprocess (a still PNG looped into one H.264 GOP matching the live
stream's profile, level, size and frame rate, plus AAC silence at its sample rate and channel
count) writing FLV to a pipe, so the event loop never blocks on it. Results are kept in memory
for the life of the process: every later session with the same parameters reuses them (an
encode takes 0.1 to 1.5 s, so a disk cache would not pay for itself).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from fractions import Fraction
from pathlib import Path

from simulcast.media.slate import Slate, SlateParams

log = logging.getLogger("simulcast.slate")

DEFAULT_IMAGE = Path(__file__).with_name("slate.png")
"""The built-in slate: "Stream will resume shortly" on a dark background (1280x720)."""

LOOP_SECONDS = 2.0
"""Length of the slate loop: one GOP, so it restarts with a keyframe every time."""

_PROFILES = {66: "baseline", 77: "main", 88: "main", 100: "high", 110: "high10", 122: "high422"}
_ENCODE_TIMEOUT_S = 60.0


def ffmpeg_args(ffmpeg: str, image: Path, params: SlateParams) -> list[str]:
    """The ffmpeg command line that encodes one slate loop as FLV to stdout."""
    args = [ffmpeg, "-hide_banner", "-nostats", "-loglevel", "error"]
    if params.has_video:
        rate = Fraction(params.fps).limit_denominator(1001)
        args += ["-loop", "1", "-framerate", str(rate), "-i", str(image)]
    if params.has_audio:
        layout = "mono" if params.channels == 1 else "stereo"
        args += ["-f", "lavfi", "-i", f"anullsrc=r={params.sample_rate}:cl={layout}"]
    if params.has_video:
        w, h = params.width, params.height
        frames = max(1, round(params.fps * LOOP_SECONDS))
        args += [
            "-vf",
            f"scale={w}:{h}:force_original_aspect_ratio=decrease,"
            f"pad={w}:{h}:(ow-iw)/2:(oh-ih)/2,setsar=1,format=yuv420p",
            "-c:v", "libx264", "-preset", "veryfast", "-tune", "stillimage",
            "-profile:v", _PROFILES.get(params.profile, "high"),
            "-level:v", f"{params.level / 10:.1f}" if params.level >= 10 else "1b",
            "-g", str(frames), "-keyint_min", str(frames), "-sc_threshold", "0", "-bf", "0",
            # SPS/PPS also in-band in the keyframe: decoders that ignore a mid-stream sequence
            # header still switch to the slate's parameters.
            "-x264-params", "repeat-headers=1",
            "-frames:v", str(frames + 1),
        ]  # fmt: skip
    if params.has_audio:
        args += ["-c:a", "aac", "-b:a", "64k", "-ac", str(params.channels or 2)]
        args += ["-t", str(LOOP_SECONDS + 0.5)]
    args += ["-f", "flv", "pipe:1"]
    return args


class SlateEncoder:
    """Slates by parameters: encoded at most once each, awaited by whoever needs them."""

    def __init__(self, ffmpeg: str, image: Path | None = None) -> None:
        self._ffmpeg = ffmpeg
        self._image = image or DEFAULT_IMAGE
        self._tasks: dict[SlateParams, asyncio.Task[Slate | None]] = {}

    def prepare(self, params: SlateParams) -> asyncio.Task[Slate | None]:
        """Start encoding ``params`` in the background (no-op when cached or under way)."""
        task = self._tasks.get(params)
        if task is None or (task.done() and task.result() is None):
            task = self._tasks[params] = asyncio.create_task(
                self._load(params), name=f"slate-{params.width}x{params.height}"
            )
        return task

    async def get(self, params: SlateParams) -> Slate | None:
        """The slate for ``params`` (``None`` if it cannot be encoded)."""
        return await asyncio.shield(self.prepare(params))

    async def close(self) -> None:
        """Cancel encodes still running."""
        for task in self._tasks.values():
            task.cancel()
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)

    async def _load(self, params: SlateParams) -> Slate | None:
        try:
            return Slate.from_flv(params, await self._encode(params))
        except (OSError, ValueError, TimeoutError) as exc:
            log.error("cannot encode the slate for %s: %s", params, exc)
            return None

    async def _encode(self, params: SlateParams) -> bytes:
        proc = await asyncio.create_subprocess_exec(
            *ffmpeg_args(self._ffmpeg, self._image, params),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            async with asyncio.timeout(_ENCODE_TIMEOUT_S):
                out, err = await proc.communicate()
        finally:
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
        if proc.returncode != 0:
            raise ValueError(f"ffmpeg exited {proc.returncode}: {err.decode(errors='replace')}")
        log.info("slate encoded for %s (%d bytes)", params, len(out))
        return out
