"""`alprd read` lists the plate before a sign it also reads (issue 32: 'another box outranks the plate'),
with the shipped models on road frames the synthetic engine made, a shop sign pasted in."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np

from alprd.geometry import iou
from alprd.synth.plates import SIGN_COLOURS, font_paths, render_sign
from alprd.synth.video import render_still

REPO = Path(__file__).resolve().parents[2]

# (seed, plate blur sigma): a slightly soft plate, which the reader reads right but less surely (0.91
# to 0.95 with reader 0.5.2) than the crisp sign (0.94 to 0.96); the detector is surer of the plate.
# Ranked by read confidence, the sign came first. The margins are thin and move with the installed
# libraries (seed 12, once 0.92 against 0.95, read its plate at 0.952 against 0.951 in December
# 2026), so the test asks the sign to be the surer read in most scenes, not in each.
SCENES = ((4, 1.2), (6, 1.8), (10, 1.8))


def plate_and_sign(seed: int, blur: float) -> tuple[np.ndarray, str, tuple[int, int, int, int], tuple[int, ...]]:
    """A road frame with one car (its plate blurred by `blur`) and a blue CAFE sign above the road."""
    rng = np.random.default_rng(seed)
    frame, text, box = render_still(rng, 1280, 720, ("eu", "br", "us", "mercosur")[seed % 4])
    x1, y1, x2, y2 = box
    frame[y1 - 6:y2 + 6, x1 - 6:x2 + 6] = cv2.GaussianBlur(frame[y1 - 6:y2 + 6, x1 - 6:x2 + 6], (0, 0), blur)
    sign = (120, 90, 330, 150)
    frame[sign[1]:sign[3], sign[0]:sign[2]] = render_sign("CAFE", 210, 60, SIGN_COLOURS[1], font_paths()[0])
    return frame, text, box, sign


def test_read_lists_the_plate_first_and_still_lists_the_sign(tmp_path):
    truth = {}
    for seed, blur in SCENES:
        frame, text, box, sign = plate_and_sign(seed, blur)
        path = tmp_path / f"scene{seed}.png"
        cv2.imwrite(str(path), frame)
        truth[str(path)] = (text, box, sign)
    out = subprocess.run([sys.executable, "-m", "alprd", "read", str(tmp_path)], capture_output=True, text=True,
                         cwd=REPO, timeout=600)
    assert out.returncode == 0, out.stderr
    lines = [json.loads(ln) for ln in out.stdout.splitlines()]
    assert len(lines) == len(SCENES)
    sign_surer = 0
    for rec in lines:
        text, box, sign = truth[rec["image"]]
        plates = rec["plates"]
        on_sign = [p for p in plates if iou(p["box"], sign) > 0.3]
        on_plate = [p for p in plates if iou(p["box"], box) > 0.3]
        # Both are published; where the sign is read more surely than the plate, ordering by read
        # confidence (as before) put the sign first.
        assert on_sign and on_plate and on_plate[0]["text"] == text, (rec["image"], plates)
        sign_surer += on_sign[0]["confidence"] > on_plate[0]["confidence"]
        # Ranked by plate likelihood, the plate is the top read.
        assert iou(plates[0]["box"], box) > 0.3 and plates[0]["text"] == text, (rec["image"], plates)
        assert plates[0]["score"] > on_sign[0]["score"]
    assert sign_surer >= 2, "the scenes no longer show a sign read more surely than the plate"  # the case in point
