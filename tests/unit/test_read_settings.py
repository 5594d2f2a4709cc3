"""Tracking, formats and hotlist settings: defaults that work, per-camera overrides, one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from alprd.config import FormatsConfig, TrackingConfig, load_config
from alprd.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]


def write(tmp_path: Path, body: str) -> Path:
    p = tmp_path / "alprd.yaml"
    p.write_text("unit_id: u\n" + body)
    return p


def test_defaults_and_per_camera_override(tmp_path):
    (tmp_path / "lists").mkdir()
    cfg = load_config(write(tmp_path, "cameras:\n  - {id: a, source: a.mp4}\n"
                                      "  - {id: b, source: b.mp4, formats: {presets: [br]}, "
                                      "hotlist: {path: lists/b.csv, max_edits: 0}}\n"
                                      "hotlist: {path: lists/all.yaml}\n"))
    ta, fa, ha = cfg.camera_settings(cfg.cameras[0])
    tb, fb, hb = cfg.camera_settings(cfg.cameras[1])
    assert ta == tb == TrackingConfig() and fa == FormatsConfig() and fb.presets == ("br",)
    assert ha.path == str(tmp_path / "lists" / "all.yaml")  # relative to the config file
    assert hb.path == str(tmp_path / "lists" / "b.csv") and hb.max_edits == 0
    shipped = load_config(REPO / "config" / "pole.yaml")
    assert shipped.tracking.update == "on_change" and "br" in shipped.formats.presets


@pytest.mark.parametrize("body,message", [
    ("formats: {presets: [br, xx]}", "formats.presets: unknown plate format 'xx'; valid: us"),
    ("formats: {custom: ['[A-']}", "formats.custom[0]: '[A-' is not a valid regex"),
    ("formats: {max_fixes: 5}", "formats.max_fixes: 5 must be between 0 and 3"),
    ("tracking: {update: sometimes}", "tracking.update: 'sometimes' is not valid; use one of 'always'"),
    ("tracking: {first_read_min_frames: 0}", "tracking.first_read_min_frames: 0 must be at least 1"),
    ("tracking: {first_read_min_confidence: 1.5}", "tracking.first_read_min_confidence: 1.5 must be between 0 and 1"),
    ("tracking: {max_missed_s: 0}", "tracking.max_missed_s/max_missed_frames"),
    ("tracking: {max_mised_s: 1}", "tracking.max_mised_s: unknown key; did you mean 'max_missed_s'?"),
    ("hotlist: {path: list.txt}", "hotlist.path: list.txt must be a .csv or .yaml file"),
    ("hotlist: {max_edits: 3}", "hotlist.max_edits: 3 must be 0, 1 or 2"),
])
def test_bad_settings_one_line(tmp_path, body, message):
    with pytest.raises(ConfigError) as e:
        load_config(write(tmp_path, "cameras: [{id: a, source: a.mp4}]\n" + body + "\n"))
    assert message in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(ConfigError) as e:  # the same inside a camera names the camera
        load_config(write(tmp_path, "cameras:\n  - id: a\n    source: a.mp4\n    " + body + "\n"))
    assert "cameras[0]." + message.split(":")[0] in str(e.value)
