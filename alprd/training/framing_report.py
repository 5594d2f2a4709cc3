"""How a reader does on the crops the daemon would hand it, not on crops cut at the plate's edge.

The crop sets are cut tight; the daemon crops around its detector's box plus padding, and that box
is off by several percent either way. Each dev crop is framed as the daemon would frame it, with box
errors the folder's own detector makes on the dev scenes, a few draws per crop.

    python -m alprd.training.framing_report models runs/x/models --data ../shared/data
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from alprd.datasets import detection_splits, ocr_splits
from alprd.recognition.manifest import load_entry
from alprd.recognition.onnx_models import OnnxPlateOCR
from alprd.training.common import load_image
from alprd.training.train_ocr import detector_framing, frame_like_daemon


def framed_accuracy(models: Path, data: Path, draws: int = 4, seed: int = 5) -> dict[str, float]:
    framing = detector_framing(models, detection_splits(data)["dev"])
    ocr = OnnxPlateOCR(load_entry(models, "plate_ocr", "ocr"))
    out: dict[str, float] = {"boxes": float(len(framing))}
    splits = ocr_splits(data)
    for split in ("us_dev", "br_dev"):
        crops = [c for c in splits[split] if c.text]
        rng = np.random.default_rng(seed)
        tight = framed = 0
        for c in crops:
            img = load_image(c.image)
            reads = ocr.read([img] + [frame_like_daemon(rng, img, framing) for _ in range(draws)])
            tight += reads[0].text == c.text
            framed += sum(r.text == c.text for r in reads[1:])
        out[f"{split}_tight"] = tight / max(1, len(crops))
        out[f"{split}_framed"] = framed / max(1, draws * len(crops))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m alprd.training.framing_report")
    ap.add_argument("models", type=Path, nargs="+", help="models folders (detector and reader)")
    ap.add_argument("--data", type=Path, default=Path("../shared/data"))
    ap.add_argument("--draws", type=int, default=4, help="framings per dev crop")
    args = ap.parse_args(argv)
    print("models  detector boxes  US tight  US framed  Brazil tight  Brazil framed")
    for m in args.models:
        r = framed_accuracy(m, args.data, args.draws)
        print(f"{m}  {r['boxes']:.0f}  {r['us_dev_tight']:.1%}  {r['us_dev_framed']:.1%}  "
              f"{r['br_dev_tight']:.1%}  {r['br_dev_framed']:.1%}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
