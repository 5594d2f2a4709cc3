"""`alprd eval`: detection recall/precision and exact-match reading on labelled data.

Scenes (OpenALPR benchmark folder, or a detection CSV) go through exactly the daemon's path:
detector, crop, OCR. Crop sets (an OCR CSV) measure the reader alone on the given crops. With
`--formats`, every read then goes through a camera's plate formats as the daemon's pipeline takes it
(fitted to their layouts, fixed, or rejected when none fits). Figures are given for the whole set and
for each source (datasets.source_of) in it."""

from __future__ import annotations

import csv
import dataclasses
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import cv2
import numpy as np

from alprd.config import FormatsConfig, ModelsConfig
from alprd.datasets import (
    ROMANIA_DEV_VIDEOS,
    BoxLabel,
    CropSample,
    SceneSample,
    check_split,
    in_split,
    is_held_out,
    is_source_split,
    read_detection_csv,
    read_ocr_csv,
    read_openalpr_benchmark,
    romania_video,
    source_of,
)
from alprd.errors import UserError
from alprd.formats.formats import FormatChecker
from alprd.geometry import iou
from alprd.recognition.base import ALPHABET, MAX_PLATE_CHARS, PlateRead, PlateText, is_plate_text
from alprd.recognition.recognizer import Recognizer, Timings

IOU_MIN = 0.3


def _csv_kind(path: Path) -> str:
    with open(path, newline="") as f:
        header = next(csv.reader(f), [])
    if {"x1", "y1", "x2", "y2"} <= set(header):
        return "detection"
    if "text" in header and "image" in header:
        return "ocr"
    raise UserError(f"{path}: unknown CSV layout (header {','.join(header)}); expected "
                    "image,x1,y1,x2,y2,text or image,text")


def scene_in_dev(image: Path, csv_path: Path) -> bool:
    """The project's held-out scenes: the two Romanian dev videos, openlpr's val photos (and the eval
    sets made of them)."""
    if "romania" in str(image) or "romania" in str(csv_path):
        return romania_video(image) in ROMANIA_DEV_VIDEOS
    return csv_path.name in ("val.csv", "valid.csv") or "val" in image.parent.parts[-1:]


def _split_scenes(scenes: list[SceneSample], split: str, path: Path) -> list[SceneSample]:
    if split == "all":
        return scenes
    if is_source_split(split):
        return [s for s in scenes if in_split(source_of(s.image), split)]
    if "romania" in str(path):
        keep = [s for s in scenes if (romania_video(s.image) in ROMANIA_DEV_VIDEOS) == (split == "dev")]
    elif path.name in ("val.csv", "valid.csv"):
        keep = scenes if split == "dev" else []
    else:
        keep = scenes if split == "train" else []
    return keep


Read = TypeVar("Read", PlateText, PlateRead)


def through_formats(texts: list[Read], formats: FormatChecker | None) -> tuple[list[Read | None], int]:
    """Each read as a camera's formats pass it (fitted, fixed), None where they reject it; and how
    many they rejected."""
    if formats is None:
        return list(texts), 0
    out: list[Read | None] = []
    for t in texts:
        fitted = formats.fitted(t)
        r = formats.check(fitted.text, fitted.char_confidences)
        out.append(None if r is None else dataclasses.replace(fitted, text=r.text))
    return out, sum(t is None for t in out)


# One labelled sample's outcome: its group (a source, or whether it is in the dev split), whether the
# detector found it (None for a crop), and whether it was read right (None: no text to read).
Outcome = tuple[object, bool | None, bool | None]


def _figures(rows: list[Outcome]) -> dict[str, float | int | None]:
    """Recall (scenes) and exact match of some samples."""
    found = [f for _, f, _ in rows if f is not None]
    read = [r for _, _, r in rows if r is not None]
    out: dict[str, float | int | None] = {}
    if found or not read:
        out |= {"boxes": len(found), "recall": round(sum(found) / len(found), 4) if found else None}
    unit = "labelled_texts" if found else "crops"
    return out | {unit: len(read), "exact_match": round(sum(read) / len(read), 4) if read else None}


def _by_source(rows: list[Outcome]) -> dict[str, dict[str, float | int | None]]:
    groups: dict[str, list[Outcome]] = {}
    for row in rows:
        groups.setdefault(str(row[0]), []).append(row)
    return {src: _figures(g) for src, g in sorted(groups.items())}


