"""Processing elements (V1.md): the graph's only decoders and encoders.

:class:`ProcessingElement` sits behind an element whose settings ask for a change of the media
(an output's ``format``/``encoding``, an input's ``audioGainPercent``) and re-emits its upstream
stream through an :class:`FfmpegWorker`; everything else in the graph copies bytes.
:class:`VideoPlayerElement` is a source: an uploaded MP4 played in real time, looping.

Encoded output is H.264 (libx264) + AAC, a keyframe every 2 s, CBR-like (``maxrate`` =
bitrate, ``bufsize`` = 2x): what Twitch and YouTube ingest ask for.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable, Coroutine, Mapping, Sequence
from typing import Any

from simulcast.codecs.avc import AvcConfig, ConfigError, parse_avc_config
from simulcast.codecs.unit import Kind
from simulcast.engine import ElementSpec
from simulcast.media.elements import Element, ElementError, GraphContext
from simulcast.media.ffmpeg_worker import INPUT, SIDE, FfmpegWorker, SideOutput
from simulcast.media.reframe import AutoReframe, filter_graph
from simulcast.media.stream import LiveStream
from simulcast.media.switcher import Switcher, Takeover

log = logging.getLogger("simulcast.processing")

KEYFRAME_SECONDS = 2
DEFAULT_VIDEO_KBPS = 4500
DEFAULT_AUDIO_KBPS = 128

DUAL_HD: Mapping[str, tuple[tuple[int, int, int], tuple[int, int, int]]] = {
    # format: ((width, height, x) of the horizontal picture, (same) of the vertical one)
    "dualhd-2640": ((1920, 1080, 0), (720, 1280, 1920)),
    "dualhd-2000": ((1280, 720, 0), (720, 1280, 1280)),
    "dualhd-1760": ((1280, 720, 0), (480, 854, 1280)),
}
"""V1.md's Dual HD layouts: both pictures sit at the top of the frame."""

VERTICAL_WIDTH = "trunc(ih*9/32)*2"
"""The width of a 9:16 crop of the whole height (even, for 4:2:0)."""

_background: set[asyncio.Task[None]] = set()


def _spawn(work: Coroutine[Any, Any, None]) -> None:
    """Run ``work`` in the background (a worker stopping), keeping a reference to it."""
    task = asyncio.create_task(work)
    _background.add(task)
    task.add_done_callback(_background.discard)


def needs_processing(spec: ElementSpec, source_format: str) -> bool:
    """Whether ``spec`` asks for decoding: an output with an encoding or a picture to cut, an
    input with an audio gain."""
    settings = spec.settings
    if spec.type == "inputstream":
        return settings.get("audioGainPercent", 100) != 100
    if spec.type == "outputstream":
        return (
            bool(settings.get("encoding"))
            or bool(video_filters(settings, source_format))
            or auto_reframe(settings, source_format)
        )
    return False


def auto_reframe(settings: Mapping[str, Any], source_format: str) -> bool:
    """Whether an output's 9:16 crop follows faces (``reframe: auto`` of a horizontal source)."""
    return (
        settings.get("format") == "vertical"
        and settings.get("reframe") == "auto"
        and source_format not in DUAL_HD
        and source_format != "vertical"
    )


def video_filters(settings: Mapping[str, Any], source_format: str) -> list[str]:
    """The crop (Dual HD part or 9:16 centre reframe) and scale/fps an output's settings ask
    for; an :func:`auto_reframe` crop moves at run time, so it is not here.

    A Dual HD frame smaller than its layout is cropped as well as it can (the input's state
    shows the mismatch).
    """
    wanted = settings.get("format") or "source"
    filters = []
    if source_format in DUAL_HD and wanted in ("horizontal", "vertical"):
        w, h, x = DUAL_HD[source_format][0 if wanted == "horizontal" else 1]
        filters.append(f"crop=w='min({w},iw)':h='min({h},ih)':x='min({x},iw-ow)':y=0")
    elif (
        wanted == "vertical"
        and source_format != "vertical"
        and not auto_reframe(settings, source_format)
    ):
        filters.append(f"crop=w='{VERTICAL_WIDTH}':h=ih:x='(iw-ow)/2':y=0")
    encoding = _mapping(settings.get("encoding"))
    width, height = encoding.get("width"), encoding.get("height")
    if width or height:
        filters.append(f"scale={width or -2}:{height or -2}")
    if encoding.get("fps"):
        filters.append(f"fps={encoding['fps']}")
    return filters


