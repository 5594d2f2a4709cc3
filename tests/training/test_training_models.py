"""The training code (alprd-train, training/): warm starts from the shipped models, a few steps of
each trainer, the int8 quantizer and the manifest tool, and the framing the reader trains on."""

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

torch = pytest.importorskip("torch")  # the trainers are alprd-train's: pip install -e training
pytest.importorskip("alprd_train")

from reader_crops import image_conv_weights, synthetic_crops  # noqa: E402

from alprd.recognition.manifest import load_entry  # noqa: E402
from alprd.recognition.onnx_models import OnnxPlateDetector, OnnxPlateOCR  # noqa: E402
from alprd.synth.video import render_still  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
DATA = REPO.parent / "shared" / "data"
TEACHER = REPO.parent / "shared" / "teachers" / "cct_xs_v2_global.onnx"
TEACHER_DETECTOR = REPO.parent / "shared" / "teachers" / "yolo-v9-t-416-license-plates-end2end1.onnx"
LABELS = REPO / "training" / "labels"


def alprd(*args: str, cwd: Path | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "alprd", *args], capture_output=True, text=True,
                          cwd=cwd or REPO, timeout=timeout)




def record_ocr_started_from_shipped(run_json: Path) -> bool:
    init = json.loads(run_json.read_text())["init_onnx"]
    return init["path"].endswith("plate_ocr.onnx") and init["dev"]["br_dev"] > 0.5  # not from scratch


def test_warm_start_reproduces_the_shipped_models(tmp_path):
    """Batch norms folded into the ONNX convolutions are unfolded, and attention weights exported as
    unnamed MatMuls are found again, so each net computes the same thing as its ONNX."""
    from alprd.recognition.preprocess import ocr_input
    from alprd_train.common import save_checkpoint, warm_start
    from alprd_train.nets import PlateDetectorExport, PlateDetectorNet
    from alprd_train.train_ocr import H, W, _render_one, export_ocr, make_net

    x = ocr_input([_render_one((seed, 0.0))[0] for seed in range(8)], H, W)  # synthetic plates
    shipped = ort.InferenceSession(str(REPO / "models" / "plate_ocr.onnx")).run(None, {"image": x})[0]

    def reproduces(head: str, onnx_path: Path, probs: np.ndarray) -> bool:
        net = make_net(head)
        warm_start(net, onnx_path, torch.from_numpy(x))
        net.eval()
        with torch.no_grad():
            return np.abs(torch.softmax(net(torch.from_numpy(x)), -1).numpy() - probs).max() < 1e-3

    assert reproduces("attn", REPO / "models" / "plate_ocr.onnx", shipped)
    fresh = make_net("attn").eval()
    with torch.no_grad():
        assert np.abs(torch.softmax(fresh(torch.from_numpy(x)), -1).numpy() - shipped).max() > 0.1
    # The slot reader of 0.3.0 (its head a named Gemm), exported from a trained-looking state.
    slots = make_net("slots")
    with torch.no_grad():
        slots.train()(torch.from_numpy(x))  # batch-norm statistics that are not the defaults
    save_checkpoint(tmp_path / "slots.pt", model=slots.state_dict(), head="slots")
    export_ocr(tmp_path / "slots.pt", tmp_path / "slots.onnx")
    probs = ort.InferenceSession(str(tmp_path / "slots.onnx")).run(None, {"image": x})[0]
    assert reproduces("slots", tmp_path / "slots.onnx", probs)
    with pytest.raises(ValueError, match="no weight"):
        warm_start(make_net("slots"), REPO / "models" / "plate_ocr.onnx", torch.from_numpy(x))

    scene = render_still(np.random.default_rng(2), 320, 256)[0].transpose(2, 0, 1)[None].astype(np.float32)
    det = PlateDetectorNet()
    warm_start(det, REPO / "models" / "plate_detector.onnx", torch.from_numpy(np.repeat(scene, 2, 0)))
    with torch.no_grad():
        mine = [t.numpy() for t in PlateDetectorExport(det).eval()(torch.from_numpy(scene))]
    shipped = ort.InferenceSession(str(REPO / "models" / "plate_detector.onnx")).run(None, {"image": scene})
    assert all(np.abs(a - b).max() < 0.01 for a, b in zip(mine, shipped))
    with pytest.raises(ValueError, match="not those of this network"):
        warm_start(make_net("slots"), REPO / "models" / "plate_detector.onnx", torch.from_numpy(x))


