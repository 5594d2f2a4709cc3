"""The bench report's camera-position verdict on constructed plate widths, the labels over the scene,
and the measured detection-rate curve the shipped manifest carries."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from alprd.bench.figures import place_labels
from alprd.bench.position import curve_scale, expected_rate, histogram_svg, verdict
from alprd.errors import ModelError
from alprd.recognition.manifest import WidthBin, WidthCurve, default_models_dir, load_entry

CURVE = WidthCurve((WidthBin(0, 40, 0.3, 50), WidthBin(40, 60, 0.71, 50), WidthBin(60, 100, 0.85, 50),
                    WidthBin(100, None, 0.97, 50)), frame_width=1920, input_width=640)


def test_far_plates_get_move_closer():
    v = verdict([45, 50, 52, 55, 58, 60 - 1], CURVE)
    assert v.level == "bad" and v.rate == pytest.approx(0.71)
    assert v.text == "Most plates are 50-57 px wide, where the detector finds 71 % of plates: move the camera closer or zoom in."


def test_near_plates_are_fine_and_the_middle_is_marginal():
    ok = verdict([120, 130, 150, 200], CURVE)
    assert ok.level == "ok" and ok.text.endswith("finds 97 % of plates: this position is fine.")
    mid = verdict([70, 80, 90, 120], CURVE)  # three at 0.85, one at 0.97
    assert mid.level == "marginal" and mid.rate == pytest.approx((3 * 0.85 + 0.97) / 4)
    assert "closer or zoomed in would find more" in mid.text


def test_widths_are_scaled_to_the_frames_the_curve_was_measured_in():
    # A 960 px video at input width 640: the detector sees each plate twice as big as in a 1920 px frame.
    scale = curve_scale(CURVE, 960, 640)
    assert scale == pytest.approx(2.0)
    assert expected_rate([55], CURVE, scale) == pytest.approx(0.97)  # 110 px in the curve's frame
    assert verdict([55, 55], CURVE, scale).level == "ok" and verdict([55, 55], CURVE).level == "bad"
    assert curve_scale(CURVE, 1920, 320) == pytest.approx(0.5)


def test_no_reads_or_no_curve_says_so():
    assert verdict([], CURVE).level == "unknown" and "No plate was read" in verdict([], CURVE).text
    v = verdict([80, 90], None)
    assert v.level == "unknown" and v.rate is None and "width_report" in v.text
    empty = WidthCurve((WidthBin(0, 40, None, 0), WidthBin(40, None, 0.9, 10)), 1920, 640)
    assert verdict([20, 30], empty).level == "unknown"


def test_histogram_has_a_bar_per_bin_counting_the_plates():
    svg = histogram_svg([30, 45, 50, 80, 150, 160], CURVE)
    assert svg.count('class="bar"') == 4 and 'class="rate"' in svg
    assert "<title>2 plates 40-60 px, detector finds 71%</title>" in svg
    assert "<title>2 plates 100+ px, detector finds 97%</title>" in svg
    bare = histogram_svg([30, 45, 50], None)
    assert bare.count('class="bar"') == 8 and 'class="rate"' not in bare


def test_labels_never_overlap_and_fall_back_below_then_up():
    boxes = [(100, 100, 180, 120), (105, 102, 185, 122), (110, 104, 190, 124), (400, 5, 480, 25)]
    spots = place_labels(boxes, [(120, 20)] * 4, 960, 540)
    rects = [(x, y, x + 120, y + 20) for x, y in (s for s in spots if s is not None)]
    assert spots[0] == (100, 79)  # above its box
    assert spots[1] == (105, 123)  # above is taken: below
    for i, a in enumerate(rects):
        for b in rects[i + 1:]:
            assert not (a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]), (a, b)
    assert spots[3] == (400, 26)  # no room above the top edge: below it


def test_the_shipped_detector_carries_its_measured_curve():
    entry = load_entry(default_models_dir(), "plate_detector", "detector")
    c = entry.detection_rate_by_width
    assert c is not None and c.split == "dev" and c.scenes >= 100 and c.frame_width == 1920
    assert all(b.plates > 0 and 0 <= (b.rate or 0) <= 1 for b in c.bins)
    # Measured, so it must show what any detector shows: far plates are found less often than near ones.
    assert c.bins[0].rate < c.bins[-1].rate


def test_a_malformed_curve_is_a_model_error_naming_the_manifest(tmp_path: Path):
    src = default_models_dir()
    shutil.copy(src / "plate_detector.onnx", tmp_path)
    manifest = json.loads((src / "manifest.json").read_text())
    det = next(m for m in manifest["models"] if m["task"] == "detector")
    det["detection_rate_by_width"] = {"bins": [{"min_px": 0}], "frame_width": 1920, "input_width": 640}
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelError, match=r"manifest.json: plate_detector: detection_rate_by_width is malformed"):
        load_entry(tmp_path, "plate_detector", "detector")
    del det["detection_rate_by_width"]  # optional: a manifest made before the measurement loads
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    assert load_entry(tmp_path, "plate_detector", "detector").detection_rate_by_width is None
