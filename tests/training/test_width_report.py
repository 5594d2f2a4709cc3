"""alprd_train.width_report: the detection rate per plate width on real dev scenes, and the manifest
tool keeping that measurement while the detector file is unchanged."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

pytest.importorskip("alprd_train")

from alprd.config import ModelsConfig  # noqa: E402
from alprd.datasets import detection_splits  # noqa: E402
from alprd.recognition.manifest import default_models_dir, load_entry  # noqa: E402
from alprd.recognition.recognizer import Recognizer  # noqa: E402
from alprd_train.width_report import EDGES, TARGETS, bin_of, main, measure, sample  # noqa: E402

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"


def test_bins_and_sample():
    assert [bin_of(w) for w in (0, 39.9, 40, 99, 100, 199, 200, 5000)] == [0, 0, 1, 3, 4, 5, 6, 6]
    xs = list(range(10))
    assert sample(xs, 3) == [0, 3, 6] and sample(xs, 0) == xs and sample(xs, 20) == xs  # type: ignore[arg-type]


@pytest.mark.skipif(not DATA.exists(), reason="../shared/data is not beside the checkout")
def test_every_plate_is_counted_once_per_distance_and_the_curve_lands_in_the_manifest(tmp_path):
    dev = [s for s in detection_splits(DATA)["dev"] if s.boxes]
    chosen = sample(dev, 4)
    bins = measure(Recognizer.from_config(ModelsConfig()), chosen)
    assert len(bins) == len(EDGES) - 1
    assert sum(b["plates"] for b in bins) == len(TARGETS) * sum(len(s.boxes) for s in chosen)
    assert all(b["rate"] is None or 0 <= b["rate"] <= 1 for b in bins)
    models = tmp_path / "models"
    shutil.copytree(default_models_dir(), models)
    assert main([str(models), "--data", str(DATA), "--sample", "3", "--write-manifest"]) == 0
    entry = load_entry(models, "plate_detector", "detector")
    assert entry.detection_rate_by_width is not None and entry.detection_rate_by_width.scenes == 3
    det = next(m for m in json.loads((models / "manifest.json").read_text())["models"] if m["task"] == "detector")
    assert "--sample 3" in det["detection_rate_by_width"]["command"]


def test_manifest_tool_keeps_the_curve_only_for_the_same_detector(tmp_path):
    from alprd_train.manifest_tool import keep_measured

    old = {"models": [{"name": "plate_detector", "sha256": "aa", "detection_rate_by_width": {"bins": []}}]}
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps(old))
    same = {"models": [{"name": "plate_detector", "sha256": "aa"}]}
    keep_measured(path, same)
    assert same["models"][0]["detection_rate_by_width"] == {"bins": []}
    new = {"models": [{"name": "plate_detector", "sha256": "bb"}]}
    keep_measured(path, new)
    assert "detection_rate_by_width" not in new["models"][0]


def test_manifest_tool_rewrite_keeps_the_shipped_curve(tmp_path):
    from alprd_train.manifest_tool import main as manifest_main

    models = tmp_path / "models"
    shutil.copytree(default_models_dir(), models)
    before = load_entry(models, "plate_detector", "detector").detection_rate_by_width
    assert manifest_main([str(models), "--version", "0.4.1", "--ocr-version", "0.5.2", "--verifier-version", "0.1.0"]) == 0
    assert before is not None and load_entry(models, "plate_detector", "detector").detection_rate_by_width == before
