"""alprd_train.rank_report's scene counts: which read tops each scene, and whether a stray one outranks
a labelled plate's (the measurement behind alprd/recognition/rank.py)."""

from __future__ import annotations

from alprd_train.rank_report import ORDERS, judge

PLATE = [100, 100, 200, 140, "ABC1234"]


def rd(text: str, conf: float, det: float, box: list[int]) -> dict:
    return {"text": text, "confidence": conf, "char_confidences": [conf] * len(text), "box": box,
            "detection_confidence": det, "verifier": 1.0, "layout_fit": True}


def scene(*reads: dict, aside: list[list[int]] | None = None) -> dict:
    return {"image": "x", "labels": [PLATE], "aside": aside or [], "reads": list(reads)}


def test_a_sign_read_surer_than_the_plate_is_a_stray_above_it_by_read_confidence_only():
    rows = [scene(rd("HOTEL", 0.96, 0.55, [10, 10, 90, 40]), rd("ABC1234", 0.90, 0.85, [102, 101, 199, 141]))]
    before = judge(rows, ORDERS["read confidence (before)"])
    after = judge(rows, ORDERS["read x detection (shipped)"])
    assert (before["top_stray"], before["stray_above_plate"], before["top_right"]) == (1, 1, 0)
    assert (after["top_on_plate"], after["stray_above_plate"], after["top_right"], after["any_right"]) == (1, 0, 1, 1)


def test_a_plate_the_labels_lack_is_set_aside_not_stray_and_sceneless_rows_do_not_count():
    other = [300, 100, 380, 130]
    rows = [scene(rd("XYZ987", 0.97, 0.9, other), rd("ABC1234", 0.9, 0.8, PLATE[:4]), aside=[other]),
            {"image": "y", "labels": [], "aside": [], "reads": [rd("SALE", 0.9, 0.9, [0, 0, 50, 20])]},
            scene()]
    c = judge(rows, ORDERS["read x detection (shipped)"])
    assert (c["scenes"], c["with_a_read"], c["top_aside"], c["top_stray"], c["stray_above_plate"]) == (2, 1, 1, 0, 0)
    assert c["top_right"] == 0 and c["any_right"] == 1 and c["with_text"] == 2
