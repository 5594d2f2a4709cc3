"""Where a reader misreads, and how (issue 32): exact match tight / framed / framed with the second
look on the dev crops, per source part (the cross-source split's held-out US states and Brazilian
`_CC_` series against the rest), and how many misreads are a doubled character: the label with one
character read twice, at its end (an echo the decoding mends when it is sure) or in the middle.

The crops are framed exactly as `framing_report` frames them (the same seed, boxes and order), so its
US and Brazil figures are this report's rows summed.

    python -m alprd_train.misread_report models runs/x/models --data ../shared/data --draws 12
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

import numpy as np

from alprd.config import ModelsConfig
from alprd.datasets import detection_splits, is_cross_source_held_out, ocr_splits, source_of
from alprd.recognition.recognizer import Recognizer, Timings
from alprd_train.framing_report import read_framed
from alprd_train.train_ocr import detector_framing

MODES = ("tight", "framed", "looked")


def doubled(read: str, label: str) -> str | None:
    """'end' or 'middle' where `read` is `label` with one of its characters read twice, else None. A
    label's own double (GLF288 read GLF2888) counts where the repeat is."""
    if len(read) != len(label) + 1:
        return None
    for i in range(len(read) - 1, 0, -1):  # from the end: GLF2888 for GLF288 is an end double
        if read[i] == read[i - 1] and read[:i] + read[i + 1:] == label:
            return "end" if i == len(read) - 1 else "middle"
    return None


def part_of(split: str, image: Path) -> str:
    """The cross-source split's parts of the dev crops: held-out US states or Brazilian series
    (never trained on by any shipped reader) and the rest."""
    held = is_cross_source_held_out(source_of(image))
    if split == "us_dev":
        return "us_cross_source" if held else "us_other"
    return "br_CC" if held else "br_CV"


def misread_counts(models: Path, data: Path, draws: int = 12, seed: int = 5) -> dict[str, Counter]:
    framing = detector_framing(models, detection_splits(data)["dev"])
    rec = Recognizer.from_config(ModelsConfig(dir=str(models)))
    out: dict[str, Counter] = {}
    splits = ocr_splits(data)
    for split in ("us_dev", "br_dev"):
        rng = np.random.default_rng(seed)
        for c in (c for c in splits[split] if c.text):
            tight, framed, looked = read_framed(rec, c, framing, draws, rng, Timings())
            for part in (split, part_of(split, c.image)):
                n = out.setdefault(part, Counter())
                n["crops"] += 1
                for mode, texts in (("tight", [tight]), ("framed", framed), ("looked", looked)):
                    for t in texts:
                        n[f"{mode}_reads"] += 1
                        n[f"{mode}_right"] += t == c.text
                        if kind := doubled(t, c.text):
                            n[f"{mode}_doubled_{kind}"] += 1
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m alprd_train.misread_report")
    ap.add_argument("models", type=Path, nargs="+", help="models folders (detector and reader)")
    ap.add_argument("--data", type=Path, default=Path("../shared/data"))
    ap.add_argument("--draws", type=int, default=12, help="framings per dev crop")
    args = ap.parse_args(argv)
    for m in args.models:
        print(f"{m}: exact tight / framed / second look; doubled characters among the misreads, end + middle")
        for part, n in misread_counts(m, args.data, args.draws).items():
            acc = " / ".join(f"{n[f'{k}_right'] / max(1, n[f'{k}_reads']):.1%}" for k in MODES)
            dbl = "  ".join(f"{k} {n[f'{k}_doubled_end']}+{n[f'{k}_doubled_middle']}" for k in MODES)
            print(f"  {part:16s} {n['crops']:4d} crops  {acc}   doubled: {dbl}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
