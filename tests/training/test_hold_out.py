"""`--hold-out`: the trainers' data builders leave out exactly the sources `alprd eval --split` holds out."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("torch")  # the trainers are alprd-train's: pip install -e training
pytest.importorskip("alprd_train")

from alprd.datasets import is_cross_source_held_out, source_of  # noqa: E402
from alprd.errors import UserError  # noqa: E402
from alprd.evaluate import in_split  # noqa: E402
from alprd_train.common import RunRecord, record_hold_out  # noqa: E402
from alprd_train.train_detector import training_scenes  # noqa: E402
from alprd_train.train_ocr import labelled_crops  # noqa: E402

# US states on both sides of the cross-source hash (checked below, so a new salt fails loudly).
STATES = ("ny", "wa", "ca", "tx")
PLATES = ("ABC1234", "XYZ9876", "KLM5555", "PQR2468", "DEF1357", "GHJ8642")


def _data(root: Path) -> Path:
    """A ../shared/data layout whose CSVs name samples of held-out and kept sources (the builders
    read only the CSVs)."""
    (root / "us_plate_crops").mkdir(parents=True)
    rows = [f"images/{st}{i}.jpg,{p}" for st in STATES for i, p in enumerate(PLATES)]
    (root / "us_plate_crops" / "ocr.csv").write_text("image,text\n" + "\n".join(rows) + "\n")
    (root / "openalpr_train_detector").mkdir()
    rows = [f"images/br/_{series}_0{i}_{p}.JPG_0.jpg,{p}" for series in ("CC", "CV") for i, p in enumerate(PLATES)]
    (root / "openalpr_train_detector" / "ocr.csv").write_text("image,text\n" + "\n".join(rows) + "\n")
    (root / "romania_dashcam").mkdir()
    for name, videos in (("train.csv", ("dayride_type1_001", "nightride_type3_001", "dayride_type1_002")),
                         ("valid.csv", ("nightride_type3_001", "dayride_type1_003"))):
        rows = [f"images/train/{v}.mp4_t{t}.jpg,10,10,50,20," for v in videos for t in range(3)]
        (root / "romania_dashcam" / name).write_text("image,x1,y1,x2,y2,text\n" + "\n".join(rows) + "\n")
    return root


def _every_source(splits: dict) -> list[str]:
    return [source_of(s.image) for v in splits.values() for s in v]


def test_the_states_cover_both_sides_of_the_split():
    assert {is_cross_source_held_out(f"us_plate_crops/{s}") for s in STATES} == {True, False}


def test_crops_of_held_out_sources_are_dropped_and_counted(tmp_path: Path):
    data = _data(tmp_path)
    every, none = labelled_crops(data, None)
    assert not any(none.values())
    kept, dropped = labelled_crops(data, "cross-source")
    held = [s for s in _every_source(every) if in_split(s, "cross-source")]  # alprd eval's own selection
    assert held and "openalpr_train_detector/CC" in held
    assert not any(in_split(s, "cross-source") for s in _every_source(kept))
    assert sorted(_every_source(kept)) == sorted(s for s in _every_source(every) if s not in set(held))
    assert sum(n for by in dropped.values() for n in by.values()) == len(held)
    assert dropped["br_train"].get("openalpr_train_detector/CC", 0) + dropped["br_dev"].get(
        "openalpr_train_detector/CC", 0) == len(PLATES)


def test_scenes_of_a_named_source_are_dropped_from_train_and_dev(tmp_path: Path):
    data = _data(tmp_path)
    kept, dropped = training_scenes(data, "romania_dashcam/nightride_type3_001")
    assert not any("nightride" in str(s.image) for v in kept.values() for s in v)
    assert sum(dropped["train"].values()) + sum(dropped["dev"].values()) == 6
    assert {s for v in dropped.values() for s in v} == {"romania_dashcam/nightride_type3_001"}
    assert len(kept["train"]) == 3 and len(kept["dev"]) == 6  # day ride 001 trains; the two dev videos stay
    cross, _ = training_scenes(data, "cross-source")
    assert [s.image for v in cross.values() for s in v] == [s.image for v in kept.values() for s in v]


def test_a_source_no_sample_is_from_is_an_error(tmp_path: Path):
    with pytest.raises(UserError, match="--hold-out romania_dashcam/nosuchride"):
        training_scenes(_data(tmp_path), "romania_dashcam/nosuchride")


def test_the_counts_go_to_run_json(tmp_path: Path):
    _, dropped = labelled_crops(_data(tmp_path / "data"), "us_plate_crops")
    rec = RunRecord(tmp_path, "ocr", {})
    record_hold_out(rec, "us_plate_crops", dropped)
    got = json.loads((tmp_path / "run.json").read_text())["hold_out"]
    assert got["rule"] == "us_plate_crops"
    assert got["dropped"]["us_train"] + got["dropped"]["us_dev"] == len(STATES) * len(PLATES)
    assert got["dropped"]["br_train"] == got["dropped"]["br_dev"] == 0
