"""The detector's operating point, chosen on the cross-source split (issue 32): end-to-end reads (scene ->
detector with its second look and verifier -> reader, the daemon's own path through alprd.evaluate) at
several `models.detection_threshold` values, on the held-out sources' scenes and on the dev scenes.

    python -m alprd_train.operating_point --data ../shared/data [--models DIR] [--thresholds 0.2 0.3 0.4]

The held-out scenes are the scenes of the cross-source split (the Romanian night ride: another
dashcam, at night), read by eye (training/eval_sets/romania_night_plates.csv); the dev scenes are the
project's dev split as labelled (318 scenes, for stray reads) and the dev plates read by eye (the
Romanian dev videos, the European and British dev photos). A false read is a
published read that is wrong: a labelled plate read as another text (misreads) or a read where no
plate is labelled (stray reads; the labels leave some far plates out, so an upper bound)."""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from alprd.config import ModelsConfig
from alprd.datasets import SceneSample, detection_splits, in_split, read_detection_csv, source_of
from alprd.evaluate import eval_scenes
from alprd.recognition.recognizer import Recognizer
from alprd_train import EVAL_SETS

THRESHOLDS = (0.2, 0.25, 0.3, 0.35, 0.4)


def scene_sets(data: Path) -> dict[str, list[SceneSample]]:
    """held_out: the night ride, read by eye (its dataset labels have no text); dev: the dev scenes as
    labelled (stray reads; their texts are mostly missing), and the dev plates read by eye."""
    night = read_detection_csv(EVAL_SETS / "romania_night_plates.csv")
    assert all(in_split(source_of(s.image), "cross-source") for s in night), "the night set left the split"
    return {
        "held_out": night,
        "dev_scenes": detection_splits(data)["dev"],
        "dev_by_eye": [s for name in ("romania_dev_plates.csv", "europe_dev_photos.csv")
                       for s in read_detection_csv(EVAL_SETS / name)],
    }


def figures(result: dict) -> dict[str, float | int]:
    """One set's end-to-end figures at one setting: plates read right, and the published false reads
    (misreads on labelled plates, stray reads where none is labelled)."""
    texts = result["labelled_texts"]
    right = round((result["exact_match"] or 0.0) * texts)
    return {"scenes": result["images"], "plates": result["boxes"], "labelled_texts": texts,
            "found": round(result["recall"], 4), "read_right": right, "misreads": result["misreads"],
            "stray_reads": round(result["stray_reads_per_image"] * result["images"])}


def cell(f: dict) -> str:
    read = f"{f['read_right']}/{f['labelled_texts']} right, {f['misreads']} misread, " if f["labelled_texts"] else ""
    return f"{read}{f['stray_reads']} stray in {f['scenes']} scenes"


def measure(models: ModelsConfig, sets: dict[str, list[SceneSample]],
            thresholds: tuple[float, ...]) -> list[dict]:
    rows = []
    for t in thresholds:
        cfg = dataclasses.replace(models, detection_threshold=t)
        rec = Recognizer.from_config(cfg)
        row: dict = {"detection_threshold": t, "detector_recheck_above": cfg.detector_recheck_above,
                     "detector_verify_below": cfg.detector_verify_below,
                     "second_look": 0 < cfg.detector_recheck_above < t}
        for name, scenes in sets.items():
            row[name] = figures(eval_scenes(rec, scenes))
        print(json.dumps(row), flush=True)
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m alprd_train.operating_point", description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=Path("../shared/data"))
    ap.add_argument("--models", default="", help="models folder (default: the shipped models)")
    ap.add_argument("--thresholds", type=float, nargs="+", default=list(THRESHOLDS))
    ap.add_argument("--recheck-above", type=float, default=None,
                    help="models.detector_recheck_above for every run (default: the config's default)")
    ap.add_argument("--verify-below", type=float, default=None,
                    help="models.detector_verify_below for every run (default: the config's default)")
    ap.add_argument("--json", type=Path, help="write the rows here")
    args = ap.parse_args(argv)
    cfg = ModelsConfig(dir=args.models)
    if args.recheck_above is not None:
        cfg = dataclasses.replace(cfg, detector_recheck_above=args.recheck_above)
    if args.verify_below is not None:
        # A detector more confident everywhere shows fewer boxes to the verifier at the same value.
        cfg = dataclasses.replace(cfg, detector_verify_below=args.verify_below)
    for flag, v in (("--recheck-above", args.recheck_above), ("--verify-below", args.verify_below)):
        if v is not None and not 0.0 <= v <= 1.0:
            ap.error(f"{flag} {v:g}: must be between 0 and 1 (0: off)")
    rows = measure(cfg, scene_sets(args.data), tuple(args.thresholds))
    for row in rows:
        print(f"threshold {row['detection_threshold']} (second look from {row['detector_recheck_above']}, "
              f"verifier under {row['detector_verify_below']}): "
              + "; ".join(f"{name}: {cell(f)}" for name, f in row.items() if isinstance(f, dict)))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
