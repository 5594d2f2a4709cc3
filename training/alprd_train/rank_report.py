"""Which read comes first: on the dev scenes, is the unit's top read (the first `alprd read` prints) a
labelled plate's, and is it right? And how often does a stray read (a sign, badge or lettering: no
labelled plate under it, and no plate the labels lack) outrank a labelled plate's read?

    python -m alprd_train.rank_report --teacher ../shared/teachers/yolo-...onnx [--json out.json]

Three scene sets: openlpr's dev photos (`val.csv`, boxes without text: only "on a plate" is scored),
the European plates of those photos read by eye (`eval_sets/europe_dev_photos.csv`) and the Romanian
dev frames read by eye (`eval_sets/romania_dev_plates.csv`); and 40 synthetic road frames, each with
a shop sign pasted above the road (alprd.synth.plates.render_sign), the sign being a stray read
wherever it is read. A read on a plate the labels lack (a
confident teacher box nobody labelled, or a plate of `eval_sets/dev_scenes_by_eye.csv`) is set aside
as detector_report sets it aside: neither a labelled plate's read nor a stray one. Every published
read's features are cached (`--cache`), so orders are compared without running the models again.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from alprd.config import ModelsConfig
from alprd.datasets import SceneSample, detection_splits, read_detection_csv
from alprd.evaluate import IOU_MIN
from alprd.formats.formats import GENERIC, PRESETS, expand_presets
from alprd.geometry import iou
from alprd.recognition.base import PlateRead
from alprd.recognition.rank import rank_score
from alprd.recognition.recognizer import Recognizer
from alprd.synth.plates import SIGN_COLOURS, SIGN_WORDS, font_paths, render_sign
from alprd.synth.video import render_still
from alprd_train import EVAL_SETS
from alprd_train.detector_report import BY_EYE, unlabelled_plates

# Every layout the presets know, of any region (the generic `us` bounds only length and alphabet): the
# candidate bonus for a text that reads like a plate.
_LAYOUTS = [re.compile(rx) for _, rx in expand_presets(tuple(p for p in PRESETS if p not in GENERIC))]
SIGN_FRAMES = 40

SETS = {"openlpr dev photos": None, "European dev photos": EVAL_SETS / "europe_dev_photos.csv",
        "Romanian dev frames": EVAL_SETS / "romania_dev_plates.csv"}


def collect(data: Path, teacher: Path, cache: Path) -> dict[str, list[dict]]:
    """Per scene set, per scene: its labels, the plates set aside, and every published read's features."""
    dev = detection_splits(data)["dev"]
    keys = [str(s.image.resolve()) for s in dev]
    images = {k: cv2.imread(str(s.image), cv2.IMREAD_COLOR) for k, s in zip(keys, dev)}
    labels = [[(b.x1, b.y1, b.x2, b.y2) for b in s.boxes] for s in dev]
    aside = unlabelled_plates([images[k] for k in keys], labels, teacher, cache.with_name("dev_teacher_boxes.json"),
                              [str(s.image) for s in dev])
    by_eye = _by_eye_plates(data)
    aside_of = {k: [tuple(g[:4]) for g in a] + by_eye.get(k, []) for k, a in zip(keys, aside)}
    rec = Recognizer.from_config(ModelsConfig())
    verifier = rec.detector.verifier
    out: dict[str, list[dict]] = {}
    for name, csv_path in SETS.items():
        scenes: list[SceneSample] = ([s for s in dev if "openlpr" in str(s.image)] if csv_path is None
                                     else read_detection_csv(csv_path))
        rows = []
        for s in scenes:
            k = str(s.image.resolve())
            img = images[k]
            _, reads = rec.analyse(img)
            probs = verifier.plate_probability(img, [r.box for r in reads]) if reads else []
            rows.append({"image": k, "labels": [[b.x1, b.y1, b.x2, b.y2, b.text] for b in s.boxes],
                         "aside": [list(a) for a in aside_of[k]], "shape": list(img.shape[:2]),
                         "reads": [_features(r, p) for r, p in zip(reads, probs)]})
        out[name] = rows
    out["synthetic frames with a sign"] = _sign_frames(rec)
    cache.write_text(json.dumps(out))
    return out


