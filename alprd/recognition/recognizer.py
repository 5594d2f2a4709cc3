"""Frame -> plate reads: detection, crop, batched OCR. The one path used by `read`, `eval` and the daemon."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from alprd.config import ModelsConfig
from alprd.recognition.base import Detection, PlateDetector, PlateOCR, PlateRead
from alprd.recognition.manifest import default_models_dir, load_entry
from alprd.recognition.onnx_models import OnnxPlateDetector, OnnxPlateOCR
from alprd.recognition.preprocess import crop_plate, iou


@dataclass
class Timings:
    detect_ms: float = 0.0
    ocr_ms: float = 0.0


class Recognizer:
    def __init__(self, detector: PlateDetector, ocr: PlateOCR, min_confidence: float = 0.5, min_chars: int = 3):
        self.detector = detector
        self.ocr = ocr
        self.min_confidence = min_confidence
        self.min_chars = min_chars

    @classmethod
    def from_config(cls, cfg: ModelsConfig) -> Recognizer:
        models_dir = Path(cfg.dir) if cfg.dir else default_models_dir()
        det = OnnxPlateDetector(load_entry(models_dir, cfg.detector, "detector"), cfg.providers,
                                cfg.intra_op_threads, cfg.detector_input_width, cfg.detection_threshold)
        ocr = OnnxPlateOCR(load_entry(models_dir, cfg.ocr, "ocr"), cfg.providers, cfg.intra_op_threads)
        return cls(det, ocr, cfg.min_read_confidence, cfg.min_plate_chars)

    @property
    def model_versions(self) -> dict[str, str]:
        return {"detector": f"{self.detector.name}@{self.detector.version}",
                "ocr": f"{self.ocr.name}@{self.ocr.version}"}

    def recognize(self, frame: np.ndarray, timings: Timings | None = None) -> list[PlateRead]:
        """Confident reads in a BGR frame, most confident first."""
        return self.analyse(frame, timings)[1]

    def analyse(self, frame: np.ndarray, timings: Timings | None = None,
                regions: tuple[tuple[int, int, int, int], ...] | None = None) -> tuple[list[Detection], list[PlateRead]]:
        """All detections, and the confident reads among them. `regions` (frame pixels) limits
        detection to those parts of the frame (motion gating); None means the whole frame. The
        plates of all regions are read in one OCR batch."""
        t0 = time.perf_counter()
        if regions is None:
            dets = self.detector.detect(frame)
        else:
            found = [d for r in regions for d in self.detector.detect(frame, r)]  # type: ignore[call-arg]
            dets = _dedupe(sorted(found, key=lambda d: -d.confidence))
        t1 = time.perf_counter()
        texts = self.ocr.read([crop_plate(frame, d.box) for d in dets])
        t2 = time.perf_counter()
        if timings is not None:
            timings.detect_ms += (t1 - t0) * 1000
            timings.ocr_ms += (t2 - t1) * 1000
        reads = [
            PlateRead(t.text, t.confidence, t.char_confidences, d.box, d.confidence)
            for d, t in zip(dets, texts)
            if t.confidence >= self.min_confidence and len(t.text) >= self.min_chars
        ]
        return dets, sorted(reads, key=lambda r: -r.confidence)


def _dedupe(dets: list[Detection], iou_max: float = 0.5) -> list[Detection]:
    """A plate on the edge of two regions is found twice; keep the more confident box."""
    keep: list[Detection] = []
    for d in dets:
        if all(iou(d.box, k.box) < iou_max for k in keep):
            keep.append(d)
    return keep
