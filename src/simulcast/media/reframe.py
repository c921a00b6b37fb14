"""``reframe: auto``: the 9:16 crop of a horizontal picture follows the largest face.

The output's ffmpeg worker also writes a small grey copy of the picture (:data:`DETECT_SIZE`,
:data:`DETECT_FPS` frames a second) to a side pipe; :class:`AutoReframe` runs a face detector
on it in a thread (a frame that arrives while the detector is busy is dropped, so its cost is
bounded by the detector's own speed and never delays the video), and every
:data:`COMMAND_PERIOD_S` moves the crop toward the largest face with a bounded speed and
acceleration and a dead band (so it never jumps, nor twitches with the detector's noise).
ffmpeg's crop gets each move as an ``x`` expression of the frame time ``t``, queued (ffmpeg's
``C`` command) to start exactly where the previous move ends, a little ahead of the frames the
worker is processing (:data:`LEAD_S`): the pan is continuous, frame by frame, even though moves
are decided four times a second. With no face for :data:`LOST_AFTER_S` the crop glides back to
the centre.

Detector: OpenCV's frontal-face Haar cascade (``opencv-python-headless``, whose wheels ship the
cascade files). YuNet, OpenCV's better CNN detector, needs an ONNX model file that no package in
the registries this project installs from ships. OpenCV is imported only here, when an
``auto`` reframe starts; the relay path never loads it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from typing import Any

from simulcast.media.ffmpeg_worker import FfmpegWorker

log = logging.getLogger("simulcast.processing")

DETECT_SIZE = (480, 270)
"""The picture the detector sees: a face of ~36 px at 720p is still found (>= 24 px here)."""
DETECT_FPS = 4
COMMAND_PERIOD_S = 0.25
MAX_SPEED = 0.35
"""Frame widths per second the crop's centre may move at most."""
MAX_ACCEL = 1.2
"""Frame widths per second squared: a pan starts and stops gently."""
GAIN = 2.5
"""Per second: the speed asked for is the distance to the face times this."""
DEAD_BAND = 0.04
"""A face this close (frame widths) to the centre of a still crop does not move it."""
LOST_AFTER_S = 3.0
LEAD_S = 0.7
"""How far ahead of the last output frame's time a move is queued: later than the frames
already in the filter graph and encoder, and than ffmpeg's next read of its commands, with
room for a loaded machine (a move applied late starts with a jump of its late part)."""
CROP = "crop@reframe"


def filter_graph(crop_width: str, after: list[str]) -> str:
    """The worker's filter graph: ``[v]``, the crop (centred until told otherwise) then
    ``after``; ``[faces]``, the detector's grey pictures."""
    w, h = DETECT_SIZE
    chain = ",".join([f"{CROP}=w='{crop_width}':h=ih:x='(iw-ow)/2':y=0", *after])
    return (
        f"[0:v]split=2[m][d];[d]fps={DETECT_FPS},scale={w}:{h},format=gray[faces];"
        f"[m]{chain},format=yuv420p[v]"
    )


def ramp_seconds(start: float, end: float) -> float:
    """How long the crop takes from ``start`` to ``end``: one command period, longer for a long
    move: never faster than :data:`MAX_SPEED`."""
    return max(COMMAND_PERIOD_S, abs(end - start) / MAX_SPEED)


def crop_x(start: float, end: float, at: float, seconds: float) -> str:
    """Crop ``x`` moving the crop's centre from ``start`` to ``end`` (fractions of the width)
    between the frame times ``at`` and ``at + seconds``."""
    progress = f"clip(if(isnan(t),0,(t-{at:.3f})/{seconds:.3f}),0,1)"  # t is NaN while configuring
    return f"iw*({start:.5f}+({end - start:.5f})*{progress})-ow/2"


class FaceTracker:
    """Where the crop's centre should be: the largest face, smoothed (see the module)."""

    def __init__(self, crop_fraction: float) -> None:
        self._half = min(crop_fraction, 1.0) / 2
        self.position = 0.5
        self._velocity = 0.0
        self._target: float | None = None
        self._seen_at = -math.inf

    def saw(self, centre: float | None, now: float) -> None:
        """A detection result: the largest face's centre (fraction of the width), or none."""
        if centre is not None:
            self._target, self._seen_at = centre, now

    def step(self, dt: float, now: float) -> float:
        """Advance ``dt`` seconds; the new position."""
        target = self._target if now - self._seen_at < LOST_AFTER_S else 0.5
        target = min(max(target if target is not None else 0.5, self._half), 1 - self._half)
        error = target - self.position
        wanted = 0.0 if abs(error) < DEAD_BAND and abs(self._velocity) < 1e-3 else error * GAIN
        wanted = max(-MAX_SPEED, min(MAX_SPEED, wanted))
        # Brake in time: never faster than what stops at the target with MAX_ACCEL.
        stop = math.sqrt(2 * MAX_ACCEL * abs(error))
        wanted = max(-stop, min(stop, wanted))
        change = max(-MAX_ACCEL * dt, min(MAX_ACCEL * dt, wanted - self._velocity))
        self._velocity += change
        self.position = min(max(self.position + self._velocity * dt, self._half), 1 - self._half)
        return self.position


