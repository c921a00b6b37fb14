"""The auto reframe's smoothing (no media: the tracker is plain arithmetic) and the lazy
OpenCV import."""

from __future__ import annotations

import itertools
import subprocess
import sys

from simulcast.media.reframe import (
    DEAD_BAND,
    MAX_ACCEL,
    MAX_SPEED,
    FaceTracker,
    crop_x,
    ramp_seconds,
)

CROP = 720 * 9 / 16 / 1280  # a 9:16 crop of 1280x720


def run(tracker: FaceTracker, faces: list[float | None], dt: float = 0.25) -> list[float]:
    """Feed one detection per step; the positions."""
    out = []
    for i, face in enumerate(faces):
        tracker.saw(face, i * dt)
        out.append(tracker.step(dt, i * dt))
    return out


def test_a_face_jumping_across_the_picture_is_followed_at_bounded_speed() -> None:
    positions = run(FaceTracker(CROP), [0.85] * 40)
    steps = [b - a for a, b in itertools.pairwise([0.5, *positions])]
    assert all(0 <= s <= MAX_SPEED * 0.25 + 1e-9 for s in steps)  # never a jump
    assert abs(positions[-1] - 0.85) < 0.02  # and it gets there
    # Speed changes gently (bounded acceleration): no lurch from still to full speed.
    assert all(abs(b - a) <= MAX_ACCEL * 0.25 * 0.25 + 1e-9 for a, b in itertools.pairwise(steps))
    assert steps[0] < MAX_SPEED * 0.25


def test_a_still_crop_ignores_small_detector_noise() -> None:
    tracker = FaceTracker(CROP)
    positions = run(tracker, [0.5 + (DEAD_BAND * 0.8) * (-1) ** i for i in range(20)])
    assert positions == [0.5] * 20


def test_the_crop_stays_inside_the_picture_and_recentres_when_the_face_is_gone() -> None:
    tracker = FaceTracker(CROP)
    positions = run(tracker, [0.0] * 30)
    assert min(positions) >= CROP / 2 - 1e-9  # a face at the very edge: the crop stops there
    positions = run(tracker, [None] * 60)
    assert abs(positions[-1] - 0.5) < 0.02


def test_the_crop_expression_ramps_on_frame_time() -> None:
    expr = crop_x(0.25, 0.5, at=10.0, seconds=0.25)
    assert "(t-10.000)/0.250" in expr and expr.startswith("iw*(0.25000+(0.25000)*")
    assert ramp_seconds(0.0, 0.7) == 0.7 / MAX_SPEED  # a long move is slowed to MAX_SPEED


def test_opencv_is_loaded_only_by_an_auto_reframe() -> None:
    code = (
        "import sys, simulcast.media.instances, simulcast.media.reframe;print('cv2' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
