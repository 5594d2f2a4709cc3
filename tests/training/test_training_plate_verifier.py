"""Training the plate verifier (alprd-train): `alprd train verifier`, its threshold, its manifest entry."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")  # the trainers are alprd-train's: pip install -e training
pytest.importorskip("alprd_train")

from alprd.recognition.manifest import load_entry  # noqa: E402
from alprd.recognition.onnx_models import OnnxPlateVerifier  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
DATA = REPO.parent / "shared" / "data"


@pytest.mark.skipif(not DATA.exists(), reason="../shared/data is not beside the checkout")
def test_training_smoke_exports_a_verifier_the_detector_runs(tmp_path):
    """A few steps of `alprd train verifier`, resumed, exported, listed by the manifest tool and
    loaded by the daemon's backends; bad arguments get one line."""

    def alprd(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "alprd", *args], capture_output=True, text=True, timeout=600,
                              cwd=REPO)

    models = tmp_path / "models"
    models.mkdir()
    for name in ("plate_detector.onnx", "plate_ocr.onnx", "plate_ocr_int8.onnx"):
        shutil.copy2(REPO / "models" / name, models / name)
    common = ["--data", str(DATA), "--out", str(tmp_path / "ver"), "--batch", "8", "--eval-every", "2",
              "--limit", "40", "--detector", str(REPO / "models" / "plate_detector.onnx")]
    r = alprd("train", "verifier", *common, "--steps", "2")
    assert r.returncode == 0, r.stderr[-2000:]
    record = json.loads((tmp_path / "ver" / "run.json").read_text())
    assert record["data"]["train"]["detector_boxes_on_no_plate"] > 0 and record["data"]["train"]["plates"] > 0
    assert record["evals"] and "on_plates_kept@0.1" in record["evals"][-1]
    r = alprd("train", "verifier", *common, "--steps", "3", "--export", str(models / "plate_verifier.onnx"))
    assert r.returncode == 0 and "resumed at step 2" in r.stdout, r.stderr[-2000:]
    r = subprocess.run([sys.executable, "-m", "alprd_train.manifest_tool", str(models), "--version", "0.0.9",
                        "--verifier-version", "0.0.1"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    ver = OnnxPlateVerifier(load_entry(models, "plate_verifier", "verifier"))
    frame = np.random.default_rng(0).integers(0, 255, (540, 960, 3), dtype=np.uint8)
    p = ver.plate_probability(frame, [(10, 10, 110, 40), (900, 500, 960, 540)])
    assert len(p) == 2 and all(0.0 <= x <= 1.0 for x in p)
    assert ver.version == "0.0.1" and ver.threshold == 0.1
    # the threshold is picked on the run's held-out training scenes, full size and shrunk
    r = subprocess.run([sys.executable, "-m", "alprd_train.verifier_threshold", str(models / "plate_verifier.onnx"),
                        "--run", str(tmp_path / "ver"), "--data", str(DATA), "--models", str(REPO / "models")],
                       capture_output=True, text=True, cwd=REPO, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    rows = {line.split()[0]: line.split() for line in r.stdout.splitlines() if line.split()[:1] in (["full"], ["40"])}
    assert set(rows) == {"full", "40"} and int(rows["full"][1]) > 0, r.stdout
    assert "highest threshold keeping 98% of the detector's plates at every size:" in r.stdout
    # the picked threshold goes into the manifest, and the unit uses it
    tool = [sys.executable, "-m", "alprd_train.manifest_tool", str(models), "--version", "0.0.9", "--verifier-version",
            "0.0.1", "--verifier-threshold"]
    assert subprocess.run([*tool, "0.25"], capture_output=True, text=True).returncode == 0
    assert OnnxPlateVerifier(load_entry(models, "plate_verifier", "verifier")).threshold == 0.25
    r = subprocess.run([*tool, "1.5"], capture_output=True, text=True)
    assert r.returncode == 2 and "--verifier-threshold 1.5" in r.stderr and r.stderr.strip().count("\n") == 0
    r = subprocess.run([sys.executable, "-m", "alprd_train.verifier_threshold", str(models / "plate_verifier.onnx"),
                        "--run", str(tmp_path)], capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0 and "no mined.json there" in r.stderr, r.stderr
    r = alprd("train", "verifier", *common, "--steps", "3", "--far-p", "2")
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0 and "--far-p 2" in r.stderr, r.stderr
    r = alprd("train", "verifier", "--detector", str(tmp_path / "none.onnx"))
    assert r.returncode == 2 and "none.onnx: no such ONNX file" in r.stderr and "Traceback" not in r.stderr