def _sign_frames(rec: Recognizer) -> list[dict]:
    """Road frames with one car and a shop sign above the road, of several words, sizes and colours."""
    rows = []
    fonts = font_paths()
    for i in range(SIGN_FRAMES):
        rng = np.random.default_rng(100 + i)
        frame, text, box = render_still(rng, 1280, 720, ("eu", "us", "br", "mercosur")[i % 4])
        sh = int(rng.integers(36, 80))
        sw = int(sh * rng.uniform(2.5, 4.5))
        colours = SIGN_COLOURS[i % 4 if i % 3 else (i // 3) % 4]
        x, y = int(rng.integers(20, 1280 - sw - 20)), int(rng.integers(20, 250))
        frame[y:y + sh, x:x + sw] = render_sign(SIGN_WORDS[i % len(SIGN_WORDS)], sw, sh, colours, fonts[i % len(fonts)])
        _, reads = rec.analyse(frame)
        probs = rec.detector.verifier.plate_probability(frame, [r.box for r in reads]) if reads else []
        rows.append({"image": f"sign frame {i}", "labels": [[*box, text]], "aside": [], "shape": [720, 1280],
                     "reads": [_features(r, p) for r, p in zip(reads, probs)]})
    return rows


def _by_eye_plates(data: Path) -> dict[str, list[tuple[float, ...]]]:
    out: dict[str, list[tuple[float, ...]]] = {}
    with BY_EYE.open(newline="") as f:
        for row in csv.DictReader(f):
            if row["verdict"] == "plate":
                out.setdefault(str((data / row["image"]).resolve()), []).append(
                    tuple(float(row[c]) for c in ("x1", "y1", "x2", "y2")))
    return out


def _features(r: PlateRead, verifier_p: float) -> dict:
    return {"text": r.text, "confidence": r.confidence, "char_confidences": list(r.char_confidences),
            "box": list(r.box), "detection_confidence": r.detection_confidence, "verifier": verifier_p,
            "layout_fit": any(rx.fullmatch(r.text) for rx in _LAYOUTS)}


def _kind(read: dict, scene: dict) -> str:
    """plate (a labelled box), aside (a plate the labels lack) or stray."""
    if any(iou(read["box"], lb[:4]) > IOU_MIN for lb in scene["labels"]):
        return "plate"
    if any(iou(read["box"], a[:4]) > IOU_MIN for a in scene["aside"]):
        return "aside"
    return "stray"


def _right(read: dict, scene: dict) -> bool:
    return any(lb[4] and read["text"] == lb[4] and iou(read["box"], lb[:4]) > IOU_MIN for lb in scene["labels"])


def judge(rows: list[dict], key: Callable[[dict], float]) -> dict[str, int]:
    """The scene counts of one order (reads sorted by `key`, highest first)."""
    c = {"scenes": 0, "with_text": 0, "with_a_read": 0, "top_on_plate": 0, "top_aside": 0, "top_stray": 0,
         "top_right": 0, "any_right": 0, "stray_above_plate": 0}
    for s in rows:
        if not s["labels"]:
            continue
        c["scenes"] += 1
        texted = any(lb[4] for lb in s["labels"])
        c["with_text"] += texted
        reads = sorted(s["reads"], key=lambda r: -key(r))
        if not reads:
            continue
        c["with_a_read"] += 1
        kinds = [_kind(r, s) for r in reads]
        c["top_" + {"plate": "on_plate", "aside": "aside", "stray": "stray"}[kinds[0]]] += 1
        if "plate" in kinds and "stray" in kinds[:kinds.index("plate")]:
            c["stray_above_plate"] += 1
        if texted:
            c["top_right"] += _right(reads[0], s)
            c["any_right"] += any(_right(r, s) for r in reads)
    return c


def _read(r: dict) -> PlateRead:
    return PlateRead(r["text"], r["confidence"], tuple(r["char_confidences"]), tuple(r["box"]),
                     r["detection_confidence"])


def _mean(r: dict) -> float:
    return sum(r["char_confidences"]) / len(r["char_confidences"])


# The orders compared: before, the shipped one (alprd.recognition.rank), and the candidates left out.
ORDERS: dict[str, Callable[[dict], float]] = {
    "read confidence (before)": lambda r: r["confidence"],
    "mean char confidence": _mean,
    "detection score": lambda r: r["detection_confidence"],
    "read x detection (shipped)": lambda r: rank_score(_read(r)),
    "mean char x detection": lambda r: _mean(r) * r["detection_confidence"],
    "read x detection x verifier": lambda r: r["confidence"] * r["detection_confidence"] * r["verifier"],
    "read x detection, half off layout": lambda r: r["confidence"] * r["detection_confidence"] * (
        1.0 if r["layout_fit"] else 0.5),
}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m alprd_train.rank_report")
    ap.add_argument("--data", type=Path, default=Path("../shared/data"))
    ap.add_argument("--teacher", type=Path, required=True, help="teacher detector ONNX (finds the unlabelled plates)")
    ap.add_argument("--cache", type=Path, default=Path("runs/rank_reads.json"),
                    help="the published reads' features, kept here (delete it to run the models again)")
    ap.add_argument("--json", type=Path, help="write the figures here")
    args = ap.parse_args(argv)
    args.cache.parent.mkdir(parents=True, exist_ok=True)
    sets = json.loads(args.cache.read_text()) if args.cache.exists() else collect(args.data, args.teacher, args.cache)
    report = {name: {order: judge(rows, key) for order, key in ORDERS.items()} for name, rows in sets.items()}
    for name, by_order in report.items():
        print(name)
        for order, c in by_order.items():
            right = f"  top read right {c['top_right']}/{c['with_text']} (some read right {c['any_right']})" \
                if c["with_text"] else ""
            print(f"  {order:34s} scenes {c['scenes']}, with a read {c['with_a_read']}: top on a labelled plate "
                  f"{c['top_on_plate']}, on an unlabelled plate {c['top_aside']}, stray {c['top_stray']}; "
                  f"a stray above a labelled plate's read {c['stray_above_plate']}{right}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
