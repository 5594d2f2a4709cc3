"""Readers for labelled plate data, and the project's fixed held-out splits.

Two layouts are understood:
- the CSV layout of ../shared/data: detection `image,x1,y1,x2,y2,text`, OCR `image,text[,state]`;
- the OpenALPR benchmark layout: `IMAGE.jpg` next to `IMAGE.txt` holding
  `file<TAB>x<TAB>y<TAB>w<TAB>h<TAB>PLATE`.

Splits are decided by a hash of a grouping key (video name, plate text) so that near-duplicate
frames or the same car never sit on both sides; they do not change between runs or machines.

Sources: every labelled image belongs to one source, the nearest thing the data has to one camera
(source_of): a Romanian dashcam video, a US state, one of the two Brazilian capture series, the openlpr
photos as a whole. The cross-source split holds out whole sources (CROSS_SOURCE), so a model trained
without them is measured on cameras and places it has never seen; the dev split only holds out plates.
"""

from __future__ import annotations

import csv
import hashlib
import re
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from alprd.errors import UserError


@dataclass(frozen=True)
class BoxLabel:
    x1: float
    y1: float
    x2: float
    y2: float
    text: str = ""


@dataclass
class SceneSample:
    image: Path
    boxes: list[BoxLabel] = field(default_factory=list)


@dataclass(frozen=True)
class CropSample:
    image: Path
    text: str
    group: str  # what must not straddle splits


def is_held_out(key: str, fraction: float = 0.2, salt: str = "alprd-split-v1") -> bool:
    h = hashlib.sha256(f"{salt}:{key}".encode()).digest()
    return int.from_bytes(h[:4], "big") / 2**32 < fraction


def read_detection_csv(csv_path: Path) -> list[SceneSample]:
    root = csv_path.parent
    scenes: dict[str, SceneSample] = {}
    with open(csv_path, newline="") as f:
        for row in csv.DictReader(f):
            s = scenes.setdefault(row["image"], SceneSample(root / row["image"]))
            if row.get("x1", "") != "":
                s.boxes.append(BoxLabel(float(row["x1"]), float(row["y1"]), float(row["x2"]),
                                        float(row["y2"]), (row.get("text") or "").strip().upper()))
    return list(scenes.values())


def read_ocr_csv(csv_path: Path) -> list[CropSample]:
    root = csv_path.parent
    out = []
    with open(csv_path, newline="") as f:
        for row in csv.DictReader(f):
            text = (row.get("text") or "").strip().upper()
            out.append(CropSample(root / row["image"], text, text or row["image"]))
    return out


def read_openalpr_benchmark(folder: Path) -> list[SceneSample]:
    out = []
    for txt in sorted(folder.glob("*.txt")):
        img = None
        for ext in (".jpg", ".jpeg", ".png", ".JPG", ".PNG"):
            if txt.with_suffix(ext).exists():
                img = txt.with_suffix(ext)
                break
        if img is None:
            continue
        s = SceneSample(img)
        for line in txt.read_text().splitlines():
            parts = line.strip().split("\t")
            if len(parts) >= 6:
                x, y, w, h = (float(v) for v in parts[1:5])
                s.boxes.append(BoxLabel(x, y, x + w, y + h, parts[5].strip().upper()))
        out.append(s)
    return out


def romania_video(image: Path) -> str:
    return image.name.split(".mp4")[0]


def scene_group(image: Path, data_root: Path) -> str:
    """What a held-out split of training scenes must keep on one side: a Romanian frame's video (its
    neighbours are near duplicates), any other scene's own file, relative to the data folder."""
    rel = image.relative_to(data_root)
    if rel.parts[0] == "romania_dashcam":
        return f"romania_dashcam/{romania_video(image)}"
    return rel.as_posix()


def detection_splits(data_root: Path) -> dict[str, list[SceneSample]]:
    """train/dev scenes from ../shared/data. Romania is split by video; openlpr by its own val."""
    train: list[SceneSample] = []
    dev: list[SceneSample] = []
    ro = data_root / "romania_dashcam"
    if ro.exists():
        by_video: dict[str, list[SceneSample]] = defaultdict(list)
        for name in ("train.csv", "valid.csv"):
            for s in read_detection_csv(ro / name):
                by_video[romania_video(s.image)].append(s)
        for video, scenes in by_video.items():
            # Two whole videos are held out: neighbouring frames of one video are near duplicates.
            (dev if video in ROMANIA_DEV_VIDEOS else train).extend(scenes)
    op = data_root / "openlpr_plate_detection"
    if op.exists():
        train.extend(read_detection_csv(op / "train.csv"))
        dev.extend(read_detection_csv(op / "val.csv"))
    return {"train": train, "dev": dev}


ROMANIA_DEV_VIDEOS = frozenset({"dayride_type1_002", "dayride_type1_003"})


