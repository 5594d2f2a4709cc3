"""The shipped detector's detection rate per plate width, for `alprd bench` to judge a camera position.

Real dev scenes, seen as a 1080p camera sees them: each sampled scene is shrunk so its widest plate
is one of TARGETS px wide in a 1920 px frame (alprd.evaluate.shrink_scene, the `--shrink-to`
simulation of `alprd eval`), and every labelled plate is counted in the width bin of its own width
in that frame. The detector runs with the unit's default settings (input width, threshold, second
look, verifier). A photo is never shrunk below its widest plate's size nor enlarged beyond 1920 px,
so the widest bins hold the photos' own near plates, upscaled. Labels checked by eye as on no
plate (eval_sets/dev_scenes_by_eye.csv) are dropped.

    python -m alprd_train.width_report models --data ../shared/data --write-manifest

All dev scenes with plates take about a minute on one core; `--sample N` takes N of them, evenly
spaced (the same scenes each run).
`--write-manifest` stores the curve on the detector's entry of models/manifest.json, where the
bench report reads it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import cv2

from alprd.config import ModelsConfig
from alprd.datasets import SceneSample, detection_splits
from alprd.evaluate import IOU_MIN, shrink_scene
from alprd.recognition.preprocess import iou
from alprd.recognition.recognizer import Recognizer
from alprd_train.detector_report import BY_EYE, audit_by_eye

FRAME_WIDTH = 1920
TARGETS = (30, 50, 70, 90, 120, 170, 240)  # the widest plate of a scene, px in the 1920 px frame
EDGES = (0, 40, 60, 80, 100, 140, 200, None)  # bins [min, max); None: no upper bound


def bin_of(width: float, edges: tuple[int | None, ...] = EDGES) -> int:
    for i in range(len(edges) - 1):
        hi = edges[i + 1]
        if hi is None or width < hi:
            return i
    return len(edges) - 2


def sample(scenes: list[SceneSample], n: int) -> list[SceneSample]:
    """n scenes evenly spaced through the list (all when n >= len or n <= 0)."""
    if n <= 0 or n >= len(scenes):
        return scenes
    return [scenes[i * len(scenes) // n] for i in range(n)]


def measure(rec: Recognizer, scenes: list[SceneSample], drop: list[list[tuple]] | None = None,
            targets: tuple[int, ...] = TARGETS, frame_width: int = FRAME_WIDTH) -> list[dict[str, Any]]:
    """Per width bin: found / labelled plates, each plate binned by its width in the frame."""
    found = [0] * (len(EDGES) - 1)
    plates = [0] * (len(EDGES) - 1)
    drop = drop or [[] for _ in scenes]
    for s, wrong in zip(scenes, drop):
        boxes = [b for b in s.boxes if (b.x1, b.y1, b.x2, b.y2) not in wrong]
        if not boxes:
            continue
        img = cv2.imread(str(s.image), cv2.IMREAD_COLOR)
        if img is None:
            continue
        for px in targets:
            frame, moved = shrink_scene(img, boxes, px, frame_width)
            dets = [d.box for d in rec.detector.detect(frame)]
            for b in moved:
                lb = (b.x1, b.y1, b.x2, b.y2)
                k = bin_of(b.x2 - b.x1)
                plates[k] += 1
                found[k] += any(iou(lb, d) > IOU_MIN for d in dets)
    return [{"min_px": EDGES[i], "max_px": EDGES[i + 1], "rate": round(found[i] / plates[i], 4) if plates[i] else None,
             "plates": plates[i]} for i in range(len(plates))]


def write_manifest(models_dir: Path, curve: dict[str, Any]) -> None:
    mf = models_dir / "manifest.json"
    manifest = json.loads(mf.read_text())
    for m in manifest["models"]:
        if m.get("task") == "detector":
            m["detection_rate_by_width"] = curve
    mf.write_text(json.dumps(manifest, indent=2) + "\n")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m alprd_train.width_report", description=__doc__.split("\n\n")[0])
    ap.add_argument("models", type=Path, help="models folder (manifest.json + plate_detector.onnx)")
    ap.add_argument("--data", type=Path, default=Path("../shared/data"), help="the data folder (SOURCES.md)")
    ap.add_argument("--sample", type=int, default=0, help="dev scenes to use, evenly spaced (default 0: all)")
    ap.add_argument("--by-eye", type=Path, default=BY_EYE, help="labels checked by eye; those on no plate are dropped")
    ap.add_argument("--json", type=Path, help="also write the curve here")
    ap.add_argument("--write-manifest", action="store_true",
                    help="store the curve on the detector entry of MODELS/manifest.json (detection_rate_by_width)")
    args = ap.parse_args(argv)
    dev = detection_splits(args.data)["dev"]
    if not dev:
        ap.error(f"--data {args.data}: no dev scenes there (romania_dashcam, openlpr_plate_detection)")
    _, not_plates = audit_by_eye(args.by_eye, args.data, dev)
    dropped = {id(s): wrong for s, wrong in zip(dev, not_plates)}
    chosen = sample([s for s in dev if s.boxes], args.sample)
    cfg = ModelsConfig(dir=str(args.models))
    rec = Recognizer.from_config(cfg)
    bins = measure(rec, chosen, [dropped[id(s)] for s in chosen])
    curve = {"split": "dev", "scenes": len(chosen), "of_scenes": len(dev), "frame_width": FRAME_WIDTH,
             "input_width": cfg.detector_input_width, "detection_threshold": cfg.detection_threshold,
             "detector": f"{rec.detector.name}@{rec.detector.version}",
             "how": "dev scenes shrunk into 1920 px frames (alprd.evaluate.shrink_scene), widest plate at "
                    + ", ".join(map(str, TARGETS)) + " px; each labelled plate binned by its width there",
             "command": "python -m alprd_train.width_report models --data ../shared/data"
                       + (f" --sample {args.sample}" if args.sample else "") + " --write-manifest",
             "bins": bins}
    print(f"{len(chosen)} of {len(dev)} dev scenes, {len(TARGETS)} distances each, in {FRAME_WIDTH} px frames; "
          f"detector {curve['detector']} at input width {cfg.detector_input_width}")
    print("plate width px   plates   detected")
    for b in bins:
        hi = f"{b['max_px']}" if b["max_px"] is not None else "+"
        rate = f"{b['rate']:.1%}" if b["rate"] is not None else "-"
        print(f"{b['min_px']:>5}-{hi:<6}     {b['plates']:>6}   {rate:>8}")
    if args.json:
        args.json.write_text(json.dumps(curve, indent=2) + "\n")
    if args.write_manifest:
        write_manifest(args.models, curve)
        print(f"stored in {args.models / 'manifest.json'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