def _dev_part(rows: list[Outcome]) -> dict[str, float | int | None]:
    """rows grouped by being in the project's dev split: the figures on the part of a source split that
    the shipped models were not trained on (they were trained on every source's non-dev part)."""
    return _figures([r for r in rows if r[0]]) | {"samples_trained_on": sum(not r[0] for r in rows)}


# The frame a far plate is simulated in: a 1080p camera's width. The dev photos are 359-960 px wide
# (median 640); shrunk at their own size, a plate "60 px wide at 1080p scale" kept only 15-30 px and
# was resampled twice (or blown up again for photos under the detector's 640 px input), a far
# plate of a 640 px camera rather than of the 1920x1080 frame the far-plate target speaks of.
FAR_FRAME_WIDTH = 1920
# The reports' --far-frame choices: that frame, or each photo's own size (the simulation before session 22).
FAR_FRAMES: dict[str, int | None] = {"1080p": FAR_FRAME_WIDTH, "photo": None}


def far_frame_words(frame_width: int | None) -> str:
    """How a report names the frames its far plates are shrunk into."""
    return f"{frame_width} px wide frames" if frame_width else "frames of each photo's own size"


@dataclasses.dataclass(frozen=True)
class _FarLayout:
    """Where shrink_scene puts a photo: the frame's size, the photo's scale and size in it, its offset."""
    frame_w: int
    frame_h: int
    scale: float  # photo pixels -> frame pixels
    w: int
    h: int
    x: int
    y: int


