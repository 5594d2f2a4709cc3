"""The detector's second look at boxes it is unsure of (models.detector_recheck_above)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from alprd.datasets import BoxLabel, detection_splits
from alprd.evaluate import shrink_scene
from alprd.geometry import iou
from alprd.recognition import onnx_models
from alprd.recognition.manifest import load_entry
from alprd.recognition.onnx_models import OnnxPlateDetector
from alprd.synth.video import render_still

REPO = Path(__file__).resolve().parents[2]
DATA = REPO.parent / "shared" / "data"
LAYOUTS = ["us", "eu", "br", "mercosur", "us2", "eu2"]


def detector(recheck_above: float) -> OnnxPlateDetector:
    return OnnxPlateDetector(load_entry(REPO / "models", "plate_detector", "detector"), threshold=0.4,
                             recheck_above=recheck_above)


def far_stills(px: float, n: int = 48, seed: int = 5) -> list[tuple[np.ndarray, tuple[float, float, float, float]]]:
    """Rendered 1080p road frames, each shrunk (into a blurred copy of itself) until its plate is px wide."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        frame, text, box = render_still(rng, 1920, 1080, LAYOUTS[i % len(LAYOUTS)])
        img, (b,) = shrink_scene(frame, [BoxLabel(*box, text)], px)
        out.append((img, (b.x1, b.y1, b.x2, b.y2)))
    return out


def count(det: OnnxPlateDetector, scenes) -> tuple[int, int]:
    """(plates found, boxes on no plate) over scenes of (image, [plate boxes])."""
    found = stray = 0
    for img, boxes in scenes:
        dets = det.detect(img)
        found += sum(any(iou(b, d.box) > 0.3 for d in dets) for b in boxes)
        stray += sum(all(iou(b, d.box) <= 0.3 for b in boxes) for d in dets)
    return found, stray


def test_the_second_look_finds_far_plates_the_first_pass_is_unsure_of():
    """Measured with detector 0.4.1 on these 96 frames (48 at 40 px, 48 at 30 px): 49 plates found
    in one pass, 58 with the second look, with 23 and 24 boxes on no plate."""
    scenes = [(img, [box]) for px in (40, 30) for img, box in far_stills(px)]
    one, two = detector(0.0), detector(0.2)
    (found1, stray1), (found2, stray2) = count(one, scenes), count(two, scenes)
    print(f"far stills: one pass {found1} found, {stray1} stray; second look {found2} found, {stray2} stray, "
          f"{two.rechecks} looks")
    assert one.rechecks == 0  # 0 turns it off
    assert found2 >= found1 + 5, (found1, found2)
    assert stray2 <= stray1 + 2, (stray1, stray2)
    assert two.rechecks <= onnx_models.RECHECKS_PER_FRAME * len(scenes)


def test_a_second_look_maps_its_box_back_to_the_frame():
    """The window is cut, zoomed and padded; the plate it finds must land on the plate in the frame,
    including one at the frame's edge, where part of the window is grey."""
    det = detector(0.2)
    (img, box), = far_stills(50, n=1, seed=3)
    h, w = img.shape[:2]
    for dx in (0, -int(box[0]) + 2):  # as rendered, and moved to the frame's left edge
        shifted = np.roll(img, dx, axis=1)
        truth = (box[0] + dx, box[1], box[2] + dx, box[3])
        # A rough first-pass box: a few px off and a little wide, as a weak peak gives.
        bw = truth[2] - truth[0]
        rough = (int(truth[0] + 0.1 * bw), int(truth[1]) - 2, int(truth[2] + 0.15 * bw), int(truth[3]) + 1)
        seen = det._look_again(shifted, rough, 640 / w)
        assert seen is not None
        assert iou(seen.box, truth) > 0.6, (seen, truth)
        assert 0 <= seen.box[0] < seen.box[2] <= w and 0 <= seen.box[1] < seen.box[3] <= h


def test_no_second_look_for_a_sure_plate_or_an_empty_road():
    """Only boxes between the floor and the threshold are looked at again: a frame with one large,
    clear plate takes no second look, and neither does an empty road."""
    det = detector(0.2)
    rng = np.random.default_rng(1)
    frame, _, box = render_still(rng, 1280, 720, "eu")
    dets = det.detect(frame)
    assert any(iou(box, d.box) > 0.5 for d in dets)
    det.detect(np.full((720, 1280, 3), 90, np.uint8))
    assert det.rechecks == 0


@pytest.mark.skipif(not DATA.exists(), reason="../shared/data is not beside the checkout")
def test_on_real_dev_scenes_the_second_look_finds_more_plates_for_few_false_positives():
    """The 318 dev scenes (real plates), as they are and shrunk until the widest plate is 50 px at 1080p
    scale. Measured with detector 0.4.1: at full size 322 of 336 plates found in one pass, 327 with the
    second look, and 0.42 against 0.50 boxes per scene off the labels (many of those are plates the
    labels leave out); far plates 282 against 294."""
    dev = detection_splits(DATA)["dev"]
    import cv2

    images = [cv2.imread(str(s.image), cv2.IMREAD_COLOR) for s in dev]
    full = [(img, [(b.x1, b.y1, b.x2, b.y2) for b in s.boxes]) for img, s in zip(images, dev)]
    far = []
    for img, s in zip(images, dev):
        if s.boxes:
            small, boxes = shrink_scene(img, s.boxes, 50, None)  # as measured: each photo's own size
            far.append((small, [(b.x1, b.y1, b.x2, b.y2) for b in boxes]))
    one, two = detector(0.0), detector(0.2)
    far1, far2 = count(one, far)[0], count(two, far)[0]
    (full1, stray1), (full2, stray2) = count(one, full), count(two, full)
    print(f"far 50 px: {far1} -> {far2} found; full size: {full1} -> {full2} found, {stray1} -> {stray2} stray")
    assert far2 >= far1 + 8, (far1, far2)
    assert full2 >= full1 + 3, (full1, full2)
    assert stray2 - stray1 <= 0.1 * len(full), (stray1, stray2)


def test_eval_reports_the_second_looks(tmp_path):
    """`alprd eval` runs the daemon's path, second look included, and says how many looks it took
    (measured: 0.25 a frame on these 24 stills, recall 41.7 % in one pass and 45.8 % with them; the gain
    itself is tested on more frames above)."""
    import cv2

    from alprd.config import ModelsConfig
    from alprd.datasets import SceneSample
    from alprd.evaluate import eval_scenes
    from alprd.recognition.recognizer import Recognizer

    scenes = []
    for i, (img, box) in enumerate(far_stills(35, n=24, seed=8)):
        path = tmp_path / f"far{i:02d}.png"
        cv2.imwrite(str(path), img)
        scenes.append(SceneSample(path, [BoxLabel(*box, "")]))
    off = eval_scenes(Recognizer.from_config(ModelsConfig(detector_recheck_above=0.0)), scenes)
    on = eval_scenes(Recognizer.from_config(ModelsConfig()), scenes)
    print(f"24 stills at 35 px: recall {off['recall']:.1%} one pass, {on['recall']:.1%} with "
          f"{on['detector_second_looks_per_image']:.2f} looks a frame")
    assert off["detector_second_looks_per_image"] == 0
    assert 0 < on["detector_second_looks_per_image"] <= onnx_models.RECHECKS_PER_FRAME
    assert on["recall"] >= off["recall"], (off["recall"], on["recall"])
