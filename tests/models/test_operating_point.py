"""The default detector operating point (models.detection_threshold with its second look and verifier),
chosen on the cross-source split (issue 32, alprd_train.operating_point): the held-out plates the
detector is unsure of must still be read with the default settings, as they are at the lowest threshold."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import cv2
import pytest

from alprd.config import ModelsConfig
from alprd.datasets import in_split, read_detection_csv, source_of
from alprd.geometry import iou
from alprd.recognition.manifest import load_entry
from alprd.recognition.onnx_models import OnnxPlateDetector
from alprd.recognition.recognizer import Recognizer

REPO = Path(__file__).resolve().parents[2]
DATA = REPO.parent / "shared" / "data"
NIGHT = REPO / "training" / "eval_sets" / "romania_night_plates.csv"  # the cross-source scenes, read by eye
LOWEST = 0.2  # the lowest threshold measured
BEFORE = 0.4  # the default the operating point was measured against (kept)


def right(rec: Recognizer, img, box: tuple[float, float, float, float], text: str) -> bool:
    return any(r.text == text for r in rec.analyse(img)[1] if iou(box, r.box) > 0.3)


def lowest_and_default() -> tuple[Recognizer, Recognizer]:
    default = ModelsConfig()
    return Recognizer.from_config(dataclasses.replace(default, detection_threshold=LOWEST)), Recognizer.from_config(default)


@pytest.mark.skipif(not DATA.exists(), reason="../shared/data is not beside the checkout")
def test_the_default_loses_no_held_out_plate_that_the_lowest_threshold_reads():
    """Every plate of the held-out scenes read right at the lowest threshold is read right by the default,
    the plates the detector scores under the old threshold (there the second look's) included."""
    lowest, shipped = lowest_and_default()
    raw = OnnxPlateDetector(load_entry(REPO / "models", "plate_detector", "detector"), threshold=LOWEST, recheck_above=0)
    read_low, lost, unsure = 0, [], 0
    for scene in read_detection_csv(NIGHT):
        assert in_split(source_of(scene.image), "cross-source")
        img = cv2.imread(str(scene.image))
        dets = raw.detect(img)
        for b in scene.boxes:
            box = (b.x1, b.y1, b.x2, b.y2)
            if not b.text or not right(lowest, img, box, b.text):
                continue
            read_low += 1
            score = max((d.confidence for d in dets if iou(box, d.box) > 0.3), default=0.0)
            unsure += LOWEST <= score < BEFORE
            if not right(shipped, img, box, b.text):
                lost.append((scene.image.name, b.text, round(score, 3)))
    assert read_low >= 80, read_low  # the night set's 92 legible plates: the lowest threshold reads them
    assert not lost, (ModelsConfig().detection_threshold, unsure, lost)


@pytest.mark.skipif(not DATA.exists(), reason="../shared/data is not beside the checkout")
def test_the_lowest_threshold_would_publish_more_stray_reads_on_dev_for_at_most_one_plate_more():
    """Why the default is not the lowest threshold: on the dev plates read by eye, 0.2 read one plate
    more (134 against 133 of 159) for three more reads where no plate is (11 against 8)."""
    from alprd.evaluate import eval_scenes

    lowest, shipped = lowest_and_default()
    scenes = [s for name in ("romania_dev_plates.csv", "europe_dev_photos.csv")
              for s in read_detection_csv(REPO / "training" / "eval_sets" / name)]
    low, default = eval_scenes(lowest, scenes), eval_scenes(shipped, scenes)
    stray = [round(r["stray_reads_per_image"] * r["images"]) for r in (low, default)]
    gained = round((low["exact_match"] - default["exact_match"]) * low["labelled_texts"])
    assert stray[0] > stray[1] and gained <= 1, (stray, gained)