class HaarFaces:
    """OpenCV's frontal-face cascade on :data:`DETECT_SIZE` grey pictures."""

    def __init__(self) -> None:
        import cv2  # here only: OpenCV is loaded by an auto reframe, never by the relay

        self._cv2: Any = cv2
        path = cv2.data.haarcascades + "haarcascade_frontalface_default.xml"  # type: ignore[attr-defined]
        self._cascade: Any = cv2.CascadeClassifier(path)
        if self._cascade.empty():
            raise RuntimeError(f"cannot load the face cascade {path}")

    def largest(self, grey: bytes) -> float | None:
        """The centre (fraction of the width) of the largest face in ``grey``, or ``None``."""
        import numpy as np

        w, h = DETECT_SIZE
        picture = np.frombuffer(grey, dtype=np.uint8).reshape(h, w)
        faces = self._cascade.detectMultiScale(
            picture, scaleFactor=1.15, minNeighbors=5, minSize=(24, 24)
        )
        if len(faces) == 0:
            return None
        x, _, fw, _ = max(faces, key=lambda f: int(f[2]) * int(f[3]))
        return (int(x) + int(fw) / 2) / w


class AutoReframe:
    """Feeds the detector from the worker's side output and steers its crop.

    :attr:`worker` (set once created, as it needs :meth:`on_frame`) runs the crop.
    """

    def __init__(self, name: str) -> None:
        self._name = name
        self.worker: FfmpegWorker | None = None
        self._restarts = 0
        self._detecting: asyncio.Task[None] | None = None
        self.tracker = FaceTracker(9 / 16 * 9 / 16)  # a 16:9 source until the size is known
        self._faces: HaarFaces | None = None
        self._busy = False
        self.detections = 0
        self.detect_ms = 0.0
        self.error: str | None = None
        self._sent = 0.5
        self._task: asyncio.Task[None] | None = None

    @property
    def frame_bytes(self) -> int:
        """Bytes of one detector picture."""
        return DETECT_SIZE[0] * DETECT_SIZE[1]

    def set_source(self, width: int, height: int) -> None:
        """The source's picture size: the crop is ``height * 9/16`` wide."""
        self.tracker = FaceTracker(height * 9 / 16 / width)

    def start(self) -> None:
        """Load the detector and start steering."""
        if self._task is None:
            self._task = asyncio.create_task(self._steer(), name=f"reframe-{self._name}")

    async def stop(self) -> None:
        """Stop steering."""
        for task in (self._task, self._detecting):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._task = self._detecting = None

    def on_frame(self, grey: bytes) -> None:
        """A detector picture: detect in a thread unless the last detection still runs."""
        if self._busy or self._faces is None:
            return  # dropped: this bounds the detector's cost
        self._busy = True
        self._detecting = asyncio.create_task(self._detect(grey))

    async def _detect(self, grey: bytes) -> None:
        assert self._faces is not None
        try:
            started = time.perf_counter()
            centre = await asyncio.to_thread(self._faces.largest, grey)
            self.detect_ms = round((time.perf_counter() - started) * 1000, 1)
            self.detections += 1
            self.tracker.saw(centre, time.monotonic())
            self.error = None
        except Exception as exc:  # no detector: the crop stays centred, the video flows
            self.error = str(exc) or type(exc).__name__
            log.warning("%s: face detection: %s", self._name, self.error)
        finally:
            self._busy = False

    async def _steer(self) -> None:
        try:  # loaded while ffmpeg starts (importing OpenCV takes a moment)
            self._faces = await asyncio.to_thread(HaarFaces)
        except Exception as exc:  # no detector: the crop stays centred, the video flows
            self.error = str(exc) or type(exc).__name__
            log.warning("%s: face detector: %s", self._name, self.error)
            return
        last = time.monotonic()
        ramp_end: float | None = None  # the frame time where the last queued ramp ends
        while True:
            await asyncio.sleep(COMMAND_PERIOD_S)
            now = time.monotonic()
            position = self.tracker.step(min(now - last, 1.0), now)
            last = now
            worker = self.worker
            if worker is None:
                continue
            if worker.restarts != self._restarts:  # a new process: its crop is centred
                self._restarts, self._sent, ramp_end = worker.restarts, 0.5, None
            if worker.media_seconds is None or abs(position - self._sent) < 1e-4:
                continue
            earliest = worker.media_seconds + LEAD_S
            if ramp_end is not None and ramp_end > earliest + COMMAND_PERIOD_S:
                continue  # far enough ahead already
            # Chained where the last ramp ends: one continuous pan, never a jump.
            start = earliest if ramp_end is None else max(ramp_end, earliest)
            seconds = ramp_seconds(self._sent, position)
            if worker.command(CROP, "x", crop_x(self._sent, position, start, seconds), start):
                self._sent, ramp_end = position, start + seconds

    def figures(self) -> dict[str, object]:
        """Where the crop is, how often and how fast faces are looked for."""
        return {
            "reframeCentre": round(self._sent, 3),
            "faceDetections": self.detections,
            "faceDetectMs": self.detect_ms,
            "reframeError": self.error,
        }
