"""`--hold-out cross-source|SOURCE`: a trainer leaves whole sources out, by the rule `alprd eval
--split` measures (alprd.datasets.in_split), so a model selected on that split never saw it. Every
sample a trainer reads goes through HoldOut.split; what it drops is counted per list and per source
and recorded in run.json."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from alprd.datasets import (
    check_split,
    count_sources,
    detection_splits,
    hold_out_split,
    in_split,
    leave_out,
    ocr_splits,
    read_ocr_csv,
    source_of,
)
from alprd.errors import UserError

Sample = TypeVar("Sample")


def add_hold_out_argument(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--hold-out", metavar="cross-source|SOURCE", default=None,
                    help="leave out every sample of these sources, as `alprd eval --split` holds them out: "
                         "cross-source (the held-out sources of alprd.datasets) or one source or dataset, "
                         "e.g. us_plate_crops/ca; they are evaluated apart and the counts land in run.json")


def image_source(sample: Any) -> str:
    return source_of(Path(sample.image))


class HoldOut:
    """What one run leaves out. Without --hold-out every split keeps everything."""

    def __init__(self, hold_out: str | None, sources: set[str]):
        self.split_name = hold_out_split(hold_out) if hold_out else None
        if self.split_name:
            check_split(self.split_name, sources, "--hold-out")
        self.dropped: dict[str, int] = {}
        self.by_source: dict[str, int] = {}

    def split(self, name: str, samples: list[Sample],
              source: Callable[[Sample], str] = image_source) -> tuple[list[Sample], list[Sample]]:
        """The samples of list `name` that may be trained on, and those held out."""
        if not self.split_name:
            return samples, []
        kept, held = leave_out(samples, self.split_name, source)
        self.dropped[name] = self.dropped.get(name, 0) + len(held)
        for src, n in count_sources(held, source).items():
            self.by_source[src] = self.by_source.get(src, 0) + n
        return kept, held

    def keeps(self, source: str) -> bool:
        """For samples cut before they are counted (scene crops): whether this source is trained on."""
        return not self.split_name or not in_split(source, self.split_name)

    def record(self) -> dict[str, Any]:
        return {"split": self.split_name, "dropped": self.dropped, "dropped_by_source": dict(sorted(self.by_source.items()))}


def data_sources(data: Path) -> set[str]:
    """Every source of the data folder's labelled crops and scenes (what --hold-out SOURCE may name)."""
    samples: list[Any] = [s for v in ocr_splits(data).values() for s in v]
    samples += [s for v in detection_splits(data).values() for s in v]
    blank = data / "openalpr_train_detector" / "crops_no_text.csv"
    if blank.exists():
        samples += read_ocr_csv(blank)
    return {image_source(s) for s in samples}


def same_hold_out(out: Path, hold_out: str | None) -> None:
    """A run folder caches the lists it trains on (pseudo labels, scene crops, mined boxes): resuming it
    with another --hold-out would train on what the new one leaves out."""
    run = out / "run.json"
    if not run.exists():
        return
    was = json.loads(run.read_text()).get("settings", {}).get("hold_out", "None")
    if was != str(hold_out):
        raise UserError(f"--hold-out {hold_out}: {out} is a run made with --hold-out {was}; give a new --out")
