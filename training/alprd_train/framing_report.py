"""How a reader does on the crops the daemon would hand it, not on crops cut at the plate's edge.

The crop sets are cut tight; the daemon crops around its detector's box plus padding, and that box
is off by several percent either way. Each dev crop is framed as the daemon would frame it, with box
errors the folder's own detector makes on the dev scenes, a few draws per crop, and read once and
as the daemon reads it (a second look from a wider and a tighter box when the first read is unsure).

    python -m alprd_train.framing_report models runs/x/models --data ../shared/data
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from alprd.config import ModelsConfig
from alprd.datasets import CropSample, detection_splits, ocr_splits
from alprd.recognition.preprocess import crop_plate
from alprd.recognition.recognizer import Recognizer, Timings
from alprd_train.common import load_image
from alprd_train.train_ocr import bordered, daemon_box, detector_framing


def read_framed(rec: Recognizer, crop: CropSample, framing: np.ndarray, draws: int, rng: np.random.Generator,
                timings: Timings) -> tuple[str, list[str], list[str]]:
    """One dev crop read tight, then framed `draws` ways (boxes drawn from `framing`) and read once
    each, and the same framings read as the daemon reads them (with its second look)."""
    img = load_image(crop.image)
    big = bordered(img)
    boxes = [daemon_box(rng, img.shape, framing) for _ in range(draws)]
    reads = rec.ocr.read([img] + [crop_plate(big, b) for b in boxes])
    return reads[0].text, [r.text for r in reads[1:]], [r.text for r in rec.read_boxes(big, boxes, timings)]


def framed_accuracy(models: Path, data: Path, draws: int = 4, seed: int = 5) -> dict[str, float]:
    """Exact match on tight crops, on framed crops read once, and on framed crops read as the daemon
    reads them (with its second look at unsure plates), plus the share of plates that took one."""
    framing = detector_framing(models, detection_splits(data)["dev"])
    rec = Recognizer.from_config(ModelsConfig(dir=str(models)))
    out: dict[str, float] = {"boxes": float(len(framing))}
    splits = ocr_splits(data)
    for split in ("us_dev", "br_dev"):
        crops = [c for c in splits[split] if c.text]
        rng = np.random.default_rng(seed)
        tight = framed = looked = 0
        tm = Timings()
        for c in crops:
            one, drawn, second = read_framed(rec, c, framing, draws, rng, tm)
            tight += one == c.text
            framed += sum(t == c.text for t in drawn)
            looked += sum(t == c.text for t in second)
        out[f"{split}_tight"] = tight / max(1, len(crops))
        out[f"{split}_framed"] = framed / max(1, draws * len(crops))
        out[f"{split}_looked"] = looked / max(1, draws * len(crops))
        out[f"{split}_rereads"] = tm.rereads / max(1, tm.plates)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m alprd_train.framing_report")
    ap.add_argument("models", type=Path, nargs="+", help="models folders (detector and reader)")
    ap.add_argument("--data", type=Path, default=Path("../shared/data"))
    ap.add_argument("--draws", type=int, default=4, help="framings per dev crop")
    args = ap.parse_args(argv)
    print("models  detector boxes  US tight / framed / second look (reread)  Brazil tight / framed / second look (reread)")
    for m in args.models:
        r = framed_accuracy(m, args.data, args.draws)
        print(f"{m}  {r['boxes']:.0f}  " + "  ".join(
            f"{r[s + '_tight']:.1%} / {r[s + '_framed']:.1%} / {r[s + '_looked']:.1%} ({r[s + '_rereads']:.0%})"
            for s in ("us_dev", "br_dev")), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