@pytest.mark.skipif(not DATA.exists(), reason="../shared/data is not beside the checkout")
def test_training_smoke_exports_valid_onnx(tmp_path):
    """A few steps of each trainer with the options of the commands that made the shipped reader 0.5.2
    and detector 0.4.1 (and the reader's shift-pad and file-name labels of issue 32), then the exported
    ONNX runs through the daemon's own backends."""
    models = tmp_path / "models"
    r = alprd("train", "ocr", "--data", str(DATA), "--out", str(tmp_path / "ocr"), "--steps", "2", "--batch", "8",
              "--synthetic", "16", "--us-varied", "0.25", "--eu-road", "0.2", "--eval-every", "2", "--workers", "1",
              "--limit", "40", "--init-onnx", str(REPO / "models" / "plate_ocr.onnx"), "--head", "attn",
              "--scene-crops", "--us-repeat", "2", "--teacher", str(TEACHER),
              "--read-by-eye", str(LABELS / "scene_plates_read_by_eye.csv"), str(LABELS / "crops_read_by_eye.csv"),
              "--frame-with", str(REPO / "models"), "--frame-share", "0.5", "--ema", "0.998",
              "--shift-pad", "0.5", "--reconcile-names", "0.5",
              "--hold-out", "cross-source", "--export", str(models / "plate_ocr.onnx"))
    assert r.returncode == 0, r.stderr[-2000:]
    assert "scene crops" in r.stdout and any((tmp_path / "ocr" / "scene_crops").glob("*.png"))
    assert "read by eye: " in r.stdout and "(moving average)" in r.stdout
    assert json.loads((tmp_path / "ocr" / "run.json").read_text())["framing"]["share"] == 0.5
    assert "named_reconciled" in json.loads((tmp_path / "ocr" / "run.json").read_text())["no_text_labels"]
    detector_args = ["--init-onnx", str(REPO / "models" / "plate_detector.onnx"),
                     "--hard-negatives", str(REPO / "models" / "plate_detector.onnx"), "--hard-p", "0.2",
                     "--far-share", "0.3", "--ema", "0.998", "--hold-out", "cross-source"]
    if TEACHER_DETECTOR.exists():
        detector_args += ["--teacher-detector", str(TEACHER_DETECTOR)]
    r = alprd("train", "detector", "--data", str(DATA), "--out", str(tmp_path / "det"), "--steps", "2",
              "--batch", "2", "--faces", "4", "--eval-every", "2", "--eval-limit", "3", "--limit", "10",
              *detector_args, "--export", str(models / "plate_detector.onnx"))
    assert r.returncode == 0, r.stderr[-2000:]
    assert "warm start from" in r.stdout
    assert json.loads((tmp_path / "det" / "run.json").read_text())["mined"]["hard_negatives"] > 0
    # --hold-out: what each run left out is in its record, and the held-out sources are evaluated apart.
    ocr_held = json.loads((tmp_path / "ocr" / "run.json").read_text())["hold_out"]
    assert ocr_held["dropped"]["br_train"] > 0 and "openalpr_train_detector/CC" in ocr_held["dropped_by_source"]
    assert "br_held_out" in json.loads((tmp_path / "ocr" / "run.json").read_text())["evals"][-1]
    det_held = json.loads((tmp_path / "det" / "run.json").read_text())["hold_out"]
    assert det_held["dropped_by_source"] == {"romania_dashcam/nightride_type3_001": det_held["evaluated"]}
    for name in ("ocr", "det"):
        record = json.loads((tmp_path / name / "run.json").read_text())
        assert record["evals"] and record["exported"]
    assert record_ocr_started_from_shipped(tmp_path / "ocr" / "run.json")
    # Resuming a finished run is a no-op that still exports.
    r = alprd("train", "ocr", "--data", str(DATA), "--out", str(tmp_path / "ocr"), "--steps", "2", "--limit", "40",
              "--synthetic", "16", "--workers", "1", "--hold-out", "cross-source")
    assert r.returncode == 0 and "resumed at step 2" in r.stdout
    sess = ort.InferenceSession(str(models / "plate_ocr.onnx"))
    probs = sess.run(None, {"image": np.zeros((3, 1, 64, 128), np.float32)})[0]
    assert probs.shape == (3, 10, 37) and np.allclose(probs.sum(-1), 1, atol=1e-4)
    subprocess.run([sys.executable, "-m", "alprd_train.manifest_tool", str(models), "--version", "0.0.9"],
                   check=True, capture_output=True)
    det = OnnxPlateDetector(load_entry(models, "plate_detector", "detector"))
    ocr = OnnxPlateOCR(load_entry(models, "plate_ocr", "ocr"))
    assert not ocr.ctc and json.loads((models / "manifest.json").read_text())["models"][1]["decoder"] == "slots"
    frame = np.random.default_rng(0).integers(0, 255, (540, 960, 3), dtype=np.uint8)
    assert isinstance(det.detect(frame), list)
    assert len(ocr.read([frame[:64, :128], frame[100:200, :300]])) == 2


