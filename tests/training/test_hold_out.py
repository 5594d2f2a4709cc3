"""--hold-out: the trainers leave out exactly the samples `alprd eval --split` holds out, on a small data
folder laid out as ../shared/data is (every source kind: US states, the Brazilian series, Romanian videos,
openlpr's photos)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("torch")  # the trainers are alprd-train's: pip install -e training
pytest.importorskip("alprd_train")

from alprd.datasets import in_split, is_cross_source_held_out, source_of  # noqa: E402
from alprd_train.hold_out import HoldOut, data_sources  # noqa: E402
from alprd_train.train_detector import training_scenes  # noqa: E402
from alprd_train.train_ocr import labelled_crops, scene_crops  # noqa: E402

STATES = ("ak", "al", "ar", "az", "ca", "co", "ct", "de", "fl", "ga", "hi", "ia", "id", "il", "in", "ks", "ky",
          "la", "ma", "md", "me", "mi", "mn", "mo", "ms", "mt", "nc", "nd", "ne", "nh", "nj", "nm", "nv", "ny",
          "oh", "ok", "or", "pa", "ri", "sc", "sd", "tn", "tx", "ut", "va", "vt", "wa", "wi", "wv", "wy")
VIDEOS = ("dayride_type1_001", "dayride_type1_002", "nightride_type3_001")


def write(path: Path, header: str, rows: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join([header, *rows]) + "\n")


@pytest.fixture
def data(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    us = [f"images/{st}{i}.jpg,{st.upper()}{i}23{i},{st}" for st in STATES for i in range(1, 4)]
    write(root / "us_plate_crops" / "ocr.csv", "image,text,state", us)
    br = [f"images/br/_{series}_{i:06d}_ABC{i:04d}.JPG_0000.jpg,ABC{i:04d}" for series in ("CC", "CV") for i in range(40)]
    write(root / "openalpr_train_detector" / "ocr.csv", "image,text", br)
    write(root / "openalpr_train_detector" / "crops_no_text.csv", "image,text", ["images/br/blank1.jpg,"])
    frames = []
    for video in VIDEOS:
        for t in range(3):
            name = f"images/train/{video}.mp4_t{t}.jpg"
            frames.append(f"{name},20,40,120,70,")
            img = np.full((120, 200, 3), 90, np.uint8)
            (root / "romania_dashcam" / name).parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(root / "romania_dashcam" / name), img)
    write(root / "romania_dashcam" / "train.csv", "image,x1,y1,x2,y2,text", frames)
    write(root / "romania_dashcam" / "valid.csv", "image,x1,y1,x2,y2,text", [])
    (root / "openlpr_plate_detection" / "images").mkdir(parents=True)
    write(root / "openlpr_plate_detection" / "train.csv", "image,x1,y1,x2,y2,text", ["images/a.jpg,1,1,50,20,AB12"])
    write(root / "openlpr_plate_detection" / "val.csv", "image,x1,y1,x2,y2,text", ["images/b.jpg,1,1,50,20,CD34"])
    cv2.imwrite(str(root / "openlpr_plate_detection" / "images" / "a.jpg"), np.full((60, 100, 3), 90, np.uint8))
    return root


def test_the_reader_leaves_out_exactly_the_cross_source_crops(data):
    everything, none_held = labelled_crops(data, HoldOut(None, set()))
    hold = HoldOut("cross-source", data_sources(data))
    kept, held = labelled_crops(data, hold)
    assert not none_held
    every = [c for v in everything.values() for c in v]
    expected = {c.image for c in every if is_cross_source_held_out(source_of(c.image))}
    kept_images = {c.image for v in kept.values() for c in v}
    held_images = {c.image for v in held.values() for c in v}
    assert held_images == expected and not kept_images & expected and kept_images | held_images == {c.image for c in every}
    # The fixed part of the rule, by name: the whole `_CC_` series out, the `_CV_` series in, some states out.
    assert {source_of(p) for p in held_images} >= {"openalpr_train_detector/CC"}
    assert all("_CV_" in p.name for v in ("br_train", "br_dev") for p in (c.image for c in kept[v]))
    assert 0 < len(held["us_held_out"]) < len([c for v in ("us_train", "us_dev") for c in everything[v]])
    assert sum(hold.dropped.values()) == len(expected) and sum(hold.by_source.values()) == len(expected)


def test_one_source_is_held_out_by_name_and_a_source_of_no_sample_is_refused(data):
    kept, held = labelled_crops(data, HoldOut("us_plate_crops/ca", data_sources(data)))
    assert sorted(c.image.name for c in held["us_held_out"]) == ["ca1.jpg", "ca2.jpg", "ca3.jpg"]
    assert list(held) == ["us_held_out"] and all(source_of(c.image) != "us_plate_crops/ca" for v in kept.values() for c in v)
    from alprd.errors import UserError
    with pytest.raises(UserError, match="--hold-out holdout:us_plate_crops/zz: no sample"):
        HoldOut("us_plate_crops/zz", data_sources(data))


def test_the_detector_and_the_scene_crops_leave_out_the_night_ride(data, tmp_path):
    hold = HoldOut("cross-source", data_sources(data))
    splits, held = training_scenes(data, hold)
    assert {source_of(s.image) for s in held} == {"romania_dashcam/nightride_type3_001"} and len(held) == 3
    assert not any(in_split(source_of(s.image), "cross-source") for v in splits.values() for s in v)
    assert len(splits["train"]) + len(splits["dev"]) + len(held) == 3 * len(VIDEOS) + 2
    crops = scene_crops(data, tmp_path / "run", hold_out=HoldOut("cross-source", data_sources(data)))
    assert crops and all("nightride" not in c.group for c in crops)
    assert len(scene_crops(data, tmp_path / "run2")) == len(crops) + 3


def test_a_run_resumed_with_another_hold_out_is_refused_in_one_line(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "run.json").write_text('{"settings": {"hold_out": "None"}}')
    r = subprocess.run([sys.executable, "-m", "alprd", "train", "detector", "--out", str(out), "--hold-out",
                        "cross-source", "--steps", "1"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and r.stderr.startswith("alprd: error: --hold-out cross-source:"), r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
