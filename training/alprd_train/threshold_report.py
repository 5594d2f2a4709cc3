"""End-to-end reads at several detector thresholds, on the cross-source scenes and the dev scenes.

Each threshold runs the daemon's whole path (detector with its second look and verifier, reader) on
the scenes of the sources `--split cross-source` holds out (the Romanian night ride) and on the dev
scenes read by eye (training/eval_sets: the two Romanian dev videos, openlpr's val photos). Exact
plate reads measure what a lower threshold wins on cameras the detector is unsure of; stray reads
(a read where no labelled plate is) measure what it costs. The cross-source scenes have no texts, so
there the figure is the plates read at all (a read published on the labelled box). The default
threshold is chosen by it (models/MODEL_CARD.md, "Detector operating point").
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from alprd.config import ModelsConfig
from alprd.datasets import SceneSample, detection_splits, held_out_by, read_detection_csv, source_of
from alprd.evaluate import eval_scenes
from alprd.recognition.recognizer import Recognizer
from alprd_train import EVAL_SETS

THRESHOLDS = (0.2, 0.25, 0.3, 0.35, 0.4)
MID_PX = 90  # a mid-distance plate's width at 1080p: the unsure plates were mid-distance ones
DEV_SETS = ("romania_dev_plates.csv", "europe_dev_photos.csv")


def cross_source_scenes(data: Path) -> list[SceneSample]:
    """Every labelled scene of ../shared/data whose source `--split cross-source` holds out."""
    out: list[SceneSample] = []
    for csv_path in sorted(data.glob("*/*.csv")):
        if "x1" not in csv_path.open().readline():
            continue
        out += [s for s in read_detection_csv(csv_path) if held_out_by(source_of(s.image), "cross-source")]
    return out


def dev_scenes(data: Path, which: str) -> list[SceneSample]:
    """read-by-eye: the dev scenes whose plates were read by eye (texts, so exact reads); split: every
    dev scene (boxes only, twice the scenes for the stray reads)."""
    if which == "split":
        return detection_splits(data)["dev"]
    return [s for name in DEV_SETS for s in read_detection_csv(EVAL_SETS / name)]


def figures(models: ModelsConfig, scenes: list[SceneSample], shrink_to: float | None) -> dict[str, float | int | str]:
    r = eval_scenes(Recognizer.from_config(models), scenes, shrink_to)
    exact = r["exact_match"]
    return {"boxes": r["boxes"], "published": round(r["read_recall"] * r["boxes"]), "texts": r["labelled_texts"],
            "exact": "-" if exact is None else round(exact * r["labelled_texts"]), "stray": r["stray_reads_per_image"]}


def _name(key: tuple[str, float | None]) -> str:
    return key[0] if key[1] is None else f"{key[0]} at {key[1]:g} px"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m alprd_train.threshold_report")
    ap.add_argument("models", nargs="?", default="", help="models folder (default: the shipped models)")
    ap.add_argument("--data", type=Path, default=Path("../shared/data"))
    ap.add_argument("--thresholds", type=float, nargs="+", default=list(THRESHOLDS))
    ap.add_argument("--recheck-above", type=float, default=ModelsConfig.detector_recheck_above)
    ap.add_argument("--min-read-confidence", type=float, default=ModelsConfig.min_read_confidence)
    ap.add_argument("--mid-px", type=float, default=MID_PX,
                    help="also measure each scene seen from mid-distance: shrunk so its widest plate is this wide "
                         "in a 1080p frame (evaluate.shrink_scene); 0: only as photographed")
    ap.add_argument("--dev-scenes", choices=("read-by-eye", "split"), default="read-by-eye",
                    help="read-by-eye: training/eval_sets' dev scenes, with texts; split: all the dev split's scenes")
    args = ap.parse_args(argv)
    scenes = {"cross-source": cross_source_scenes(args.data), "dev": dev_scenes(args.data, args.dev_scenes)}
    sets = {(k, px): v for k, v in scenes.items() for px in (None, args.mid_px or None)}
    sets = dict(sorted(sets.items(), key=lambda kv: kv[0][1] or 0))
    print("threshold  plates read/boxes, exact reads/texts, stray reads/img in: " + "  ".join(map(_name, sets)),
          flush=True)
    for t in args.thresholds:
        cfg = dataclasses.replace(ModelsConfig(), dir=args.models, detection_threshold=t,
                                  detector_recheck_above=args.recheck_above,
                                  min_read_confidence=args.min_read_confidence)
        row = {k: figures(cfg, v, k[1]) for k, v in sets.items()}
        print(f"{t:.2f}  " + "  ".join(
            f"{_name(k)}: {f['published']}/{f['boxes']}, {f['exact']}/{f['texts']}, {f['stray']:.4f}"
            for k, f in row.items()), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