def encode_args(
    ffmpeg: str,
    *,
    video: list[str] | None,
    audio: list[str],
    encoding: Mapping[str, Any],
) -> list[str]:
    """An ffmpeg command line reading FLV on stdin and writing FLV on stdout.

    ``video`` is the video filter chain (``None``: copy the video as it is); audio is always
    re-encoded (AAC) when ``audio`` has filters or the video is re-encoded.
    """
    args = [ffmpeg, "-hide_banner", "-nostats", "-loglevel", "error"]
    args += ["-fflags", "+nobuffer", "-analyzeduration", "1000000", "-f", "flv", "-i", INPUT]
    args += ["-map", "0:v?", "-map", "0:a?"]
    if video is not None:
        args += ["-vf", ",".join([*video, "format=yuv420p"])]
    if audio:
        args += ["-af", ",".join(audio)]
    return args + encode_tail(encoding, copy_video=video is None)


def encode_tail(encoding: Mapping[str, Any], *, copy_video: bool = False) -> list[str]:
    """The encoders (H.264 + AAC, or copied video + AAC) and the FLV output on stdout."""
    vkbps = int(encoding.get("videoBitrateKbps") or DEFAULT_VIDEO_KBPS)
    akbps = int(encoding.get("audioBitrateKbps") or DEFAULT_AUDIO_KBPS)
    if copy_video:
        args = ["-c:v", "copy"]
    else:
        args = [
            # zerolatency: no lookahead or B-frames, so a change (an overlay) shows at once
            "-c:v", "libx264", "-preset", "veryfast", "-tune", "zerolatency", "-profile:v", "high",
            "-b:v", f"{vkbps}k", "-maxrate", f"{vkbps}k", "-bufsize", f"{vkbps * 2}k",
            "-force_key_frames", f"expr:gte(t,n_forced*{KEYFRAME_SECONDS})",
            "-x264-params", f"keyint={KEYFRAME_SECONDS * 60}:scenecut=0:nal-hrd=cbr",
        ]  # fmt: skip
    args += ["-c:a", "aac", "-b:a", f"{akbps}k"]
    return [*args, "-flvflags", "no_duration_filesize", "-f", "flv", "pipe:1"]


class WorkerElement(Element):
    """An element whose output stream is written by one :class:`FfmpegWorker` (subclasses
    set :attr:`worker`)."""

    def __init__(self, spec: ElementSpec, ctx: GraphContext) -> None:
        super().__init__(spec, ctx)
        self._stream = ctx.new_stream(spec.id)
        self._switcher = Switcher(self._stream, on_params=lambda p: None, on_takeover=self._took)
        self.worker: FfmpegWorker | None = None

    @property
    def stream(self) -> LiveStream:
        """The element's (encoded) output stream."""
        return self._stream

    def _took(self, takeover: Takeover) -> None:
        if takeover.previous is not None:
            takeover.previous.kick()

    def tick(self, now: float) -> None:
        """Sample the worker's counters."""
        if self.worker is not None:
            self.worker.sample(now)

    def figures(self) -> dict[str, object]:
        """The worker's fps in/out, speed, drops and last error."""
        return self.worker.figures() if self.worker is not None else {}

    async def close(self) -> None:
        """Stop the process, close the stream."""
        if self.worker is not None:
            await self.worker.stop()
        self._stream.close()