@pytest.mark.skipif(not DATA.exists(), reason="../shared/data is not beside the checkout")
def test_a_run_with_a_moving_average_keeps_the_average_and_resumes_it(tmp_path):
    """--ema: the weights evaluated and kept as best.pt (which --export exports) are the moving average, not the last
    step's, for the reader and the detector; the average resumes with the run; a decay outside 0..1 is refused
    in one line."""
    args = ["train", "ocr", "--data", str(DATA), "--out", str(tmp_path / "ocr"), "--batch", "8", "--synthetic", "16",
            "--workers", "1", "--limit", "40", "--init-onnx", str(REPO / "models" / "plate_ocr.onnx"), "--ema", "0.5"]
    r = alprd(*args, "--steps", "3", "--eval-every", "3", "--lr", "1e-2")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "(moving average)" in r.stdout
    last = torch.load(tmp_path / "ocr" / "last.pt", weights_only=False)
    best = torch.load(tmp_path / "ocr" / "best.pt", weights_only=False)
    average = {k.removeprefix("module."): v for k, v in last["ema"].items() if k.startswith("module.")}
    assert average.keys() == best["model"].keys() == last["model"].keys()
    assert all(torch.equal(best["model"][k], average[k]) for k in average)
    assert any(not torch.equal(average[k], last["model"][k]) for k in average if average[k].is_floating_point())
    assert json.loads((tmp_path / "ocr" / "run.json").read_text())["evals"][-1]["ema"] == 0.5
    # Resuming carries the average on: it moves from where it stopped, not from the raw weights.
    r = alprd(*args, "--steps", "4", "--eval-every", "4", "--lr", "1e-2")
    assert r.returncode == 0 and "resumed at step 3" in r.stdout, r.stderr[-2000:]
    resumed = torch.load(tmp_path / "ocr" / "last.pt", weights_only=False)
    assert int(resumed["ema"]["n_averaged"]) == 4
    r = alprd("train", "ocr", "--out", str(tmp_path / "x"), "--ema", "1.5")
    assert r.returncode != 0 and "--ema 1.5" in r.stderr and "Traceback" not in r.stderr
    # The detector's trainer keeps its average the same way, in every step checkpoint too.
    r = alprd("train", "detector", "--data", str(DATA), "--out", str(tmp_path / "det"), "--steps", "3", "--lr", "1e-2",
              "--batch", "2", "--faces", "4", "--eval-every", "3", "--eval-limit", "3", "--limit", "10",
              "--init-onnx", str(REPO / "models" / "plate_detector.onnx"), "--ema", "0.5", "--far-share", "0.5")
    assert r.returncode == 0, r.stderr[-2000:]
    last = torch.load(tmp_path / "det" / "last.pt", weights_only=False)
    average = {k.removeprefix("module."): v for k, v in last["ema"].items() if k.startswith("module.")}
    for kept in ("best.pt", "step3.pt"):
        weights = torch.load(tmp_path / "det" / kept, weights_only=False)["model"]
        assert weights.keys() == average.keys() and all(torch.equal(weights[k], average[k]) for k in average)
    assert any(not torch.equal(average[k], last["model"][k]) for k in average if average[k].is_floating_point())
    r = alprd("train", "detector", "--out", str(tmp_path / "y"), "--ema", "-0.1")
    assert r.returncode != 0 and "--ema -0.1" in r.stderr and "Traceback" not in r.stderr
    r = alprd("train", "detector", "--out", str(tmp_path / "y"), "--far-share", "2")
    assert r.returncode != 0 and "--far-share 2.0: give a share" in r.stderr and "Traceback" not in r.stderr


