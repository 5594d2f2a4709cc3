"""Readers for labelled plate data, and the project's fixed held-out splits.

Two layouts are understood:
- the CSV layout of ../shared/data: detection `image,x1,y1,x2,y2,text`, OCR `image,text[,state]`;
- the OpenALPR benchmark layout: `IMAGE.jpg` next to `IMAGE.txt` holding
  `file<TAB>x<TAB>y<TAB>w<TAB>h<TAB>PLATE`.

Splits are decided by a hash of a grouping key (video name, plate text) so that near-duplicate
frames or the same car never sit on both sides; they do not change between runs or machines.
"""

from __future__ import annotations

import csv
import hashlib
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path


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