class FilterElement(WorkerElement):
    """A worker element whose ffmpeg transforms ``upstream``'s stream (fed on stdin): its output
    is live while both the worker and its input are."""

    def __init__(self, spec: ElementSpec, ctx: GraphContext, upstream: Element) -> None:
        super().__init__(spec, ctx)
        self._upstream = upstream

    def _filter_worker(
        self,
        args: Callable[[], Sequence[str]],
        *,
        live_edge: bool = False,
        side: SideOutput | None = None,
    ) -> FfmpegWorker:
        """The worker running ``args`` on the upstream stream (not started)."""
        return FfmpegWorker(
            f"{self._ctx.instance_id}/{self.id}",
            args,
            self._switcher,
            upstream=self._upstream.stream,
            queue_bytes=self._ctx.queue_bytes,
            on_live=self._worker_live,
            live_edge=live_edge,
            side=side,
        )

    def _input_config(self) -> AvcConfig | None:
        """The upstream picture's AVC configuration (size, frame rate; ``None`` before it)."""
        header = self._upstream.stream.sequence_headers.get(Kind.VIDEO)
        if header is None:
            return None
        with contextlib.suppress(ConfigError, IndexError):
            return parse_avc_config(header.payload[5:])
        return None

    def _worker_live(self, live: bool) -> None:
        self._set_live(live and self._upstream.live)

    def changed(self, upstream: Element) -> None:
        """The input stopped: so does this element's output (until the worker's next frame)."""
        if not upstream.live:
            self._set_live(False)


class ProcessingElement(FilterElement):
    """Re-encodes its upstream stream as ``owner`` (an output or input element) asks.

    It is not in the configuration: its figures show in its owner's state (``processing``).
    """

    def __init__(
        self, owner: ElementSpec, ctx: GraphContext, upstream: Element, source_format: str
    ) -> None:
        super().__init__(owner, ctx, upstream)
        self._source_format = source_format
        self._live = False
        self._reframe: AutoReframe | None = None
        side = None
        if auto_reframe(owner.settings, source_format):
            self._reframe = AutoReframe(f"{ctx.instance_id}/{owner.id}")
            side = SideOutput(self._reframe.frame_bytes, self._reframe.on_frame)
        self.worker = self._filter_worker(self._args, side=side)
        if self._reframe is not None:
            self._reframe.worker = self.worker
            self._reframe.start()
        self.worker.start()

    def _args(self) -> list[str]:
        settings = self.spec.settings
        ffmpeg = self._ctx.ffmpeg
        encoding = _mapping(settings.get("encoding"))
        if self.spec.type == "inputstream":
            gain = float(str(settings.get("audioGainPercent", 100))) / 100
            return encode_args(ffmpeg, video=None, audio=[f"volume={gain:g}"], encoding={})
        video = video_filters(settings, self._source_format)
        if self._reframe is None:
            return encode_args(ffmpeg, video=video, audio=[], encoding=encoding)
        if config := self._input_config():
            self._reframe.set_source(config.width, config.height)
        return [
            # -stats_period: how often ffmpeg reads its commands (the crop's moves) on stdin
            ffmpeg, "-hide_banner", "-nostats", "-stats_period", "0.1", "-loglevel", "error",
            # Not +nobuffer: with an input read from /dev/fd/N it holds back every frame.
            "-analyzeduration", "1000000", "-f", "flv", "-i", INPUT,
            "-filter_complex", filter_graph(VERTICAL_WIDTH, video),
            "-map", "[v]", "-map", "0:a?", *encode_tail(encoding),
            "-map", "[faces]", "-f", "rawvideo", SIDE,
        ]  # fmt: skip

    def check(self, spec: ElementSpec, destinations: Mapping[str, str]) -> None:
        """A face-following crop is turned on or off only by a restart (its worker differs)."""
        if auto_reframe(spec.settings, self._source_format) != (self._reframe is not None):
            raise ElementError(f"{spec.id}: turning reframe auto on or off needs a restart")

    def update(self, spec: ElementSpec, destinations: Mapping[str, str]) -> None:
        """New processing settings restart the worker (its output continues at a keyframe)."""
        old = self._args()
        super().update(spec, destinations)
        if self._args() != old and self.worker is not None:
            self.worker.restart()

    def figures(self) -> dict[str, object]:
        """The worker's figures, and the face tracking's with ``reframe: auto``."""
        figures = super().figures()
        return figures | self._reframe.figures() if self._reframe is not None else figures

    async def close(self) -> None:
        """Stop face tracking, then the worker."""
        if self._reframe is not None:
            await self._reframe.stop()
        await super().close()