def test_a_new_head_starts_from_the_shipped_backbone_and_exports(tmp_path):
    """A reader with another head than the shipped one takes its convolutions only, trains, and
    exports a slot-format ONNX that the daemon's reader loads unchanged; the attention reader starts
    from a slot reader's backbone the same way, as reader 0.4.0 started from 0.3.0."""
    from alprd.recognition.preprocess import ocr_input
    from alprd_train.common import save_checkpoint
    from alprd_train.train_ocr import H, W, _render_one, export_ocr, init_from_onnx, make_net

    x = torch.from_numpy(ocr_input([_render_one((seed, 0.0))[0] for seed in range(8)], H, W))
    slots, attn = make_net("slots"), make_net("attn")
    assert init_from_onnx(slots, "slots", REPO / "models" / "plate_ocr.onnx", x)  # a new head
    assert not init_from_onnx(attn, "attn", REPO / "models" / "plate_ocr.onnx", x)  # all of it
    slots.eval(), attn.eval()
    with torch.no_grad():
        assert torch.allclose(slots.features(x), attn.features(x), atol=1e-5)
        assert not torch.allclose(make_net("attn").eval().features(x), attn.features(x), atol=1e-2)
    save_checkpoint(tmp_path / "slots.pt", model=slots.state_dict(), head="slots")
    export_ocr(tmp_path / "slots.pt", tmp_path / "slots.onnx")
    from_slots = make_net("attn")
    assert init_from_onnx(from_slots, "attn", tmp_path / "slots.onnx", x)  # a new head on the slot backbone
    with torch.no_grad():
        mine, theirs = from_slots.eval().features(x), slots.features(x)
        assert (mine - theirs).abs().max() < 1e-3 * theirs.abs().max()  # exported, then unfolded again

    models = tmp_path / "models"
    r = alprd("train", "ocr", "--data", str(DATA), "--out", str(tmp_path / "ocr"), "--steps", "2", "--batch", "8",
              "--synthetic", "16", "--eval-every", "2", "--workers", "1", "--limit", "40", "--head", "slots",
              "--init-onnx", str(REPO / "models" / "plate_ocr.onnx"), "--frame-with", str(REPO / "models"),
              "--export", str(models / "plate_ocr.onnx"))
    assert r.returncode == 0, r.stderr[-2000:]
    record = json.loads((tmp_path / "ocr" / "run.json").read_text())
    assert record["exported"] and record["init_onnx"]["dev"]["br_dev"] < 0.2  # its head did start new
    assert record["framing"]["boxes"] > 10 and (tmp_path / "ocr" / "framing.npy").exists()
    r = alprd("train", "ocr", "--out", str(tmp_path / "x"), "--us-varied", "0.7", "--eu-road", "0.5")
    assert r.returncode != 0 and "--eu-road 0.5" in r.stderr and "at most 1" in r.stderr and "Traceback" not in r.stderr
    # Resuming with another head is refused in one line.
    r = alprd("train", "ocr", "--data", str(DATA), "--out", str(tmp_path / "ocr"), "--steps", "3", "--limit", "40",
              "--synthetic", "16", "--workers", "1", "--head", "attn")
    assert r.returncode != 0 and "--head slots" in r.stderr and "Traceback" not in r.stderr
    subprocess.run([sys.executable, "-m", "alprd_train.manifest_tool", str(models), "--version", "0.0.9"],
                   check=True, capture_output=True)
    ocr = OnnxPlateOCR(load_entry(models, "plate_ocr", "ocr"))
    assert not ocr.ctc
    reads = ocr.read([np.full((40, 120, 3), 200, np.uint8)] * 2)
    assert len(reads) == 2


