"""Pick the plate verifier's threshold on the held-out training scenes, as the unit runs it:

    python -m alprd_train.verifier_threshold runs/ver5/plate_verifier.onnx --run runs/ver5

The detector (with its second look, at the default threshold) runs on the verifier run's held-out
training scenes at full size and shrunk as the far rows of `detector_report --far-frame photo` are
(in a frame of the photo's own size, as the shipped verifier's threshold was picked; picked in
1080p frames it buys 0.01 false positives a scene with a point of recall); its boxes scored
under `--verify-below` go to the verifier. For each verifier threshold it prints the plates found
(labelled, and the ones the teacher found that the run also trained on) and the boxes on no plate.
The threshold to ship is the highest that keeps at least `--keep` of the plates the detector finds
without the verifier, at every size: far plates are where the verifier is least sure. The dev
scenes are never used, so they still judge the result.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

import cv2
import numpy as np

from alprd.config import ModelsConfig
from alprd.datasets import detection_splits
from alprd.errors import UserError
from alprd.evaluate import IOU_MIN
from alprd.recognition.manifest import ModelEntry, load_entry
from alprd.recognition.onnx_models import OnnxPlateDetector, OnnxPlateVerifier
from alprd.recognition.preprocess import iou
from alprd_train.scene_mining import mine_scene
from alprd_train.train_detector import shrunk_each
from alprd_train.train_verifier import held_out

THRESHOLDS = (0.05, 0.1, 0.15, 0.2, 0.3, 0.5)
SIZES = (0.0, 60.0, 50.0, 40.0)  # 0: full size; else the widest plate's px at 1920-px scale


def tally(det: OnnxPlateDetector, verifier: OnnxPlateVerifier, scenes: Iterable[tuple[np.ndarray, Sequence]],
          verify_below: float, thresholds: tuple[float, ...]) -> dict:
    """Plates found and boxes on no plate without the verifier and at each threshold. The detector
    runs once a scene; the verifier once per unsure box. `scenes` is read once."""
    found = {t: 0 for t in ("none", *thresholds)}
    stray = {t: 0 for t in ("none", *thresholds)}
    total = 0
    for img, plates in scenes:
        total += len(plates)
        boxes = det.detect(img)
        unsure = [d for d in boxes if d.confidence < verify_below]
        p = dict(zip(map(id, unsure), verifier.plate_probability(img, [d.box for d in unsure])))
        for t in found:
            kept = [d.box for d in boxes if t == "none" or p.get(id(d), 1.0) >= t]
            found[t] += sum(any(iou(pl, b) > IOU_MIN for b in kept) for pl in plates)
            stray[t] += sum(not any(iou(pl, b) > IOU_MIN for pl in plates) for b in kept)
    return {"plates": total, "found": found, "on_no_plate": stray}


def held_out_scenes(data: Path, run: Path, keep: float) -> list[tuple[np.ndarray, list]]:
    """The run's held-out training scenes with their plates: the labels, and the teacher's plates
    the labels lack as the run mined them (its mined.json)."""
    mined_path = run / "mined.json"
    if not mined_path.is_file():
        raise UserError(f"--run {run}: no mined.json there (the folder of an `alprd train verifier` run is needed)")
    mined = json.loads(mined_path.read_text())
    # The scenes the run mined (a smoke run's --limit mines only some) that it held out.
    scenes = [s for s in detection_splits(data)["train"] if str(s.image) in mined and held_out(s.image, data)]
    if not scenes:
        raise UserError(f"{mined_path}: none of the scenes mined there is a held-out training scene of {data}; "
                        "was the run made with this --data?")
    out = []
    for s in scenes:
        rec = mined[str(s.image)]
        labels = [(b.x1, b.y1, b.x2, b.y2) for b in s.boxes]
        extra = mine_scene(np.array(labels, np.float32).reshape(-1, 4), [tuple(b) for b in rec["teacher"]], [], keep).extra
        img = cv2.imread(str(s.image), cv2.IMREAD_COLOR)
        if img is None:
            raise UserError(f"{s.image}: not a readable image")
        out.append((img, labels + [tuple(b[:4]) for b in extra]))
    return out


def pick(results: dict[str, dict], thresholds: tuple[float, ...], keep: float) -> float | None:
    """The highest threshold that keeps `keep` of the plates found without the verifier, at every size."""
    ok = [t for t in thresholds
          if all(r["found"][t] >= keep * r["found"]["none"] for r in results.values())]
    return max(ok) if ok else None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m alprd_train.verifier_threshold")
    ap.add_argument("verifier", type=Path, help="the run's exported verifier ONNX")
    ap.add_argument("--run", type=Path, required=True, help="the `alprd train verifier` run folder (its mined.json)")
    ap.add_argument("--data", type=Path, default=Path("../shared/data"))
    ap.add_argument("--models", type=Path, default=Path("models"),
                    help="the models folder whose detector proposes the boxes (the run's --detector, as shipped)")
    ap.add_argument("--teacher-keep", type=float, default=0.5, help="as the run's --teacher-keep")
    ap.add_argument("--verify-below", type=float, default=ModelsConfig.detector_verify_below)
    ap.add_argument("--detection-threshold", type=float, default=ModelsConfig.detection_threshold)
    ap.add_argument("--keep", type=float, default=0.98, help="share of the detector's plates a threshold must keep")
    ap.add_argument("--json", type=Path, help="write the table here")
    args = ap.parse_args(argv)
    try:
        if not args.verifier.is_file():
            raise UserError(f"{args.verifier}: no such ONNX file")
        det = OnnxPlateDetector(load_entry(args.models, "plate_detector", "detector"),
                                threshold=args.detection_threshold)
        verifier = OnnxPlateVerifier(ModelEntry("plate_verifier", "candidate", "verifier", args.verifier, "",
                                                {"width": 96, "height": 48}))
        full = held_out_scenes(args.data, args.run, args.teacher_keep)
    except UserError as e:
        print(f"verifier_threshold: error: {e}", file=sys.stderr)
        return 2
    results = {}
    print(f"{len(full)} held-out training scenes; detector {det.version} at {args.detection_threshold:g}, "
          f"boxes under {args.verify_below:g} verified; far plates in frames of each photo's own size; "
          "plates found / boxes on no plate")
    print("size      plates  none      " + "  ".join(f"{t:<9g}" for t in THRESHOLDS))
    for px in SIZES:
        # Far scenes are made as they are tallied (tally reads `scenes` once), not held all at once.
        scenes = full if not px else shrunk_each(full, px)
        r = tally(det, verifier, scenes, args.verify_below, THRESHOLDS)
        results["full" if not px else f"{px:g}px"] = r
        cells = "  ".join(f"{r['found'][t]:>4}/{r['on_no_plate'][t]:<4}" for t in ("none", *THRESHOLDS))
        print(f"{'full' if not px else f'{px:g} px':8s}  {r['plates']:>6}  {cells}", flush=True)
    best = pick(results, THRESHOLDS, args.keep)
    print(f"highest threshold keeping {args.keep:.0%} of the detector's plates at every size: "
          f"{best if best is not None else 'none'}")
    if args.json:
        args.json.write_text(json.dumps({"results": results, "picked": best},
                                        indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
