"""The default detector operating point (models.detection_threshold with its second look) keeps the
plates the detector is unsure of, on scenes it was not chosen by: the sources `--split cross-source`
holds out and the dev scenes read by eye, as photographed and seen from mid-distance. The plates are
picked from the data at test time: each one the detector scores in [FLOOR, OLD_THRESHOLD) whose read,
with every other setting the default's and the threshold at FLOOR, is published (and right, where the
label has a text). Dropping such plates is what cost reads on an independent camera (issue 32)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from alprd.config import ModelsConfig
from alprd.datasets import BoxLabel, SceneSample, held_out_by, read_detection_csv, source_of
from alprd.evaluate import shrink_scene
from alprd.geometry import iou
from alprd.recognition.base import PlateRead
from alprd.recognition.recognizer import Recognizer

REPO = Path(__file__).resolve().parents[2]
DATA = REPO.parent / "shared" / "data"
EVAL_SETS = REPO / "training" / "eval_sets"
FLOOR = 0.2  # the lowest threshold the operating point was chosen among (alprd_train.threshold_report)
OLD_THRESHOLD = 0.4  # the threshold before the operating point was chosen on the cross-source split
MID_PX = 90  # a mid-distance plate's width at 1080p, as the report measures


def scenes() -> list[SceneSample]:
    held = [s for name in ("train.csv", "valid.csv") for s in read_detection_csv(DATA / "romania_dashcam" / name)
            if held_out_by(source_of(s.image), "cross-source")]
    return held + [s for name in ("romania_dev_plates.csv", "europe_dev_photos.csv")
                   for s in read_detection_csv(EVAL_SETS / name)]


def views(scene: SceneSample) -> Iterator[tuple[np.ndarray, list[BoxLabel]]]:
    """The scene as photographed, and seen from mid-distance (its widest plate MID_PX wide at 1080p)."""
    img = cv2.imread(str(scene.image), cv2.IMREAD_COLOR)
    yield img, scene.boxes
    if scene.boxes:
        yield shrink_scene(img, scene.boxes, MID_PX)


def _read_on(reads: list[PlateRead], box: tuple[float, ...]) -> str | None:
    on = [r.text for r in reads if iou(box, r.box) > 0.3]
    return on[0] if on else None


@pytest.mark.skipif(not DATA.exists(), reason="../shared/data is not beside the checkout")
# Known gap (model card, "Detector operating point"): the default drops 3 of the 4 such plates (scored
# 0.26-0.35), but every lower threshold costs 1.6-2.2 points of stray reads on the dev scenes and wins
# no read on the cross-source scenes, so the default stays. Strict: a detector or operating point that
# reads them makes this pass, which fails the run until the mark is taken off.
@pytest.mark.xfail(strict=True, reason="detector 0.4.1 is under-confident on these plates; see the model card")
def test_the_default_operating_point_reads_the_plates_the_detector_is_unsure_of():
    default = ModelsConfig()
    assert default.detection_threshold > FLOOR
    scores = Recognizer.from_config(dataclasses.replace(default, detection_threshold=FLOOR, detector_recheck_above=0,
                                                        detector_verify_below=0)).detector  # one bare pass
    low = Recognizer.from_config(dataclasses.replace(default, detection_threshold=FLOOR))
    rec = Recognizer.from_config(default)
    unsure, missed = [], []
    for s in scenes():
        for img, labels in views(s):
            found = scores.detect(img)
            boxes = [((b.x1, b.y1, b.x2, b.y2), b.text) for b in labels]
            best = [max((d.confidence for d in found if iou(box, d.box) > 0.3), default=0.0) for box, _ in boxes]
            picked = [(box, text, p) for (box, text), p in zip(boxes, best) if FLOOR <= p < OLD_THRESHOLD]
            if not picked:
                continue
            _, permissive = low.analyse(img)
            for box, text, p in picked:
                got = _read_on(permissive, box)
                if got is None or (text and got != text):
                    continue  # not a plate the lowest threshold reads: no operating point is asked to
                unsure.append((s.image.name, text or got, round(p, 3)))
                if _read_on(rec.analyse(img)[1], box) != got:
                    missed.append(unsure[-1])
    assert len(unsure) >= 2, f"too few unsure plates to measure the operating point on: {unsure}"
    assert not missed, f"the default operating point drops {len(missed)} of {len(unsure)} unsure plates: {missed}"
