"""The shipped models and the `alprd read` path on frames the synthetic engine made."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort
import pytest
from reader_crops import image_conv_weights, synthetic_crops

from alprd.geometry import iou
from alprd.recognition.manifest import load_entry
from alprd.recognition.onnx_models import OnnxPlateDetector, OnnxPlateOCR, make_session
from alprd.synth.video import render_still

REPO = Path(__file__).resolve().parents[2]
DATA = REPO.parent / "shared" / "data"
LAYOUTS = ["us", "eu", "br", "mercosur", "us2", "eu2"]  # every layout the synthetic engine renders


def alprd(*args: str, cwd: Path | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "alprd", *args], capture_output=True, text=True,
                          cwd=cwd or REPO, timeout=timeout)


def test_shipped_models_match_manifest_and_load():
    det = OnnxPlateDetector(load_entry(REPO / "models", "plate_detector", "detector"))
    ocr = OnnxPlateOCR(load_entry(REPO / "models", "plate_ocr", "ocr"))
    assert "0.0.1" not in (det.version, ocr.version), "placeholder models are still in models/"
    frame = np.full((720, 1280, 3), 90, np.uint8)
    assert det.detect(frame) == []  # an empty road has no plate


def test_read_finds_and_reads_synthetic_plates(tmp_path):
    """End to end through the CLI on 36 rendered road frames of every layout; real thresholds.
    --min-confidence 0 lists every plate found, so detection and reading are judged separately."""
    rng = np.random.default_rng(2024)
    truth = {}
    for i in range(36):
        frame, text, box = render_still(rng, 1280, 720, LAYOUTS[i % len(LAYOUTS)])
        path = tmp_path / f"frame{i:02d}.png"
        cv2.imwrite(str(path), frame)
        truth[str(path)] = (text, box)
    out = alprd("read", "--min-confidence", "0", str(tmp_path))
    assert out.returncode == 0, out.stderr
    lines = [json.loads(ln) for ln in out.stdout.splitlines()]
    assert len(lines) == 36
    found = exact = 0
    for rec in lines:
        text, box = truth[rec["image"]]
        hits = [p for p in rec["plates"] if iou(p["box"], box) > 0.3]
        found += bool(hits)
        exact += any(p["text"] == text for p in hits)
        assert set(rec["ms"]) >= {"decode", "detect", "ocr", "total"}
        scores = [p["score"] for p in rec["plates"]]  # the likeliest plate first (alprd/recognition/rank.py)
        assert scores == sorted(scores, reverse=True)
        assert all(abs(p["score"] - p["confidence"] * p["detection_confidence"]) < 1e-3 for p in rec["plates"])
    print(f"synthetic stills: {found}/36 found, {exact}/36 read exactly")
    assert found / 36 >= READ_FOUND_MIN, f"found {found}/36"
    assert exact / 36 >= READ_EXACT_MIN, f"read {exact}/36 exactly"


# Measured with detector 0.4.1 + reader 0.5.2 and the five-box second look: 35/36 found, 32/36 read exactly
# (detector 0.4.0: 35 and 34; reader 0.5.1: 35 and 32; with detector 0.3.0: 35 and 33).
# With 0.5.0 (see models/MODEL_CARD.md): 35/36 found, 34/36 read exactly,
# with the daemon's second look or without it (one look: 33 and 32 on two other draws). With 0.4.2 and
# its int8 0.4.3 alike: 33/36 (34 and 29 on two other draws; reader 0.4.1: 33, 31 and 29; with detector
# 0.2.0 and reader 0.4.1: 29/36 here; reader 0.3.0: 19/36). Set under the measured rates, so a reader
# that loses five plates fails; raise them with better models.
READ_FOUND_MIN = 0.9
READ_EXACT_MIN = 0.83


def test_second_look_reads_plates_the_detector_framed_loosely():
    """A box much bigger than the plate (the detector errs both ways) shrinks the characters and
    brings in the bumper; the second look reads such plates again from tighter boxes. Measured
    with the shipped models on these 48 stills: one look 27, second look 44 (exact boxes: 45, 46;
    reader 0.5.0 with session 13's three boxes, surest kept: 41)."""
    from alprd.config import ModelsConfig
    from alprd.recognition.recognizer import Recognizer, Timings

    once = Recognizer.from_config(ModelsConfig(min_read_confidence=0.0, reread_below=0.0))
    twice = Recognizer.from_config(ModelsConfig(min_read_confidence=0.0))
    rng = np.random.default_rng(77)
    loose = {"once": 0, "twice": 0}
    exact = {"once": 0, "twice": 0}
    tm = Timings()
    for i in range(48):
        frame, text, (x1, y1, x2, y2) = render_still(rng, 1280, 720, LAYOUTS[i % len(LAYOUTS)])
        w, h = x2 - x1, y2 - y1
        big = (x1 - round(0.2 * w), y1 - round(0.3 * h), x2 + round(0.2 * w), y2 + round(0.3 * h))
        for name, rec in (("once", once), ("twice", twice)):
            loose[name] += rec.read_boxes(frame, [big], tm if rec is twice else None)[0].text == text
            exact[name] += rec.read_boxes(frame, [(x1, y1, x2, y2)])[0].text == text
    print(f"loose boxes: {loose}, exact boxes: {exact}, second looks {tm.rereads}/{tm.plates}")
    assert loose["twice"] >= loose["once"] + 10, loose
    assert exact["twice"] >= exact["once"] - 1, exact  # a sure first read is kept, so little can be lost
    assert 0 < tm.rereads < tm.plates  # only the unsure plates are read again


def test_the_pole_config_finds_plates_40_px_wide_in_a_1080p_frame():
    """The pole unit watches lanes far off, so its config sets a wider detector input than the
    default. Synthetic road stills shrunk as `alprd eval --shrink-to 40` shrinks dev scenes (a 40 px
    plate in a 1920 px frame): measured with the shipped models, its 800 px input finds 46 of these
    48 plates and the default 640 px input 38."""
    from alprd.config import load_config
    from alprd.datasets import BoxLabel
    from alprd.evaluate import shrink_scene
    from alprd.recognition.recognizer import Recognizer

    models = load_config(REPO / "config" / "pole.yaml").models
    detector = Recognizer.from_config(models).detector
    found = 0
    for seed in (0, 1):
        rng = np.random.default_rng(seed)
        for i in range(24):
            frame, _, box = render_still(rng, 1280, 720, ["us", "eu", "br", "mercosur", "eu2", "us"][i % 6])
            far, (plate,) = shrink_scene(frame, [BoxLabel(*box)], 40)
            assert far.shape[1] == 1920 and round(plate.x2 - plate.x1) == 40
            found += any(iou((plate.x1, plate.y1, plate.x2, plate.y2), d.box) > 0.3 for d in detector.detect(far))
    assert found >= 43, f"the pole config's detector (input {models.detector_input_width}) found {found} of 48"


def test_read_reports_unreadable_image(tmp_path):
    bad = tmp_path / "notimage.jpg"
    bad.write_text("this is not a picture")
    out = alprd("read", str(bad))
    assert out.returncode == 1
    assert "not a readable image" in out.stderr and "Traceback" not in out.stderr



def test_shipped_int8_reader_reads_as_its_float_original():
    """The unit runs the int8 reader; it must read what the float reader it came from reads."""
    from alprd.recognition.manifest import sha256_of

    entry = load_entry(REPO / "models", "plate_ocr", "ocr")
    assert entry.path.name == "plate_ocr_int8.onnx" and entry.quantized_from == "plate_ocr.onnx"
    manifest = json.loads((REPO / "models" / "manifest.json").read_text())
    listed = next(m for m in manifest["models"] if m["name"] == "plate_ocr")["quantized_from"]
    assert listed["sha256"] == sha256_of(REPO / "models" / listed["file"])
    int8 = OnnxPlateOCR(entry)
    original = entry.float_original()
    assert original is not None and original.path == REPO / "models" / "plate_ocr.onnx"
    fp32 = OnnxPlateOCR(original)
    crops = synthetic_crops(120, seed=31)
    a = int8.read([c for c, _ in crops])
    b = fp32.read([c for c, _ in crops])
    same = sum(x.text == y.text for x, y in zip(a, b))
    right = [sum(r.text == t for r, (_, t) in zip(reads, crops)) for reads in (a, b)]
    assert same >= 0.9 * len(crops), f"int8 and float agree on {same}/{len(crops)}"
    assert right[0] >= right[1] - 0.03 * len(crops), f"int8 right on {right[0]}, float on {right[1]}"



def test_the_image_convolution_has_weights_no_cpu_can_overflow():
    """AVX2 CPUs without VNNI add pairs of uint8 x int8 products in int16: 255 x 127 x 2 overflows,
    255 x 64 x 2 does not. With 8-bit weights there, reader 0.5.0's int8 copy read 73 % of the
    Brazilian dev crops on such a CPU against 91 % elsewhere."""
    w = image_conv_weights(REPO / "models" / "plate_ocr_int8.onnx")
    largest = int(np.abs(w.astype(np.int32)).max())
    assert w.dtype == np.int8 and largest <= 64, f"the image convolution has weights up to {largest}"


def test_the_int8_reader_reads_alike_on_every_cpu():
    """ONNX Runtime's basic optimisation level runs a QDQ model as the quantized arithmetic written
    out in float, the same on every CPU; the full level runs this CPU's own int8 kernels. The reads
    must agree, on real crops where they are beside the checkout, else on synthetic ones."""
    from alprd.recognition.preprocess import ocr_input

    entry = load_entry(REPO / "models", "plate_ocr", "ocr")
    if DATA.exists():
        from alprd.datasets import ocr_splits

        splits = ocr_splits(DATA)
        crops = [cv2.imread(str(c.image)) for c in (splits["br_dev"] + splits["us_dev"])[:240]]
    else:
        crops = [c for c, _ in synthetic_crops(240, seed=33)]
    x = ocr_input(crops, 64, 128)

    def read(level: ort.GraphOptimizationLevel) -> np.ndarray:
        sess = make_session(entry, ["CPUExecutionProvider"], 1, level)
        return sess.run(None, {sess.get_inputs()[0].name: x})[0].argmax(-1)

    same = (read(ort.GraphOptimizationLevel.ORT_ENABLE_ALL) == read(ort.GraphOptimizationLevel.ORT_ENABLE_BASIC)).all(-1)
    assert same.mean() >= 0.98, f"this CPU's int8 kernels read {same.mean():.1%} of {len(crops)} crops as the reference does"


def test_an_int8_reader_off_its_arithmetic_on_this_cpu_falls_back_to_its_float_original(monkeypatch, caplog):
    """At load, the int8 reader is compared with the QDQ arithmetic it stands for on hard edges. The
    shipped one passes on this CPU; one that fails (forced here: no drift is allowed) reads with its
    float original, says so once, and reads as the float reader does."""
    import logging

    import alprd.recognition.onnx_models as onnx_models

    entry = load_entry(REPO / "models", "plate_ocr", "ocr")
    assert OnnxPlateOCR(entry).path == entry.path
    monkeypatch.setattr(onnx_models, "INT8_DRIFT_MAX", -1.0)
    with caplog.at_level(logging.WARNING, logger="alprd.recognition.onnx_models"):
        fallen = OnnxPlateOCR(entry)
    assert fallen.path.name == "plate_ocr.onnx" and fallen.version == entry.version
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "float original plate_ocr.onnx" in warnings[0], warnings
    crops = [c for c, _ in synthetic_crops(12, seed=34)]
    fp32 = OnnxPlateOCR(entry.float_original())
    assert [r.text for r in fallen.read(crops)] == [r.text for r in fp32.read(crops)]


@pytest.mark.parametrize("damage, message", [
    ("replace", "does not match the manifest"),
    ("remove", "listed in the manifest is missing"),
])
def test_an_int8_reader_falls_back_only_to_the_float_original_the_manifest_names(tmp_path, monkeypatch, caplog,
                                                                                 damage, message):
    """The fallback file is checked by the manifest's sha256 as the int8 file is: a replaced or missing
    float original is never loaded; the unit keeps the int8 reader and says why in one warning."""
    import logging

    import alprd.recognition.onnx_models as onnx_models
    from alprd.errors import ModelError

    models = tmp_path / "models"
    shutil.copytree(REPO / "models", models, ignore=shutil.ignore_patterns("*.md"))
    if damage == "replace":
        (models / "plate_ocr.onnx").write_bytes((models / "plate_ocr.onnx").read_bytes() + b"\0")
    else:
        (models / "plate_ocr.onnx").unlink()
    entry = load_entry(models, "plate_ocr", "ocr")
    with pytest.raises(ModelError, match=message):
        entry.float_original()
    monkeypatch.setattr(onnx_models, "INT8_DRIFT_MAX", -1.0)
    with caplog.at_level(logging.WARNING, logger="alprd.recognition.onnx_models"):
        kept = OnnxPlateOCR(entry)
    assert kept.path == entry.path
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and message in warnings[0] and "reads may be wrong" in warnings[0], warnings
