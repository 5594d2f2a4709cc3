"""Detector training data: plates the scene labels lack (teacher boxes) and hard negatives."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")  # the trainers are alprd-train's: pip install -e training
pytest.importorskip("alprd_train")

from alprd.recognition.preprocess import iou  # noqa: E402
from alprd.synth.video import render_still  # noqa: E402
from alprd_train.scene_mining import TeacherDetector, mine_scene  # noqa: E402
from alprd_train.train_detector import sample  # noqa: E402

TEACHER = Path(__file__).resolve().parents[3] / "shared" / "teachers" / "yolo-v9-t-416-license-plates-end2end1.onnx"


def test_unlabelled_teacher_plates_are_added_and_explained_detections_are_not_negatives():
    labels = np.array([[100, 100, 160, 120]], np.float32)
    teacher = [
        (101, 99, 161, 121, 0.9),  # the labelled plate
        (300, 200, 350, 215, 0.8),  # a plate nobody boxed
        (500, 50, 540, 62, 0.2),  # a weak teacher box
    ]
    student = [
        (100, 100, 158, 121, 0.9),  # right
        (302, 201, 349, 214, 0.6),  # the unboxed plate: not a negative
        (501, 51, 538, 61, 0.5),  # where the teacher has a weak box: not a negative either
        (700, 300, 760, 320, 0.7),  # lettering nobody calls a plate
    ]
    m = mine_scene(labels, teacher, student, keep=0.5)
    assert m.extra == [teacher[1]]
    assert m.negatives == [student[3]]
    # a stricter keep adds nothing, and still never turns the teacher's plate into a negative
    m = mine_scene(labels, teacher, student, keep=0.85)
    assert m.extra == [] and m.negatives == [student[3]]


def test_hard_negative_crops_are_centred_on_the_negative():
    scene = np.full((600, 900, 3), 100, np.uint8)
    scene[400:420, 700:760] = (0, 0, 255)  # the "badge"
    plate = np.array([[50, 50, 110, 70]], np.float32)
    negatives = [(0, (700.0, 400.0, 760.0, 420.0, 0.8), None)]
    def badge_seen(negs) -> int:
        seen = 0
        for seed in range(20):
            img, boxes = sample(np.random.default_rng(seed), [(scene, plate)], [], 320, 0.0, negs, hard_p=1.0)
            assert all(len(b) == 4 for b in boxes)
            seen += int(((img[:, :, 2].astype(int) - img[:, :, 1].astype(int)) > 60).sum() > 5)
        return seen

    assert badge_seen(negatives) == 20
    # without negatives the crops centre on the plate most of the time, far from the badge
    assert badge_seen(()) < 10


def test_far_share_crops_hold_the_plate_at_far_plate_size():
    """--far-share: the crop is centred on a labelled plate shrunk to FAR_PLATE_PX wide, whatever
    size the scene shows it at; with no share, the usual zoom range (mostly larger plates)."""
    from alprd_train.train_detector import FAR_PLATE_PX

    scene = np.full((1080, 1920, 3), 90, np.uint8)
    plate = np.array([[900, 600, 1140, 660]], np.float32)  # 240 px wide: a near plate
    def widths(far_p: float) -> list[float]:
        out = []
        for seed in range(40):
            _, boxes = sample(np.random.default_rng(seed), [(scene, plate)], [], 320, 0.0, far_p=far_p)
            out.extend(float(b[2] - b[0]) for b in boxes)
        return out

    far = widths(1.0)
    assert len(far) == 40  # centred on the plate every time, so it is always in the crop
    assert all(FAR_PLATE_PX[0] - 0.5 <= w <= FAR_PLATE_PX[1] + 0.5 for w in far), far
    usual = widths(0.0)
    assert sum(w > FAR_PLATE_PX[1] for w in usual) > len(usual) / 2


@pytest.mark.skipif(not TEACHER.exists(), reason="../shared/teachers is not beside the checkout")
def test_teacher_boxes_land_on_the_plate_in_frame_coordinates():
    """The letterbox and the half-frame passes map back to the frame: a rendered plate is found
    where the renderer put it, in a wide frame and a tall one."""
    rng = np.random.default_rng(5)
    for w, h in ((1280, 540), (640, 800)):
        frame, _, box = render_still(rng, w, h, "eu")
        found = TeacherDetector(TEACHER).detect(frame)
        assert any(iou(b[:4], box) > 0.5 and b[4] > 0.5 for b in found), (w, h, box, found[:3])


def test_detector_report_sets_unlabelled_plates_aside_but_counts_recall_on_labels():
    from alprd.recognition.manifest import load_entry
    from alprd.recognition.onnx_models import OnnxPlateDetector
    from alprd_train.detector_report import score

    det = OnnxPlateDetector(load_entry(Path(__file__).resolve().parents[2] / "models", "plate_detector", "detector"))
    frame, _, box = render_still(np.random.default_rng(3), 1280, 720, "us")
    labelled = score(det, [frame], [[box]], [[]])
    assert labelled[0.4]["recall"] == 1.0 and labelled[0.4]["fp_per_image"] == 0.0
    # the same plate unlabelled: a false positive against the labels, none once set aside
    unlabelled = score(det, [frame], [[]], [[(*box, 0.9)]])
    assert unlabelled[0.4]["fp_per_image"] == 1.0
    assert unlabelled[0.4]["fp_per_image_unlabelled_set_aside"] == 0.0
    # Images are read once, every threshold scored on each: the far rows make their frames as they go.
    assert score(det, (f for f in [frame]), [[box]], [[]]) == labelled


def test_mining_is_cached_so_a_resumed_run_trains_on_the_same_boxes(tmp_path):
    """--hard-negatives: the detector's boxes that nothing explains become negatives, mined once; a
    second run reads them back from the cache and never loads the detector again."""
    from alprd_train.scene_mining import mine

    shipped = Path(__file__).resolve().parents[2] / "models" / "plate_detector.onnx"
    rng = np.random.default_rng(4)
    scenes = [(render_still(rng, 960, 540, layout)[0], np.zeros((0, 4), np.float32)) for layout in ("us", "eu")]
    keys = ["a", "b"]
    first = mine(scenes, keys, None, shipped, tmp_path / "mined.json")
    assert sum(len(m.negatives) for m in first) >= 2  # the unlabelled plates, as nothing explains them
    again = mine(scenes, keys, None, tmp_path / "no_such_detector.onnx", tmp_path / "mined.json")
    assert [m.negatives for m in again] == [m.negatives for m in first]


def test_detector_report_audit_sets_eye_checked_plates_aside_and_drops_labels_on_no_plate():
    from alprd.recognition.manifest import load_entry
    from alprd.recognition.onnx_models import OnnxPlateDetector
    from alprd_train.detector_report import score

    det = OnnxPlateDetector(load_entry(Path(__file__).resolve().parents[2] / "models", "plate_detector", "detector"))
    frame, _, box = render_still(np.random.default_rng(3), 1280, 720, "us")
    nothing = (10, 10, 60, 30)  # a label on the sky
    # the plate unlabelled (the teacher missed it) and a label on no plate: a miss and a false positive
    # as labelled; once audited by eye, neither
    r = score(det, [frame], [[nothing]], [[]], [[box]], [[nothing]])[0.4]
    assert r["recall"] == 0.0 and r["fp_per_image"] == 1.0 and r["fp_per_image_unlabelled_set_aside"] == 1.0
    assert r["fp_per_image_audited"] == 0.0 and r["recall_audited"] == 0.0  # no real label left: 0 of 0
    # the same label on no plate, now also the detector's box: it counts as found as labelled, and as a
    # false positive once the label is dropped
    r = score(det, [frame], [[box]], [[]], [[]], [[box]])[0.4]
    assert r["recall"] == 1.0 and r["fp_per_image"] == 0.0 and r["fp_per_image_audited"] == 1.0


DATA = TEACHER.parents[1] / "data"


@pytest.mark.skipif(not DATA.exists(), reason="../shared/data is not beside the checkout")
def test_the_dev_scene_audit_fits_the_labels_and_a_stale_row_is_a_one_line_error(tmp_path):
    from alprd.datasets import detection_splits
    from alprd.errors import UserError
    from alprd_train.detector_report import BY_EYE, audit_by_eye

    dev = detection_splits(DATA)["dev"]
    plates, not_plates = audit_by_eye(BY_EYE, DATA, dev)
    assert sum(map(len, plates)) == 11 and sum(map(len, not_plates)) == 1
    rows = BY_EYE.read_text().splitlines()
    for bad, message in [
        ("romania_dashcam/images/train/nowhere.jpg,1,1,9,9,plate,x", "is not a dev scene"),
        ("openlpr_plate_detection/images/val/648.jpg,1,1,9,9,no plate,x", "the scene has no such label"),
        ("openlpr_plate_detection/images/val/648.jpg,190,179,238,212,plate,x", "a label now covers it"),
        ("openlpr_plate_detection/images/val/648.jpg,1,1,9,9,maybe,x", "valid: plate, no plate"),
    ]:
        f = tmp_path / "by_eye.csv"
        f.write_text("\n".join([rows[0], bad]) + "\n")
        with pytest.raises(UserError, match=message) as e:
            audit_by_eye(f, DATA, dev)
        assert str(f) in str(e.value) and "\n" not in str(e.value)


def test_tilted_hard_negative_crops_are_cut_from_the_scene_tilted_as_mined():
    """--tilted-negatives: the negative's box is where the badge is in the tilted scene, so the
    crop is cut from the scene tilted the same way, and the plate's label moves with it."""
    from alprd_train import camera_styles

    scene = np.full((600, 900, 3), 100, np.uint8)
    scene[300:320, 420:480] = (0, 255, 0)  # the "badge"
    scene[330:350, 500:560] = (0, 0, 255)  # the labelled plate, beside it
    plate = np.array([[500, 330, 560, 350]], np.float32)
    M = camera_styles.tilt_matrix(900, 600, 18.0, (0.2, 0.1))
    badge = camera_styles.warp_boxes(M, [np.array([420, 300, 480, 320], np.float32)], 900, 600)[0]

    def crops(tilt):
        for seed in range(30):
            img, boxes = sample(np.random.default_rng(seed), [(scene, plate)], [], 320, 0.0,
                                [(0, (*badge, 0.8), tilt)], hard_p=1.0)
            d = img.astype(int)
            green = (d[:, :, 1] - d[:, :, 2] > 60) & (d[:, :, 1] - d[:, :, 0] > 60)
            red = (d[:, :, 2] - d[:, :, 1] > 60) & (d[:, :, 2] - d[:, :, 0] > 60)
            yield green.sum() > 5, red, boxes

    def fill(mask) -> float:
        ys, xs = np.nonzero(mask)
        return len(xs) / ((np.ptp(xs) + 1) * (np.ptp(ys) + 1))

    fills = []
    for green_seen, red, boxes in crops(M):
        assert green_seen
        ys, xs = np.nonzero(red)
        if len(xs) > 150 and len(boxes) == 1:  # the plate large and whole in the crop
            x1, y1, x2, y2 = boxes[0]
            inside = ((xs >= x1 - 2) & (xs <= x2 + 2) & (ys >= y1 - 2) & (ys <= y2 + 2)).mean()
            assert inside > 0.97, (inside, boxes[0])
            fills.append(fill(red))
    assert fills and max(fills) < 0.8  # a turned rectangle fills its axis-aligned box far less
    square = [fill(r) for _, r, b in crops(None) if r.sum() > 150 and len(b) == 1]
    assert square and min(square) > 0.85


