"""Which ONNX models read plates, at what input size and thresholds, on which onnxruntime providers."""

from __future__ import annotations

from dataclasses import dataclass

from alprd.errors import ConfigError

# The detector's input width (models.detector_input_width and the tools' --input-width): the
# network wants multiples of 32, and outside this range it is either blind or slower than a frame.
INPUT_WIDTH_RULE = "a multiple of 32 between 160 and 2048"


def is_input_width(width: int) -> bool:
    return width % 32 == 0 and 160 <= width <= 2048


@dataclass(frozen=True)
class ModelsConfig:
    dir: str = ""  # empty: the models shipped with alprd
    detector: str = "plate_detector"
    ocr: str = "plate_ocr"
    detector_input_width: int = 640
    detection_threshold: float = 0.4
    detector_recheck_above: float = 0.2  # boxes scored from here to detection_threshold get a second look; 0: off
    verifier: str = "plate_verifier"  # the manifest's plate verifier; empty: none
    detector_verify_below: float = 0.6  # boxes scored under this are shown to the verifier; 0: off
    min_read_confidence: float = 0.5
    min_plate_chars: int = 3
    reread_below: float = 0.95  # second look (recognizer.REREAD_BOXES) under this mean char confidence; 0: off
    providers: tuple[str, ...] = ("CPUExecutionProvider",)
    intra_op_threads: int = 1

    def validate(self, where: str) -> None:
        if not is_input_width(self.detector_input_width):
            raise ConfigError(f"{where}.detector_input_width: {self.detector_input_width} must be {INPUT_WIDTH_RULE}")
        for key in ("detection_threshold", "detector_recheck_above", "detector_verify_below", "min_read_confidence",
                    "reread_below"):
            v = getattr(self, key)
            if not 0.0 <= v <= 1.0:
                raise ConfigError(f"{where}.{key}: {v} must be between 0 and 1")
        if self.intra_op_threads < 0:
            raise ConfigError(f"{where}.intra_op_threads: {self.intra_op_threads} must be 0 (onnxruntime's choice) or more")
        if self.min_plate_chars < 1:
            raise ConfigError(f"{where}.min_plate_chars: {self.min_plate_chars} must be at least 1")
