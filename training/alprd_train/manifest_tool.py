"""Write models/manifest.json from the exported ONNX files (sha256, input size, alphabet)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from alprd.errors import UserError
from alprd.recognition.base import ALPHABET, PAD
from alprd.recognition.manifest import sha256_of
from alprd_train.quantize_ocr import QUANTIZED_FROM_KEY

# The verifier's operating point: a box scored under models.detector_verify_below is dropped when the
# verifier gives it less than this. Chosen on the verifier's held-out training scenes
# (python -m alprd_train.verifier_threshold); --verifier-threshold sets another.
VERIFIER_THRESHOLD = 0.1


def build_manifest(models_dir: Path, detector_version: str, ocr_version: str, verifier_version: str = "",
                   verifier_threshold: float = VERIFIER_THRESHOLD) -> dict:
    import onnxruntime as ort

    entries = []
    det = models_dir / "plate_detector.onnx"
    if det.exists():
        entries.append({
            "name": "plate_detector", "version": detector_version, "task": "detector", "file": det.name,
            "sha256": sha256_of(det),
            "input": {"layout": "NCHW", "color": "BGR", "range": "0-255", "stride": 4,
                      "size": "any multiple of 32 (letterboxed); default width 640"},
            "outputs": ["heatmap (sigmoid)", "size (log px)", "offset (sigmoid)"],
        })
    ocr = models_dir / "plate_ocr.onnx"
    # The int8 reader (alprd_train.quantize_ocr) is what the unit runs when it is there; the float
    # file it came from is listed too, as the weights training warm-starts from.
    int8 = models_dir / "plate_ocr_int8.onnx"
    run = int8 if int8.exists() else ocr
    source: dict[str, str] = {}
    if run is int8 and ocr.exists():
        source = {"file": ocr.name, "sha256": sha256_of(ocr)}
        made_from = ort.InferenceSession(str(int8), providers=["CPUExecutionProvider"]).get_modelmeta() \
            .custom_metadata_map.get(QUANTIZED_FROM_KEY)
        if made_from != source["sha256"]:
            raise UserError(f"{int8}: quantized from another float reader than {ocr}; run python -m "
                            f"alprd_train.quantize_ocr {ocr} {int8}, or delete {int8} to ship the float one")
    if run.exists():
        entries.append({
            "name": "plate_ocr", "version": ocr_version, "task": "ocr", "file": run.name,
            "sha256": sha256_of(run),
            "input": {"layout": "NCHW", "height": 64, "width": 128, "channels": 1, "color": "grey",
                      "range": "0-255"},
            "alphabet": ALPHABET, "pad": PAD, **_ocr_head(ort, run),
            **({"quantized_from": source} if source else {}),
        })
    verifier = models_dir / "plate_verifier.onnx"
    if verifier.exists():
        if not verifier_version:
            raise UserError(f"{verifier}: give its version with --verifier-version")
        entries.append({
            "name": "plate_verifier", "version": verifier_version, "task": "verifier", "file": verifier.name,
            "sha256": sha256_of(verifier),
            "input": {"layout": "NCHW", "height": 48, "width": 96, "channels": 3, "color": "BGR", "range": "0-255",
                      "window": "the box centred in a 2:1 window twice its width (at least twice its height)"},
            "outputs": ["plate (probability)"],
            "threshold": verifier_threshold,
        })
    return {"format": 1, "models": entries}


def keep_measured(path: Path, manifest: dict) -> None:
    """Carries the measured detection rate per width (alprd_train.width_report) over from the old
    manifest while the detector file is the same one; a new detector must be measured again."""
    try:
        old = {m["name"]: m for m in json.loads(path.read_text()).get("models", [])}
    except (OSError, ValueError):
        return
    for m in manifest["models"]:
        prev = old.get(m["name"], {})
        if "detection_rate_by_width" in prev and prev.get("sha256") == m["sha256"]:
            m["detection_rate_by_width"] = prev["detection_rate_by_width"]


def _ocr_head(ort, path: Path) -> dict:
    """The decoder, read off the exported graph: every reader the trainer makes is [N, 10, 37], ten slots."""
    slots = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).get_outputs()[0].shape[1]
    if slots != 10:
        raise UserError(f"{path}: gives {slots} character slots, not the 10 of the readers alprd train makes")
    return {"decoder": "slots", "slots": 10}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m alprd_train.manifest_tool")
    ap.add_argument("models_dir", type=Path)
    ap.add_argument("--version", required=True, help="version of both models unless overridden below")
    ap.add_argument("--detector-version", help="a different version for the detector")
    ap.add_argument("--ocr-version", help="a different version for the reader")
    ap.add_argument("--verifier-version", default="", help="the plate verifier's version (plate_verifier.onnx)")
    ap.add_argument("--verifier-threshold", type=float, default=VERIFIER_THRESHOLD,
                    help="the plate probability under which the verifier drops a box (verifier_threshold picks it)")
    args = ap.parse_args(argv)
    try:
        if not 0.0 < args.verifier_threshold < 1.0:
            raise UserError(f"--verifier-threshold {args.verifier_threshold}: give a probability between 0 and 1")
        m = build_manifest(args.models_dir, args.detector_version or args.version, args.ocr_version or args.version,
                           args.verifier_version, args.verifier_threshold)
    except UserError as e:
        print(f"manifest_tool: error: {e}", file=sys.stderr)
        return 2
    keep_measured(args.models_dir / "manifest.json", m)
    (args.models_dir / "manifest.json").write_text(json.dumps(m, indent=2) + "\n")
    print(json.dumps(m, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
