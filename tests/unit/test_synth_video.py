"""The moving-camera traffic video (a patrol car's camera that pans and zooms): the throughput
benchmark's clip where the whole frame changes every frame. Its plates must be where the truth says."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from alprd.synth.video import write_traffic_video


def frames_of(path: Path) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    out = []
    while True:
        ok, img = cap.read()
        if not ok:
            break
        out.append(img)
    cap.release()
    return out


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    work = tmp_path_factory.mktemp("moving")
    kw = dict(vehicles=2, seconds=3, width=480, height=270, fps=10, seed=5, noise=False)
    moving, static = work / "moving.mp4", work / "static.mp4"
    truth = write_traffic_video(moving, moving_camera=True, **kw)
    still_truth = write_traffic_video(static, **kw)
    return frames_of(moving), truth, frames_of(static), still_truth


def shift(a: np.ndarray, b: np.ndarray) -> float:
    ga, gb = (np.float32(cv2.cvtColor(x, cv2.COLOR_BGR2GRAY)) for x in (a, b))
    (dx, dy), _ = cv2.phaseCorrelate(ga, gb)
    return float(np.hypot(dx, dy))


def test_moving_camera_shifts_the_background_between_frames(clips):
    moving, truth, static, still_truth = clips
    assert len(moving) == len(static) == 30
    # The road's lane markings and texture dominate the frame: with the camera still they stay put
    # (vehicles alone move); panned, the whole picture shifts.
    moved = [shift(moving[i], moving[i + 5]) for i in range(0, 25, 5)]
    still = [shift(static[i], static[i + 5]) for i in range(0, 25, 5)]
    assert max(still) < 1.0, still
    assert np.median(moved) > 3.0, moved
    # and zooms in: the same plate is drawn bigger than the still camera shows it.
    for v, still in zip(truth, still_truth, strict=True):
        assert v.text == still.text
        both = sorted(set(v.boxes) & set(still.boxes))
        assert both
        for f in both:
            grown = (v.boxes[f][2] - v.boxes[f][0]) / (still.boxes[f][2] - still.boxes[f][0])
            assert 1.05 < grown < 1.35, (f, grown)


def test_moving_camera_plates_are_where_the_truth_says(clips):
    moving, truth, _, _ = clips
    assert len({v.text for v in truth}) == 2
    for v in truth:
        assert len(v.boxes) >= 10, (v.text, len(v.boxes))
        plate = cv2.cvtColor(v._plate.image, cv2.COLOR_BGR2GRAY)  # type: ignore[attr-defined]
        for f in sorted(v.boxes)[::4]:
            x1, y1, x2, y2 = v.boxes[f]
            crop = cv2.cvtColor(moving[f][y1:y2, x1:x2], cv2.COLOR_BGR2GRAY)
            ref = cv2.resize(plate, (x2 - x1, y2 - y1), interpolation=cv2.INTER_AREA)
            score = cv2.matchTemplate(crop.astype(np.float32), ref.astype(np.float32), cv2.TM_CCOEFF_NORMED)[0, 0]
            assert score > 0.6, (v.text, f, score)