def ocr_splits(data_root: Path) -> dict[str, list[CropSample]]:
    """Labelled crops split by plate text (the same car is photographed several times)."""
    out: dict[str, list[CropSample]] = {"us_train": [], "us_dev": [], "br_train": [], "br_dev": []}
    for key, rel in (("us", "us_plate_crops/ocr.csv"), ("br", "openalpr_train_detector/ocr.csv")):
        p = data_root / rel
        if not p.exists():
            continue
        for s in read_ocr_csv(p):
            out[f"{key}_dev" if is_held_out(s.group) else f"{key}_train"].append(s)
    return out


# --- sources and the cross-source split -----------------------------------------------------------

# The data folders of ../shared/data, as named in SOURCES.md.
DATASETS = ("romania_dashcam", "openlpr_plate_detection", "openalpr_train_detector", "us_plate_crops")
_US_STATE = re.compile(r"([a-z]+)\d")
_BR_SERIES = re.compile(r"_(C[CV])_\d")

# Whole sources held out by `--split cross-source`, one or more of each dataset that has more than one:
# - the Romanian night ride, the only `type3` video (another dashcam set-up, at night; 82 frames);
# - the `_CC_` series of the Brazilian crops (498 crops, 261 plates, of which 86 are also in `_CV_`:
#   the same site seen by two cameras, CC's in colour, CV's grey);
# - US states drawn by a hash of the state's code (about a fifth: each state has its own plate designs).
# openlpr's web photos have no camera or country in their labels: one source, never held out.
CROSS_SOURCE_FIXED = frozenset({"romania_dashcam/nightride_type3_001", "openalpr_train_detector/CC"})
CROSS_SOURCE_SALT = "alprd-source-v1"


def source_of(image: Path) -> str:
    """The source an image of ../shared/data (or an eval set pointing into it) belongs to:
    `romania_dashcam/<video>`, `us_plate_crops/<state>`, `openalpr_train_detector/CC` or `/CV` (the
    text-less crops: `/<folder>`), `openlpr_plate_detection`; an image of no known dataset is its own
    folder's name."""
    parts = image.parts
    for name in DATASETS:
        if name in parts:
            break
    else:
        return image.parent.name or "."
    if name == "romania_dashcam":
        return f"{name}/{romania_video(image)}"
    if name == "us_plate_crops":
        m = _US_STATE.match(image.name)
        return f"{name}/{m.group(1) if m else 'unknown'}"
    if name == "openalpr_train_detector":
        m = _BR_SERIES.match(image.name)
        return f"{name}/{m.group(1) if m else image.parent.name}"
    return name


def is_cross_source_held_out(source: str) -> bool:
    """Whether `--split cross-source` holds this source out (see CROSS_SOURCE_FIXED)."""
    if source in CROSS_SOURCE_FIXED:
        return True
    if source.startswith("us_plate_crops/"):
        return is_held_out(source, salt=CROSS_SOURCE_SALT)
    return False


def in_source(source: str, wanted: str) -> bool:
    """`holdout:WANTED`: a source or a whole dataset (`us_plate_crops` holds every state)."""
    return source == wanted or source.startswith(wanted.rstrip("/") + "/")


# --- source splits: what `alprd eval --split` measures and what a trainer's --hold-out leaves out -----

SPLITS = ("all", "train", "dev", "cross-source", "holdout:SOURCE")


def is_source_split(split: str) -> bool:
    """The splits that hold out whole sources rather than plates."""
    return split == "cross-source" or split.startswith("holdout:")


def in_split(source: str, split: str) -> bool:
    """For a source split: whether a sample of `source` is in it. The one rule behind both `alprd eval
    --split` and the trainers' --hold-out, so a model trained without a split is measured on exactly it."""
    if split == "cross-source":
        return is_cross_source_held_out(source)
    return in_source(source, split.removeprefix("holdout:"))


def check_split(split: str, sources: set[str], option: str = "--split") -> None:
    """A holdout split must name a source of the set: one clear line listing those it has."""
    if split in SPLITS[:4]:
        return
    if not split.startswith("holdout:") or not split.removeprefix("holdout:"):
        raise UserError(f"{option} {split}: valid: {', '.join(SPLITS)}")
    wanted = split.removeprefix("holdout:")
    if not any(in_source(s, wanted) for s in sources):
        names = sorted(sources | {s.split("/")[0] for s in sources})
        shown = ", ".join(names[:40]) + (f" and {len(names) - 40} more" if len(names) > 40 else "")
        raise UserError(f"{option} {split}: no sample of this set is from {wanted!r}; its sources: {shown}")


def hold_out_split(hold_out: str) -> str:
    """A trainer's `--hold-out cross-source|SOURCE` as the eval split it leaves out."""
    return hold_out if hold_out == "cross-source" else f"holdout:{hold_out.removeprefix('holdout:')}"


Sample = TypeVar("Sample")


def leave_out(samples: list[Sample], split: str,
              source: Callable[[Sample], str]) -> tuple[list[Sample], list[Sample]]:
    """The samples outside a source split, and those in it (what a trainer must not see)."""
    kept: list[Sample] = []
    held: list[Sample] = []
    for s in samples:
        (held if in_split(source(s), split) else kept).append(s)
    return kept, held


def count_sources(samples: list[Sample], source: Callable[[Sample], str]) -> dict[str, int]:
    return dict(sorted(Counter(source(s) for s in samples).items()))