def _far_layout(w: int, h: int, boxes: list[BoxLabel], plate_px: float, frame_width: int | None) -> _FarLayout:
    fw = frame_width or w
    fh = max(1, round(h * fw / w))
    widest = max((b.x2 - b.x1) * 1920 / w for b in boxes)
    f = min(1.0, plate_px / max(widest, 1e-6)) * fw / w
    nw, nh = max(1, round(w * f)), max(1, round(h * f))
    return _FarLayout(fw, fh, f, nw, nh, (fw - nw) // 2, (fh - nh) // 2)


def _moved(boxes: list[BoxLabel], w: int, h: int, at: _FarLayout) -> list[BoxLabel]:
    return [BoxLabel(b.x1 * at.w / w + at.x, b.y1 * at.h / h + at.y, b.x2 * at.w / w + at.x, b.y2 * at.h / h + at.y,
                     b.text) for b in boxes]


def shrunk_boxes(shape: tuple[int, ...], boxes: list[BoxLabel], plate_px: float,
                 frame_width: int | None = FAR_FRAME_WIDTH) -> list[BoxLabel]:
    """The boxes where shrink_scene puts them in a photo of this shape, without making the frame."""
    h, w = shape[:2]
    return _moved(boxes, w, h, _far_layout(w, h, boxes, plate_px, frame_width))


def shrink_scene(img: np.ndarray, boxes: list[BoxLabel], plate_px: float,
                 frame_width: int | None = FAR_FRAME_WIDTH) -> tuple[np.ndarray, list[BoxLabel]]:
    """The same scene seen from further away: shrunk so its widest plate is `plate_px` wide at
    1920-px scale, pasted in the middle of a blurred copy of itself, so the detector sees the plate
    at that fraction of the frame. The frame is `frame_width` wide (the photo's aspect kept), so
    the plate has `plate_px` pixels as in a real frame of that width; None keeps the photo's own
    size, where a photo narrower than 1920 px leaves the plate fewer pixels than that (the harder
    simulation the project measured before session 22). Real plates, simulated distance: the dev
    sets hold almost no plate under 60 px, and far plates are what a roadside unit misses."""
    h, w = img.shape[:2]
    at = _far_layout(w, h, boxes, plate_px, frame_width)
    small = cv2.resize(img, (at.w, at.h), interpolation=cv2.INTER_AREA if at.scale < 1 else cv2.INTER_LINEAR)
    canvas = cv2.GaussianBlur(img, (0, 0), 12)
    if (at.frame_w, at.frame_h) != (w, h):
        canvas = cv2.resize(canvas, (at.frame_w, at.frame_h), interpolation=cv2.INTER_LINEAR)
    canvas[at.y:at.y + at.h, at.x:at.x + at.w] = small
    return canvas, _moved(boxes, w, h, at)


def eval_scenes(rec: Recognizer, scenes: list[SceneSample], shrink_to: float | None = None,
                formats: FormatChecker | None = None, dev_of: Callable[[Path], bool] | None = None) -> dict:
    """`formats`: the reads go through a camera's formats (the rejected ones are not published);
    `dev_of`: also give the figure on the scenes it calls dev (see _dev_part)."""
    boxes = found = small = small_found = fps = texts = exact = dets_total = stray_reads = with_read = 0
    misreads = 0
    rejected = 0
    by_source: list[Outcome] = []
    dev_rows: list[Outcome] = []
    errors: list[dict] = []
    tm = Timings()
    looks0 = getattr(rec.detector, "rechecks", 0)
    vetoed0 = getattr(rec.detector, "vetoed", 0)
    t0 = time.perf_counter()
    for s in scenes:
        img = cv2.imread(str(s.image), cv2.IMREAD_COLOR)
        if img is None:
            raise UserError(f"{s.image}: not a readable image")
        labels = s.boxes
        if shrink_to and labels:
            img, labels = shrink_scene(img, labels, shrink_to)
        dets, reads = rec.analyse(img, tm)  # the daemon's own path
        passed, dropped = through_formats(reads, formats)
        reads = [r for r in passed if r is not None]
        rejected += dropped
        dets_total += len(dets)
        matched: set[int] = set()
        scale_1080 = 1920 / img.shape[1]
        for b in labels:
            gt = (b.x1, b.y1, b.x2, b.y2)
            hits = [i for i, d in enumerate(dets) if iou(gt, d.box) > IOU_MIN]
            boxes += 1
            found += bool(hits)
            right: bool | None = None
            matched.update(hits)
            with_read += any(iou(gt, r.box) > IOU_MIN for r in reads)
            if (b.x2 - b.x1) * scale_1080 < 60:
                small += 1
                small_found += bool(hits)
            if b.text:
                texts += 1
                on_plate = [r for r in reads if iou(gt, r.box) > IOU_MIN]
                right = any(r.text == b.text for r in on_plate)
                exact += right
                misreads += bool(on_plate) and not right
                if not right:  # what was read there, if anything: a miss, a misread or a read under the floor
                    errors.append({"image": str(s.image), "truth": b.text, "found": bool(hits),
                                   "read": on_plate[0].text if on_plate else None})
            by_source.append((source_of(s.image), bool(hits), right))
            if dev_of is not None:
                dev_rows.append((dev_of(s.image), bool(hits), right))
        fps += len(dets) - len(matched)
        # Reads the unit would publish where no labelled plate is: a badge or sign read as a plate,
        # or a plate the labels leave out (the dev scenes leave some out, so this is an upper bound).
        stray_reads += sum(all(iou((b.x1, b.y1, b.x2, b.y2), r.box) <= IOU_MIN for b in labels) for r in reads)
    n = max(1, len(scenes))
    return {
        "images": len(scenes),
        "boxes": boxes,
        "recall": found / max(1, boxes),
        "precision": (dets_total - fps) / max(1, dets_total),
        "false_positives_per_image": fps / n,
        "small_boxes": small,
        "recall_small": small_found / max(1, small) if small else None,
        "labelled_texts": texts,
        "exact_match": exact / texts if texts else None,
        # Labelled plates the unit published a wrong text for (the published false reads, with stray_reads).
        "misreads": misreads,
        # The unit's own verdict on what is a plate: the detector's boxes that the reader reads
        # above its floor. Against stray_reads_per_image, the recall and false positives of what is
        # published, not of every box the detector proposes.
        "read_recall": with_read / max(1, boxes),
        "stray_reads_per_image": stray_reads / n,
        "ms_per_image": (time.perf_counter() - t0) * 1000 / n,
        "detect_ms_per_image": tm.detect_ms / n,
        # The detector's second looks at unsure boxes (models.detector_recheck_above), part of detect_ms.
        "detector_second_looks_per_image": (getattr(rec.detector, "rechecks", 0) - looks0) / n,
        # Unsure boxes the plate verifier took for no plate (models.detector_verify_below).
        "detector_boxes_vetoed_per_image": (getattr(rec.detector, "vetoed", 0) - vetoed0) / n,
        "ocr_ms_per_plate": tm.ocr_ms / max(1, dets_total),
        **({"rejected_by_format": rejected} if formats is not None else {}),
        "by_source": _by_source(by_source),
        **({"dev_part": _dev_part(dev_rows)} if dev_of is not None else {}),
        "errors": errors[:200],
    }


def widen(img: np.ndarray, margin: float) -> np.ndarray:
    """A crop framed as a loose detector box would frame it: `margin` of its width added on the left
    and right, twice that share of its height above and below (edge pixels repeated)."""
    h, w = img.shape[:2]
    px, py = round(w * margin), round(h * 2 * margin)
    return cv2.copyMakeBorder(img, py, py, px, px, cv2.BORDER_REPLICATE)


def eval_crops(rec: Recognizer, crops: list[CropSample], margin: float = 0.0, formats: FormatChecker | None = None,
               dev_of: Callable[[CropSample], bool] | None = None) -> dict:
    """As eval_scenes, for the reader alone on crops: a crop whose read the formats reject is a miss."""
    imgs = []
    for c in crops:
        img = cv2.imread(str(c.image), cv2.IMREAD_COLOR)
        if img is None:
            raise UserError(f"{c.image}: not a readable image")
        imgs.append(widen(img, margin) if margin else img)
    t0 = time.perf_counter()
    out = []
    for i in range(0, len(imgs), 32):
        out.extend(rec.ocr.read(imgs[i:i + 32]))
    ms = (time.perf_counter() - t0) * 1000 / max(1, len(imgs))
    passed, rejected = through_formats(out, formats)
    texts = [o.text if o is not None else "" for o in passed]
    right = [t == c.text for t, c in zip(texts, crops)]
    chars_ok = sum(sum(a == b for a, b in zip(t, c.text)) for t, c in zip(texts, crops))
    chars = sum(len(c.text) for c in crops)
    errors = [{"image": str(c.image), "truth": c.text, "read": o.text if o is not None else None}
              for o, c, ok in zip(passed, crops, right) if not ok]
    return {"crops": len(crops), "exact_match": sum(right) / max(1, len(crops)),
            "char_accuracy": chars_ok / max(1, chars), "ms_per_crop": ms,
            **({"rejected_by_format": rejected} if formats is not None else {}),
            "by_source": _by_source([(source_of(c.image), None, ok) for c, ok in zip(crops, right)]),
            **({"dev_part": _dev_part([(dev_of(c), None, ok) for c, ok in zip(crops, right)])}
               if dev_of is not None else {}),
            "errors": errors[:200]}


RELABEL_HEADER = ["image", "dataset_text", "text"]


def relabel_crops(crops: list[CropSample], dataset: Path, relabel: Path) -> tuple[list[CropSample], set[Path]]:
    """The crop set with some labels replaced by texts read by eye: a label taken from a file name can
    name another plate than the crop shows (DXW7358 for a plate reading DXV7358). Each row names the
    crop as the set's `image` column does and the label it corrects, so a correction that no longer
    matches the set is an error, not silently applied. The held-out split stays decided by the set's
    own label, so the same crops are scored either way. Returns the crops and those relabelled."""
    by_image = {c.image.relative_to(dataset.parent).as_posix(): i for i, c in enumerate(crops)}
    out = list(crops)
    try:
        with open(relabel, newline="") as f:
            rows = list(csv.reader(f))
    except OSError as e:
        raise UserError(f"--relabel {relabel}: {e.strerror}") from None
    if not rows or rows[0] != RELABEL_HEADER:
        raise UserError(f"--relabel {relabel}: the header must be {','.join(RELABEL_HEADER)}")
    for n, row in enumerate(rows[1:], start=2):
        if len(row) != 3:
            raise UserError(f"--relabel {relabel}: line {n} has {len(row)} fields, not 3")
        image, was, text = row[0], row[1].strip().upper(), row[2].strip().upper()
        if image not in by_image:
            raise UserError(f"--relabel {relabel}: line {n}: {image} is not a crop of {dataset}")
        if not is_plate_text(text):
            raise UserError(f"--relabel {relabel}: line {n}: text {text!r} must be 1-{MAX_PLATE_CHARS} of {ALPHABET}")
        c = out[by_image[image]]
        if c.text != was:
            raise UserError(f"--relabel {relabel}: line {n}: {dataset} labels {image} {c.text!r}, not {was!r}")
        out[by_image[image]] = dataclasses.replace(c, text=text)
    return out, {c.image for c, given in zip(out, crops) if c.text != given.text}


def run_eval(dataset: Path, models: ModelsConfig, json_out: str | None, split: str = "all",
             shrink_to: float | None = None, margin: float = 0.0, relabel: Path | None = None,
             formats: FormatsConfig | None = None) -> int:
    """`formats`: read as a camera with those formats would publish (None: the reader's own reads)."""
    checker = None if formats is None else FormatChecker(formats.presets, formats.custom, formats.fix_confusables,
                                                         formats.max_fixes, "--formats")
    if dataset.is_dir():
        kind = "benchmark"
    elif dataset.suffix.lower() == ".csv" and dataset.is_file():
        kind = _csv_kind(dataset)
    else:
        raise UserError(f"{dataset}: not a folder or a .csv file")
    if margin and kind != "ocr":
        raise UserError(f"--margin {margin}: only for a crop CSV (image,text); {dataset} holds scenes, whose "
                        "plates the detector frames itself")
    if relabel and kind != "ocr":
        raise UserError(f"--relabel {relabel}: only for a crop CSV (image,text); {dataset} holds scenes")
    if kind == "benchmark" and split != "all":
        raise UserError(f"--split {split}: only for ../shared/data CSVs and the eval sets made of them; "
                        f"{dataset} is an OpenALPR benchmark folder")
    rec = Recognizer.from_config(models)
    source_split = is_source_split(split)
    if kind == "benchmark":
        scenes = read_openalpr_benchmark(dataset)
        if not scenes:
            raise UserError(f"{dataset}: no IMAGE.txt label files found (OpenALPR benchmark layout)")
        result = {"dataset": str(dataset), "kind": "scenes", **eval_scenes(rec, scenes, shrink_to)}
    elif kind == "detection":
        every = read_detection_csv(dataset)
        check_split(split, {source_of(s.image) for s in every})
        scenes = _split_scenes(every, split, dataset)
        dev_scenes = (lambda image: scene_in_dev(image, dataset)) if source_split else None
        result = {"dataset": str(dataset), "split": split, "kind": "scenes",
                  **eval_scenes(rec, scenes, shrink_to, checker, dev_scenes)}
        if shrink_to:
            result["shrunk_to_px"] = shrink_to
    else:
        crops = read_ocr_csv(dataset)
        corrected: set[Path] = set()
        if relabel:
            crops, corrected = relabel_crops(crops, dataset, relabel)
        crops = [c for c in crops if c.text]
        check_split(split, {source_of(c.image) for c in crops})
        if source_split:
            crops = [c for c in crops if in_split(source_of(c.image), split)]
        elif split != "all":
            crops = [c for c in crops if is_held_out(c.group) == (split == "dev")]
        dev_crops = (lambda c: is_held_out(c.group)) if source_split else None
        result = {"dataset": str(dataset), "split": split, "kind": "crops",
                  **eval_crops(rec, crops, margin, checker, dev_crops)}
        if margin:
            result["margin"] = margin
        if relabel:
            result["relabelled"] = sum(c.image in corrected for c in crops)
    if formats is not None:
        result["formats"] = list(formats.presets) + list(formats.custom)
    result["models"] = rec.model_versions
    _print_table(result)
    if json_out:
        Path(json_out).write_text(json.dumps(result, indent=2))
    return 0


def _print_table(result: dict) -> None:
    rows = [(k, v) for k, v in result.items() if k not in ("errors", "models", "by_source", "dev_part")]
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        if isinstance(v, float):
            v = f"{v:.4f}" if v <= 1 else f"{v:.2f}"
        print(f"{k.ljust(width)}  {v}")
    if "dev_part" in result:
        dev = dict(result["dev_part"])
        seen = dev.pop("samples_trained_on")
        print(f"{'dev_part'.ljust(width)}  {_figure(dev)} (the shipped models were trained on the other {seen})")
    for src, fig in result.get("by_source", {}).items():
        print(f"  {src}  {_figure(fig)}")


def _figure(fig: dict) -> str:
    return "  ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in fig.items())
