"""Frame -> plate reads: detection, crop, batched OCR. The one path used by `read`, `eval` and the daemon."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from alprd.geometry import iou, resize_box
from alprd.recognition.band import band_framed
from alprd.recognition.base import Detection, PlateDetector, PlateOCR, PlateRead, PlateText
from alprd.recognition.manifest import default_models_dir, load_entry, load_optional_entry
from alprd.recognition.onnx_models import OnnxPlateDetector, OnnxPlateOCR, OnnxPlateVerifier
from alprd.recognition.preprocess import crop_plate
from alprd.recognition.rank import ranked

log = logging.getLogger(__name__)

# The second look: the detector's box edges are off by about 7 % of the plate's width and 8 % of its
# height (one standard deviation, measured on the dev scenes), enough to cut a character off or to
# bring in the bumper. A plate read with less than `reread_below` mean character confidence is read
# again from two wider and two tighter boxes (these shares added on each side, about one and one and
# a half standard deviations), and the five reads vote (see _agreed_read). Against one wider and one
# tighter box with the surest read kept, this read 2.0 / 1.6 points more framed US / Brazilian dev
# crops and 1 more of 288 synthetic stills, for two more reads of each unsure plate.
REREAD_BOXES = ((0.08, 0.10), (-0.04, -0.05), (0.12, 0.15), (-0.08, -0.10))
REREAD_BELOW = 0.95  # the default of models.reread_below (alprd/config.py; a test keeps the two in step)


class ModelSettings(Protocol):
    """What `Recognizer.from_config` reads: the `models:` section (alprd.config.ModelsConfig), or
    anything with these attributes. Recognition itself takes plain arguments."""

    @property
    def dir(self) -> str: ...
    @property
    def detector(self) -> str: ...
    @property
    def ocr(self) -> str: ...
    @property
    def verifier(self) -> str: ...
    @property
    def detector_input_width(self) -> int: ...
    @property
    def detection_threshold(self) -> float: ...
    @property
    def detector_recheck_above(self) -> float: ...
    @property
    def detector_verify_below(self) -> float: ...
    @property
    def min_read_confidence(self) -> float: ...
    @property
    def min_plate_chars(self) -> int: ...
    @property
    def reread_below(self) -> float: ...
    @property
    def providers(self) -> Sequence[str]: ...
    @property
    def intra_op_threads(self) -> int: ...


@dataclass
class Timings:
    detect_ms: float = 0.0
    ocr_ms: float = 0.0
    plates: int = 0
    rereads: int = 0  # plates read a second time (from more boxes)
    ocr_skipped: int = 0  # plates not read: a settled track's (alprd/tracking/plan.py)


class Recognizer:
    def __init__(self, detector: PlateDetector, ocr: PlateOCR, min_confidence: float = 0.5, min_chars: int = 3,
                 reread_below: float = REREAD_BELOW, band_framing: bool = True):
        self.detector = detector
        self.ocr = ocr
        self.min_confidence = min_confidence
        self.min_chars = min_chars
        self.reread_below = reread_below
        self.band_framing = band_framing  # False: each box as the detector gave it (to measure the difference)

    @classmethod
    def from_config(cls, cfg: ModelSettings) -> Recognizer:
        models_dir = Path(cfg.dir) if cfg.dir else default_models_dir()
        verifier = None
        if cfg.verifier and cfg.detector_verify_below > 0:
            entry = load_optional_entry(models_dir, cfg.verifier, "verifier")
            if entry is None:
                log.warning("%s: no model named %r in the manifest; the detector's unsure boxes go unverified "
                            "(set models.verifier to \"\" to say so)", models_dir / "manifest.json", cfg.verifier)
            else:
                verifier = OnnxPlateVerifier(entry, cfg.providers, cfg.intra_op_threads)
        det = OnnxPlateDetector(load_entry(models_dir, cfg.detector, "detector"), cfg.providers,
                                cfg.intra_op_threads, cfg.detector_input_width, cfg.detection_threshold,
                                cfg.detector_recheck_above, verifier, cfg.detector_verify_below)
        ocr = OnnxPlateOCR(load_entry(models_dir, cfg.ocr, "ocr"), cfg.providers, cfg.intra_op_threads)
        return cls(det, ocr, cfg.min_read_confidence, cfg.min_plate_chars, cfg.reread_below)

    @property
    def model_versions(self) -> dict[str, str]:
        versions = {"detector": f"{self.detector.name}@{self.detector.version}",
                    "ocr": f"{self.ocr.name}@{self.ocr.version}"}
        verifier = getattr(self.detector, "verifier", None)
        if verifier is not None:
            versions["verifier"] = f"{verifier.name}@{verifier.version}"
        return versions

    def recognize(self, frame: np.ndarray, timings: Timings | None = None) -> list[PlateRead]:
        """Confident reads in a BGR frame, the likeliest plate first (alprd/recognition/rank.py)."""
        return self.analyse(frame, timings)[1]

    def analyse(self, frame: np.ndarray, timings: Timings | None = None,
                regions: tuple[tuple[int, int, int, int], ...] | None = None,
                skip: Callable[[tuple[int, int, int, int]], bool] | None = None) -> tuple[list[Detection], list[PlateRead]]:
        """All detections, and the confident reads among them, the likeliest plate first: by read
        confidence times detection score, not read confidence alone, which ranks a sign's clean
        lettering above a plate (alprd/recognition/rank.py; which reads pass is unchanged). `regions` (frame pixels) limits
        detection to those parts of the frame (motion gating, track windows); None means the whole
        frame. The plates of all regions are read in one OCR batch, except the boxes `skip` says
        need no reading (they are still returned as detections: they keep their tracks alive)."""
        t0 = time.perf_counter()
        if regions is None:
            dets = self.detector.detect(frame)
        else:
            found = [d for r in regions for d in self.detector.detect(frame, r)]  # type: ignore[call-arg]
            dets = _dedupe(sorted(found, key=lambda d: -d.confidence))
        t1 = time.perf_counter()
        to_read = [d for d in dets if skip is None or not skip(d.box)]
        texts = self.read_boxes(frame, [d.box for d in to_read], timings) if to_read else []
        t2 = time.perf_counter()
        if timings is not None:
            timings.detect_ms += (t1 - t0) * 1000
            timings.ocr_ms += (t2 - t1) * 1000
            timings.ocr_skipped += len(dets) - len(to_read)
        reads = [
            PlateRead(t.text, t.confidence, t.char_confidences, d.box, d.confidence, t.slots)
            for d, t in zip(to_read, texts)
            if t.confidence >= self.min_confidence and len(t.text) >= self.min_chars
        ]
        return dets, ranked(reads)

    def read_boxes(self, frame: np.ndarray, boxes: list[tuple[int, int, int, int]],
                   timings: Timings | None = None) -> list[PlateText]:
        """The text of the plate in each box, with the second look for the ones the reader is unsure of.
        A box that starts at or in a European plate's blue band is read from the band's outer edge
        (alprd/recognition/band.py), in both looks."""
        if self.band_framing:
            boxes = [band_framed(frame, b) for b in boxes]
        texts = self.ocr.read([crop_plate(frame, b) for b in boxes])
        unsure = [i for i, t in enumerate(texts) if _sureness(t) < self.reread_below]
        if timings is not None:
            timings.plates += len(boxes)
            timings.rereads += len(unsure)
        if not unsure:
            return texts
        again = self.ocr.read([crop_plate(frame, resize_box(boxes[i], gx, gy)) for i in unsure for gx, gy in REREAD_BOXES])
        n = len(REREAD_BOXES)
        for k, i in enumerate(unsure):
            texts[i] = _agreed_read([texts[i], *again[k * n:(k + 1) * n]])
        return texts


def _sureness(t: PlateText) -> float:
    """Mean character confidence: it ranks two reads of one plate better than the weakest character,
    which a single blurred character pins near the same value in both."""
    return sum(t.char_confidences) / len(t.char_confidences) if t.char_confidences else 0.0


def _agreed_read(reads: list[PlateText]) -> PlateText:
    """The text with the most mean character confidence summed over the reads that give it, as its
    surest read. Two reads that agree outweigh one slightly surer read: a box that cuts a character
    off can still read the rest surely, but the other boxes rarely cut the same one. On equal totals
    the earlier read wins, so the detector's own box (first) wins a tie."""
    totals: dict[str, float] = {}
    for r in reads:
        totals[r.text] = totals.get(r.text, 0.0) + _sureness(r)
    text = max(totals, key=totals.__getitem__)  # max keeps the first of equals
    return max((r for r in reads if r.text == text), key=_sureness)


def _dedupe(dets: list[Detection], iou_max: float = 0.5) -> list[Detection]:
    """A plate on the edge of two regions is found twice; keep the more confident box."""
    keep: list[Detection] = []
    for d in dets:
        if all(iou(d.box, k.box) < iou_max for k in keep):
            keep.append(d)
    return keep
