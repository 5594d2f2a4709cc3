"""Dev-set figures for a detector: recall and false positives per image at several thresholds,
counted against the labels as they are and with the plates the labels lack set aside.

The dev scenes box only some of their plates (far and blurred Romanian plates, second cars in the
openlpr photos), so a detector that finds those is charged with false positives. Here a detection
that matches a confident teacher box nobody labelled counts as neither hit nor false positive, the
usual "ignore region" of detection benchmarks. Recall is always counted on the labels alone.

The "audited" columns also take in what was checked by eye (`eval_sets/dev_scenes_by_eye.csv`):
plates the labels lack and the teacher missed, set aside the same way, and labels on no plate,
which are dropped. Only the detector's remaining false positives and misses at the default threshold
were looked at, so the audit can only lower the false positives and raise recall; the file says
what each row is, and a row that no longer fits the labels is an error.

    python -m alprd_train.detector_report models runs/x/candidate --teacher ../shared/teachers/yolo-...onnx

A folder whose manifest lists a plate verifier is run with it, as the unit runs it
(`--verify-below 0` measures the detector alone).
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import cv2
import numpy as np

from alprd.config import INPUT_WIDTH_RULE, ModelsConfig, is_input_width
from alprd.datasets import SceneSample, detection_splits
from alprd.errors import UserError
from alprd.evaluate import FAR_FRAMES, IOU_MIN, far_frame_words, shrink_scene, shrunk_boxes
from alprd.recognition.manifest import load_entry, load_optional_entry
from alprd.recognition.onnx_models import OnnxPlateDetector, OnnxPlateVerifier
from alprd.recognition.preprocess import iou
from alprd_train import EVAL_SETS
from alprd_train.scene_mining import TeacherDetector, mine_scene

THRESHOLDS = (0.3, 0.4, 0.5, 0.6)
BY_EYE = EVAL_SETS / "dev_scenes_by_eye.csv"
VERDICTS = ("plate", "no plate")
SQUARE_ASPECT = 1.6  # a box narrower than this many heights: a two-line or square plate


def is_square(box: tuple[float, ...]) -> bool:
    return box[2] - box[0] < SQUARE_ASPECT * (box[3] - box[1])


def audit_by_eye(path: Path, data: Path, dev: list[SceneSample]) -> tuple[list[list[tuple]], list[list[tuple]]]:
    """Per dev scene, the plates the labels lack and the labels on no plate, as checked by eye."""
    index = {s.image.relative_to(data).as_posix(): i for i, s in enumerate(dev)}
    plates: list[list[tuple]] = [[] for _ in dev]
    not_plates: list[list[tuple]] = [[] for _ in dev]
    with path.open(newline="") as f:
        for line, row in enumerate(csv.DictReader(f), start=2):
            where = f"{path}:{line}"
            i = index.get(row.get("image") or "")
            if i is None:
                raise UserError(f"{where}: {row.get('image')!r} is not a dev scene of {data}")
            try:
                box = tuple(float(row[k]) for k in ("x1", "y1", "x2", "y2"))
            except (TypeError, ValueError):
                raise UserError(f"{where}: x1,y1,x2,y2 must be numbers") from None
            labels = [(b.x1, b.y1, b.x2, b.y2) for b in dev[i].boxes]
            if row.get("verdict") == "plate":
                if any(iou(box, lb) > IOU_MIN for lb in labels):
                    raise UserError(f"{where}: a plate the labels lack, but a label now covers it")
                plates[i].append(box)
            elif row.get("verdict") == "no plate":
                if box not in labels:
                    raise UserError(f"{where}: a label on no plate, but the scene has no such label")
                not_plates[i].append(box)
            else:
                raise UserError(f"{where}: verdict {row.get('verdict')!r}; valid: {', '.join(VERDICTS)}")
    return plates, not_plates


def unlabelled_plates(images: list[np.ndarray], labels: list[list[tuple]], teacher: Path, cache: Path,
                      keys: list[str], keep: float = 0.5) -> list[list[tuple]]:
    stored = json.loads(cache.read_text()) if cache.exists() else {}
    if any(k not in stored for k in keys):
        t = TeacherDetector(teacher)
        for img, k in zip(images, keys):
            stored.setdefault(k, t.detect(img))
        cache.write_text(json.dumps(stored))
    # The same rule that adds such plates to the training scenes.
    return [mine_scene(lbs, [tuple(b) for b in stored[k]], [], keep).extra for k, lbs in zip(keys, labels)]


def score(det: OnnxPlateDetector, images, labels, ignore, eye_plates=None, eye_not_plates=None,
          thresholds: tuple[float, ...] = THRESHOLDS) -> dict[float, dict[str, float]]:
    eye_plates = eye_plates or [[] for _ in labels]
    eye_not_plates = eye_not_plates or [[] for _ in labels]
    found = {t: 0 for t in thresholds}
    found_eye = {t: 0 for t in thresholds}
    fp = {t: 0 for t in thresholds}
    fp_audited = {t: 0 for t in thresholds}
    fp_eye = {t: 0 for t in thresholds}
    boxes = sum(map(len, labels))
    boxes_eye = boxes - sum(map(len, eye_not_plates))
    # Two-line and square plates, which the detector finds least often at full size.
    square = {t: 0 for t in thresholds}
    squares = sum(is_square(lb) for lbs in labels for lb in lbs)
    # Each threshold is run as the unit would run it: the second look at unsure boxes depends on it.
    # Images outside, thresholds inside: `images` is read once, so it can be made as it is read.
    for img, lbs, ign, eye, wrong in zip(images, labels, ignore, eye_plates, eye_not_plates):
        for t in thresholds:
            det.threshold = t
            d = [x.box for x in det.detect(img)]
            hit = [any(iou(lb, x) > IOU_MIN for x in d) for lb in lbs]
            found[t] += sum(hit)
            found_eye[t] += sum(h for h, lb in zip(hit, lbs) if lb not in wrong)
            square[t] += sum(h for h, lb in zip(hit, lbs) if is_square(lb))
            stray = [x for x in d if not any(iou(lb, x) > IOU_MIN for lb in lbs)]
            fp[t] += len(stray)
            stray = [x for x in stray if not any(iou(g[:4], x) > IOU_MIN for g in ign)]
            fp_audited[t] += len(stray)
            # Audited: a box on a label that is no plate is a false positive once that label is dropped.
            real = [lb for lb in lbs if lb not in wrong]
            aside = [g[:4] for g in ign] + eye
            fp_eye[t] += sum(not any(iou(lb, x) > IOU_MIN for lb in real + aside) for x in d)
    n = max(1, len(labels))
    return {t: {"recall": found[t] / max(1, boxes), "fp_per_image": fp[t] / n,
                "fp_per_image_unlabelled_set_aside": fp_audited[t] / n,
                "recall_audited": found_eye[t] / max(1, boxes_eye), "fp_per_image_audited": fp_eye[t] / n,
                "square_plates": squares, "recall_square": square[t] / max(1, squares)}
            for t in thresholds}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m alprd_train.detector_report")
    ap.add_argument("models", nargs="+", type=Path, help="models folders (manifest.json + plate_detector.onnx)")
    ap.add_argument("--data", type=Path, default=Path("../shared/data"))
    ap.add_argument("--teacher", type=Path, required=True, help="teacher detector ONNX (finds the unlabelled plates)")
    ap.add_argument("--cache", type=Path, default=Path("runs/dev_teacher_boxes.json"))
    ap.add_argument("--far", type=float, nargs="*", default=[60, 50, 40], help="also shrink plates to these px")
    ap.add_argument("--far-frame", choices=tuple(FAR_FRAMES), default="1080p",
                    help="far plates in a 1920 px wide frame, as a 1080p camera sees them, or in a frame of the "
                         "photo's own size (359-960 px wide: fewer pixels on the plate; the figures before session 22)")
    ap.add_argument("--json", type=Path, help="write the figures here")
    ap.add_argument("--recheck-above", type=float, default=ModelsConfig.detector_recheck_above,
                    help="as models.detector_recheck_above: the second look at unsure boxes (0: off)")
    ap.add_argument("--verify-below", type=float, default=ModelsConfig.detector_verify_below,
                    help="as models.detector_verify_below: boxes scored under this are shown to the folder's "
                         "plate verifier, if it has one (0: off)")
    ap.add_argument("--thresholds", type=float, nargs="+", default=list(THRESHOLDS),
                    help="detection thresholds to score at, as models.detection_threshold")
    ap.add_argument("--by-eye", type=Path, default=BY_EYE,
                    help="plates the dev labels lack and labels on no plate, checked by eye (the audited columns)")
    ap.add_argument("--input-width", type=int, default=640,
                    help="the detector's input width, as models.detector_input_width (a multiple of 32)")
    args = ap.parse_args(argv)
    if not all(0.0 < t < 1.0 for t in args.thresholds):
        ap.error(f"--thresholds {' '.join(map(str, args.thresholds))}: each must be between 0 and 1")
    thresholds = tuple(sorted(args.thresholds))
    if not 0.0 <= args.verify_below <= 1.0:
        ap.error(f"--verify-below {args.verify_below}: must be between 0 and 1 (0: no verifier)")
    if not is_input_width(args.input_width):
        ap.error(f"--input-width {args.input_width}: must be {INPUT_WIDTH_RULE}")
    dev = detection_splits(args.data)["dev"]
    images = [cv2.imread(str(s.image), cv2.IMREAD_COLOR) for s in dev]
    labels = [[(b.x1, b.y1, b.x2, b.y2) for b in s.boxes] for s in dev]
    args.cache.parent.mkdir(parents=True, exist_ok=True)
    ignore = unlabelled_plates(images, labels, args.teacher, args.cache, [str(s.image) for s in dev])
    try:
        eye_plates, eye_not_plates = audit_by_eye(args.by_eye, args.data, dev)
    except (UserError, OSError) as e:
        ap.error(f"--by-eye: {e}")
    frame_width = FAR_FRAMES[args.far_frame]
    with_plates = [(img, s.boxes) for img, s in zip(images, dev) if s.boxes]

    def far_images(px: float):  # made as scored: a set of 1920 px frames would take gigabytes
        return (shrink_scene(img, boxes, px, frame_width)[0] for img, boxes in with_plates)

    far_sets = {px: [[(b.x1, b.y1, b.x2, b.y2) for b in shrunk_boxes(img.shape, boxes, px, frame_width)]
                     for img, boxes in with_plates] for px in args.far}
    report = {"scenes": len(dev), "boxes": sum(map(len, labels)), "unlabelled_set_aside": sum(map(len, ignore)),
              "far_frame": args.far_frame, "models": {}}
    report["by_eye"] = {"plates_the_labels_lack": sum(map(len, eye_plates)),
                        "labels_on_no_plate": sum(map(len, eye_not_plates))}
    print(f"{len(dev)} dev scenes, {report['boxes']} plates; {report['unlabelled_set_aside']} unlabelled "
          f"plates (teacher >= 0.5) set aside; audited by eye ({args.by_eye.name}): "
          f"{report['by_eye']['plates_the_labels_lack']} more plates set aside, "
          f"{report['by_eye']['labels_on_no_plate']} labels on no plate dropped; far plates in "
          f"{far_frame_words(frame_width)}")
    for mdir in args.models:
        verifier_entry = load_optional_entry(mdir, ModelsConfig.verifier, "verifier") if args.verify_below else None
        verifier = OnnxPlateVerifier(verifier_entry) if verifier_entry else None
        det = OnnxPlateDetector(load_entry(mdir, "plate_detector", "detector"), input_width=args.input_width,
                                recheck_above=args.recheck_above, verifier=verifier, verify_below=args.verify_below)
        res = {"as_labelled": score(det, images, labels, ignore, eye_plates, eye_not_plates, thresholds)}
        for px, lbs in far_sets.items():
            res[f"far{px:g}"] = score(det, far_images(px), lbs, [[] for _ in lbs], thresholds=thresholds)
        report["models"][str(mdir)] = {"version": det.version, **{k: {str(t): v for t, v in r.items()}
                                                                  for k, r in res.items()}}
        print(f"\n{mdir} (detector {det.version}, input width {args.input_width}, "
              f"second look above {args.recheck_above:g}, "
              + (f"verifier {verifier.version} under {args.verify_below:g})" if verifier else "no verifier)"))
        squares = res["as_labelled"][thresholds[0]]["square_plates"]
        print(f"thr   recall  FP/img  FP/img(unlabelled aside)  audited: recall  FP/img  square({squares})  "
              + "  ".join(f"far{px:g}" for px in far_sets))
        for t in thresholds:
            a = res["as_labelled"][t]
            far = "  ".join(f"{res[f'far{px:g}'][t]['recall']:5.1%}" for px in far_sets)
            print(f"{t:.2f}  {a['recall']:6.1%}  {a['fp_per_image']:6.2f}  {a['fp_per_image_unlabelled_set_aside']:6.2f}"
                  f"                    {a['recall_audited']:6.1%}  {a['fp_per_image_audited']:6.2f}  "
                  f"{a['recall_square']:6.1%}       {far}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