def test_quantize_tool_writes_an_int8_reader_the_manifest_prefers(tmp_path):
    import onnx

    models = tmp_path / "models"
    models.mkdir()
    shutil.copy(REPO / "models" / "plate_ocr.onnx", models / "plate_ocr.onnx")
    r = subprocess.run([sys.executable, "-m", "alprd_train.quantize_ocr", str(models / "plate_ocr.onnx"),
                        str(models / "plate_ocr_int8.onnx"), "--data", str(DATA), "--crops", "24",
                        "--frame-with", str(REPO / "models")], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    ops = {n.op_type for n in onnx.load(str(models / "plate_ocr_int8.onnx")).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    assert int(np.abs(image_conv_weights(models / "plate_ocr_int8.onnx").astype(np.int32)).max()) <= 64
    subprocess.run([sys.executable, "-m", "alprd_train.manifest_tool", str(models), "--version", "0.0.9"],
                   check=True, capture_output=True)
    entry = load_entry(models, "plate_ocr", "ocr")
    assert entry.path.name == "plate_ocr_int8.onnx" and entry.quantized_from == "plate_ocr.onnx"
    crops = synthetic_crops(40, seed=32)
    reads = OnnxPlateOCR(entry).read([c for c, _ in crops])
    assert sum(r.text == t for r, (_, t) in zip(reads, crops)) >= 20
    # Training cannot start from int8 weights: one line pointing at the float file.
    r = alprd("train", "ocr", "--data", str(DATA), "--out", str(tmp_path / "ocr"), "--steps", "1", "--limit", "4",
              "--synthetic", "16", "--workers", "1", "--init-onnx", str(models / "plate_ocr_int8.onnx"))
    assert r.returncode != 0 and "an int8 model" in r.stderr and "Traceback" not in r.stderr
    # An int8 reader left over from another float one is refused, not listed.
    shutil.copy(REPO / "models" / "plate_ocr_int8.onnx", models / "plate_ocr_int8.onnx")
    with open(models / "plate_ocr.onnx", "ab") as f:
        f.write(b"another float reader")
    r = subprocess.run([sys.executable, "-m", "alprd_train.manifest_tool", str(models), "--version", "0.0.9"],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "quantized from another float reader" in r.stderr and "Traceback" not in r.stderr
    # A user mistake is one line, not a traceback.
    r = subprocess.run([sys.executable, "-m", "alprd_train.quantize_ocr", str(tmp_path / "nope.onnx"),
                        str(tmp_path / "out.onnx"), "--data", str(DATA)], capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 2 and "nope.onnx: no such ONNX file" in r.stderr and "Traceback" not in r.stderr
    r = subprocess.run([sys.executable, "-m", "alprd_train.quantize_ocr", str(models / "plate_ocr.onnx"),
                        str(tmp_path / "out.onnx"), "--data", str(DATA), "--frame-with", str(tmp_path)],
                       capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 2 and "--frame-with" in r.stderr and "no manifest.json" in r.stderr, r.stderr[-500:]
    assert "Traceback" not in r.stderr


@pytest.mark.skipif(not DATA.exists(), reason="../shared/data is not beside the checkout")
def test_calibration_crops_are_half_framed_as_the_daemon_frames_plates():
    """With a detector to frame them, the second half of the calibration crops carry its box errors
    and crop_plate's padding; the first half stay the tight crops, in the same order."""
    pytest.importorskip("onnxruntime.quantization")
    from alprd_train.quantize_ocr import calibration_crops

    tight = calibration_crops(DATA, 16)
    mixed = calibration_crops(DATA, 16, frame_with=REPO / "models")
    assert tight.shape == mixed.shape == (16, 1, 64, 128)
    assert np.array_equal(tight[:8], mixed[:8])
    assert all(not np.array_equal(a, b) for a, b in zip(tight[8:], mixed[8:]))


def test_crops_cut_at_the_edge_are_framed_as_the_daemon_frames_plates(tmp_path):
    """The detector's box errors are measured around labelled plates, and a tight crop is framed with
    one of them plus crop_plate's padding: what the daemon would hand the reader."""
    from alprd.datasets import BoxLabel, SceneSample
    from alprd.recognition.preprocess import CROP_PAD_X, CROP_PAD_Y
    from alprd_train.train_ocr import detector_framing, frame_like_daemon

    rng = np.random.default_rng(4)
    scenes = []
    for i in range(8):
        frame, text, (x1, y1, x2, y2) = render_still(rng, 1280, 720, ["us", "br", "eu2", "mercosur"][i % 4])
        cv2.imwrite(str(tmp_path / f"s{i}.png"), frame)
        scenes.append(SceneSample(tmp_path / f"s{i}.png", [BoxLabel(x1, y1, x2, y2, text)]))
    framing = detector_framing(REPO / "models", scenes, tmp_path / "framing.npy")
    assert len(framing) >= 7 and (tmp_path / "framing.npy").exists()
    # Boxes sit around the plate: each edge within a fifth of the plate of the label's.
    assert np.abs(np.median(framing, 0) - [0, 0, 1, 1]).max() < 0.2, np.median(framing, 0)

    plate = np.random.default_rng(0).integers(0, 255, (50, 100, 3), dtype=np.uint8)
    exact = frame_like_daemon(rng, plate, np.array([[0, 0, 1, 1]], np.float32))
    px, py = round(100 * CROP_PAD_X), round(50 * CROP_PAD_Y)
    assert exact.shape == (50 + 2 * py, 100 + 2 * px, 3)
    assert np.array_equal(exact[py:py + 50, px:px + 100], plate)
    # A box that missed the plate's left fifth cuts it off, as the daemon's crop would.
    short = frame_like_daemon(rng, plate, np.array([[0.2, 0, 1, 1]], np.float32))
    left = round(100 * (0.2 - 0.8 * CROP_PAD_X))  # the crop's first column, in the plate's
    assert short.shape[1] == round(100 * (1 + 0.8 * CROP_PAD_X)) - left
    assert np.array_equal(short[py:py + 50, 20 - left:100 - left], plate[:, 20:])