def test_tilted_mining_finds_unexplained_boxes_in_the_tilted_scene_and_labels_veto_through_the_tilt(tmp_path):
    from alprd_train import camera_styles
    from alprd_train.scene_mining import mine, scene_tilt

    shipped = Path(__file__).resolve().parents[2] / "models" / "plate_detector.onnx"
    rng = np.random.default_rng(4)
    stills = [render_still(rng, 960, 540, layout) for layout in ("us", "eu", "us", "br")]
    keys = ["a", "b", "c", "d"]
    unlabelled = [(f, np.zeros((0, 4), np.float32)) for f, _, _ in stills]
    found = mine(unlabelled, keys, None, shipped, tmp_path / "u.json", tilted_path=shipped)
    assert sum(len(m.tilted_negatives) for m in found) >= 2  # the unlabelled plates, seen tilted
    for m, (_, _, box), k in zip(found, stills, keys):
        assert np.allclose(m.tilt, scene_tilt(k, 960, 540))
        moved = camera_styles.warp_boxes(m.tilt, [np.array(box, np.float32)], 960, 540)[0]
        assert all(iou(b[:4], moved) > 0.5 for b in m.tilted_negatives)  # where the tilt took the plate
    labelled = [(f, np.array([box], np.float32)) for f, _, box in stills]
    vetoed = mine(labelled, keys, None, shipped, tmp_path / "l.json", tilted_path=shipped)
    assert all(m.tilted_negatives == [] for m in vetoed)  # the label, carried through the tilt, explains it
    # cached: a second run reads the tilted boxes back and never loads the detector
    again = mine(unlabelled, keys, None, shipped, tmp_path / "u.json", tilted_path=tmp_path / "none.onnx")
    assert [m.tilted_negatives for m in again] == [m.tilted_negatives for m in found]