class VideoPlayerElement(WorkerElement):
    """``videoplayer``: ``file`` (an absolute path, resolved by the control plane) played in
    real time, looping when ``loop``; copied when it is H.264 + AAC, else encoded.

    A file that disappears stops the player with an error in its state; the instance goes on.
    """

    def __init__(self, spec: ElementSpec, ctx: GraphContext) -> None:
        super().__init__(spec, ctx)
        self.error: str | None = None
        self._copy = False
        self._start()

    @property
    def path(self) -> str:
        """The file played."""
        return str(self.spec.settings.get("file") or "")

    def _start(self) -> None:
        if not self.path or not os.path.isfile(self.path):
            self.error = f"file not found: {self.path or '(none)'}"
            return
        self.error = None
        self._copy = _copyable(self.path)
        self.worker = FfmpegWorker(
            f"{self._ctx.instance_id}/{self.id}",
            self._args,
            self._switcher,
            on_live=self._set_live,
        )
        self.worker.start()

    def _args(self) -> list[str]:
        args = [self._ctx.ffmpeg, "-hide_banner", "-nostats", "-loglevel", "error", "-re"]
        if self.spec.settings.get("loop", True):
            args += ["-stream_loop", "-1"]
        args += ["-i", self.path, "-map", "0:v:0?", "-map", "0:a:0?"]
        if self._copy:
            args += ["-c", "copy"]
        else:
            args += [
                "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p",
                "-force_key_frames", f"expr:gte(t,n_forced*{KEYFRAME_SECONDS})",
                "-c:a", "aac", "-b:a", f"{DEFAULT_AUDIO_KBPS}k",
            ]  # fmt: skip
        return [*args, "-flvflags", "no_duration_filesize", "-f", "flv", "pipe:1"]

    def check(self, spec: ElementSpec, destinations: Mapping[str, str]) -> None:
        """A file to play."""
        if not spec.settings.get("file"):
            raise ElementError(f"{spec.id}: file is required")

    def update(self, spec: ElementSpec, destinations: Mapping[str, str]) -> None:
        """Another file or loop setting: play it from its start."""
        changed = spec.settings != self.spec.settings
        super().update(spec, destinations)
        if changed:
            self._restart()

    def _restart(self) -> None:
        worker, self.worker = self.worker, None
        if worker is not None:
            old = worker

            async def stop_then_start() -> None:
                await old.stop()
                self._start()

            _spawn(stop_then_start())
        else:
            self._start()

    def tick(self, now: float) -> None:
        """A deleted file stops the player (the open file would otherwise play on)."""
        super().tick(now)
        if self.worker is not None and not os.path.isfile(self.path):
            self.error = "file deleted while playing"
            log.warning("%s: %s (%s)", self.id, self.error, self.path)
            worker, self.worker = self.worker, None
            _spawn(worker.stop())
            self._set_live(False)

    def state(self) -> dict[str, object]:
        """Playing or not, copy or encode, the worker's figures, an error."""
        figures = self.figures()
        return figures | {
            "live": self.live,
            "state": "error" if self.error else ("playing" if self.live else "starting"),
            "copy": self._copy,
            "lastError": self.error or figures.get("lastError"),
        }


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _copyable(path: str) -> bool:
    """Whether the file's streams can go out as they are (H.264 video, AAC audio)."""
    # PyAV (~15 MB resident) is imported by the one instance element that probes a file, so a
    # node that only relays never loads it.
    import av

    try:
        with av.open(path) as container:
            video = [s.codec_context.name for s in container.streams.video]
            audio = [s.codec_context.name for s in container.streams.audio]
    except (av.FFmpegError, OSError):
        return False
    return video[:1] in ([], ["h264"]) and audio[:1] in ([], ["aac"]) and bool(video or audio)
