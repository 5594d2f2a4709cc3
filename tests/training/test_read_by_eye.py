"""Training-scene plates read by eye: the labels file the reader trains on, and how `scene_crops` uses it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("torch")  # the trainers are alprd-train's: pip install -e training
pytest.importorskip("alprd_train")

from alprd.datasets import ROMANIA_DEV_VIDEOS, detection_splits, ocr_splits, read_ocr_csv, romania_video  # noqa: E402
from alprd.errors import UserError  # noqa: E402
from alprd_train.train_ocr import READ_BY_EYE, box_key, crop_key, label_blank_crops, read_by_eye, scene_crops  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
DATA = REPO.parent / "shared" / "data"


@pytest.mark.skipif(not DATA.exists(), reason="../shared/data is not beside the checkout")
def test_the_project_box_labels_name_blank_training_boxes_only():
    """Each label must land on a box the datasets leave blank, in a training scene: a dev scene's plate
    would leak into the reader, and a label on a box the data does not have would be lost unseen."""
    labels = read_by_eye(READ_BY_EYE / "scene_plates_read_by_eye.csv")
    assert len(labels) >= 200
    blank_train = {box_key(DATA, s.image, (round(b.x1), round(b.y1), round(b.x2), round(b.y2)))
                   for s in detection_splits(DATA)["train"] for b in s.boxes if not b.text}
    assert set(labels) <= blank_train
    for image, *_ in labels:
        assert romania_video(Path(str(image))) not in ROMANIA_DEV_VIDEOS and "/images/val/" not in str(image)
    # Romanian frames repeat a plate; the set still holds many distinct plates.
    assert len(set(labels.values())) >= 150


@pytest.mark.skipif(not DATA.exists(), reason="../shared/data is not beside the checkout")
def test_the_project_crop_labels_name_text_less_crops_of_no_dev_plate():
    labels = read_by_eye(READ_BY_EYE / "crops_read_by_eye.csv")
    assert len(labels) >= 400
    no_text = DATA / "openalpr_train_detector" / "crops_no_text.csv"
    assert set(labels) <= {crop_key(DATA, s.image) for s in read_ocr_csv(no_text)}
    # The OCR dev split is by plate text: a crop of a dev plate would leak it.
    dev = {s.text for name in ("us_dev", "br_dev") for s in ocr_splits(DATA)[name]}
    assert not set(labels.values()) & dev
    assert sum("/images/eu" in str(k[0]) for k in labels) >= 120


def _tiny_data(root: Path) -> Path:
    """A data root of one Romanian training frame with two boxes: one labelled, one blank."""
    ro = root / "romania_dashcam"
    (ro / "images" / "train").mkdir(parents=True)
    frame = np.full((240, 320, 3), 200, np.uint8)
    cv2.imwrite(str(ro / "images" / "train" / "dayride_type1_009.mp4_t1.jpg"), frame)
    (ro / "train.csv").write_text("image,x1,y1,x2,y2,text\n"
                                  "images/train/dayride_type1_009.mp4_t1.jpg,10,10,110,40,B12ABC\n"
                                  "images/train/dayride_type1_009.mp4_t1.jpg,150,100,250,130,\n")
    (ro / "valid.csv").write_text("image,x1,y1,x2,y2,text\n")
    crops = root / "openalpr_train_detector"
    (crops / "images" / "eu").mkdir(parents=True)
    for name in ("a.jpg", "b.jpg"):
        cv2.imwrite(str(crops / "images" / "eu" / name), np.full((40, 160, 3), 220, np.uint8))
    (crops / "crops_no_text.csv").write_text("image,text\nimages/eu/a.jpg,\nimages/eu/b.jpg,\n")
    return root


def test_scene_crops_take_blank_texts_from_the_labels_and_keep_the_datasets_own(tmp_path, capsys):
    data = _tiny_data(tmp_path / "data")
    image = "romania_dashcam/images/train/dayride_type1_009.mp4_t1.jpg"
    by_eye = {(image, 150, 100, 250, 130): "B34XYZ", (image, 10, 10, 110, 40): "WRONG",
              ("romania_dashcam/images/train/other.jpg", 1, 1, 90, 30): "B56DEF"}
    crops = scene_crops(data, tmp_path / "run", by_eye=by_eye)
    assert [c.text for c in crops] == ["B12ABC", "B34XYZ"]
    assert all(c.image.is_file() for c in crops)
    # The label for a box the data does not have is reported, not silently dropped.
    assert "read by eye: 1 of 3 box labels" in capsys.readouterr().out
    assert [c.text for c in scene_crops(data, tmp_path / "run2")] == ["B12ABC", ""]


def test_text_less_crops_take_their_text_from_the_labels(tmp_path, capsys):
    data = _tiny_data(tmp_path / "data")
    no_text = data / "openalpr_train_detector" / "crops_no_text.csv"
    by_eye = {("openalpr_train_detector/images/eu/b.jpg",): "WOBZK295", ("openalpr_train_detector/images/eu/c.jpg",): "X1"}
    got = label_blank_crops(data, no_text, by_eye, None, 0.9)
    assert [(c.image.name, c.text) for c in got] == [("b.jpg", "WOBZK295")]
    assert "read by eye: 1 of 2 crop labels" in capsys.readouterr().out


@pytest.mark.parametrize("body, message", [
    ("image,x1,y1,x2,y2\na.jpg,1,2,3,4\n", "not an image,x1,y1,x2,y2,text or image,text CSV"),
    ("image,x1,y1,x2,y2,text\na.jpg,1.5,2,3,4,AB1\n", "not an image,x1,y1,x2,y2,text or image,text CSV"),
    ("image,x1,y1,x2,y2,text\na.jpg,1,2,3,4,AB-12\n", "text 'AB-12' must be"),
    ("image,x1,y1,x2,y2,text\na.jpg,1,2,3,4,ABCDEFGHIJK\n", "text 'ABCDEFGHIJK' must be"),
    ("image,x1,y1,x2,y2,text\na.jpg,1,2,3,AB1\n", "line 2 has 5 fields, not 6"),
    ("image,text\na.jpg,\n", "text '' must be"),
])
def test_a_bad_labels_file_is_named_in_a_one_line_error(tmp_path, body, message):
    bad = tmp_path / "eye.csv"
    bad.write_text(body)
    with pytest.raises(UserError, match=message) as e:
        read_by_eye(bad)
    assert str(bad) in str(e.value)


def test_train_ocr_names_a_bad_labels_file_in_one_line(tmp_path):
    bad = tmp_path / "eye.csv"
    bad.write_text("image,text\na.jpg,AB-12\n")
    r = subprocess.run([sys.executable, "-m", "alprd", "train", "ocr", "--data", str(_tiny_data(tmp_path / "data")),
                        "--out", str(tmp_path / "run"), "--scene-crops", "--read-by-eye", str(READ_BY_EYE / "crops_read_by_eye.csv"),
                        str(bad)], capture_output=True, text=True, timeout=300)
    assert r.returncode != 0 and f"{bad}: a.jpg: text 'AB-12' must be" in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_labels_without_scene_crops_are_refused(tmp_path):
    r = subprocess.run([sys.executable, "-m", "alprd", "train", "ocr", "--data", str(tmp_path),
                        "--out", str(tmp_path / "run"), "--read-by-eye", str(READ_BY_EYE / "scene_plates_read_by_eye.csv")],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode != 0 and "--scene-crops" in r.stderr and "Traceback" not in r.stderr
