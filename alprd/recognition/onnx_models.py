"""ONNX Runtime backends for the project's detector and reader."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import cv2
import numpy as np
import onnxruntime as ort

from alprd.errors import ModelError
from alprd.geometry import iou
from alprd.recognition.base import Detection, PlateDetector, PlateOCR, PlateText, PlateVerifier
from alprd.recognition.decoding import decode_ctc, decode_slots
from alprd.recognition.manifest import ModelEntry
from alprd.recognition.preprocess import decode_centers, letterbox, ocr_input, verifier_input

log = logging.getLogger(__name__)

# An int8 reader is checked once at load against the QDQ arithmetic it stands for (ONNX Runtime's
# basic optimisation level, which runs it in float on every CPU). Over this largest probability
# difference on the probes the CPU's int8 kernels are taken to be wrong and the float original is
# used. Measured on an AVX2-only CPU: 0.03-0.05 for reader 0.5.1, 0.22-0.52 for 0.5.0, whose 8-bit
# image convolution overflowed there and read a fifth fewer Brazilian plates.
INT8_DRIFT_MAX = 0.15

# The detector's second look at boxes it is unsure of. A box scored between the recheck floor and the
# threshold is looked at again: a window of the frame centred on it, scaled so the plate is as wide as
# at the network's input but at least RECHECK_MIN_PX and at most RECHECK_MAX_PX, which puts its centre
# on a heatmap cell, gives a small plate a little more size and a near one a wider view. It counts if
# that look scores it at the threshold. Measured on the dev scenes (detector 0.4.1, threshold 0.4,
# floor 0.2, two looks a frame): 97.3 % of the labelled plates found at 0.50 false positives per scene
# against 95.8 % at 0.42 in one pass, and 90.5 / 87.5 / 75.6 % of plates shrunk to 60 / 50 / 40 px
# against 87.2 / 83.9 / 67.0 %. Lowering the threshold to 0.3 instead finds 97.6 % and 91.7 / 89.0 /
# 79.2 % for 0.88 false positives. A look costs about a fifth of the full pass.
RECHECK_MIN_PX = 24
RECHECK_MAX_PX = 64
RECHECK_WINDOW = (256, 160)  # w, h of the second look's input: multiples of 32
RECHECKS_PER_FRAME = 2
# The defaults of models.detector_recheck_above and models.detector_verify_below (alprd/config.py;
# a test keeps the two in step), for the tools that build a detector without a config.
RECHECK_ABOVE = 0.2
VERIFY_BELOW = 0.6


def make_session(entry: ModelEntry, providers: Sequence[str], intra_op_threads: int,
                 level: ort.GraphOptimizationLevel = ort.GraphOptimizationLevel.ORT_ENABLE_ALL) -> ort.InferenceSession:
    available = ort.get_available_providers()
    missing = [p for p in providers if p not in available]
    if missing:
        raise ModelError(f"models.providers: {', '.join(missing)} not available in this onnxruntime; "
                         f"available: {', '.join(available)}")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = intra_op_threads
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = level
    try:
        return ort.InferenceSession(str(entry.path), sess_options=opts, providers=list(providers))
    except Exception as e:  # onnxruntime raises its own exception types for corrupt graphs
        raise ModelError(f"{entry.path}: onnxruntime cannot load the model ({str(e).splitlines()[0]})") from None


class OnnxPlateDetector(PlateDetector):
    def __init__(self, entry: ModelEntry, providers: Sequence[str] = ("CPUExecutionProvider",),
                 intra_op_threads: int = 1, input_width: int = 640, threshold: float = 0.35,
                 recheck_above: float = RECHECK_ABOVE, verifier: PlateVerifier | None = None,
                 verify_below: float = VERIFY_BELOW):
        self.name, self.version = entry.name, entry.version
        self.session = make_session(entry, providers, intra_op_threads)
        self.stride = int(entry.input.get("stride", 4))
        self.input_width = input_width
        self.threshold = threshold
        self.recheck_above = recheck_above  # boxes scored from here to the threshold get a second look; 0: off
        self.rechecks = 0  # second looks taken, for benchmarks and stats
        self.verifier = verifier  # a second opinion on the boxes scored under verify_below
        self.verify_below = verify_below  # 0: no box is shown to the verifier
        self.vetoed = 0  # boxes the verifier took for no plate, for benchmarks and stats
        self.width_curve = entry.detection_rate_by_width  # measured rate per plate width, for `alprd bench`
        self._input = self.session.get_inputs()[0].name

    def input_size(self, w: int, h: int) -> tuple[int, int]:
        """Network input for a w x h frame: the configured width, height kept to the frame's aspect."""
        in_w = self.input_width
        in_h = max(32, int(np.ceil(in_w * h / w / 32) * 32))
        return in_w, in_h

    def detect(self, frame: np.ndarray, region: tuple[int, int, int, int] | None = None) -> list[Detection]:
        """Plates in the frame, or only in `region` (x1, y1, x2, y2 in frame pixels). A region is
        seen at the same scale as the whole frame would be, so a plate is found the same way in
        both; the network's cost falls with the region's area."""
        h, w = frame.shape[:2]
        in_w, in_h = self.input_size(w, h)
        if region is None:
            blob, scale, px, py = letterbox(frame, in_w, in_h)
            sx = sy = scale
            ox, oy = -px / scale, -py / scale
        else:
            scale = min(in_w / w, in_h / h)
            x1, y1 = max(0, int(region[0])), max(0, int(region[1]))
            x2, y2 = min(w, int(region[2])), min(h, int(region[3]))
            if x2 - x1 < 8 or y2 - y1 < 8:
                return []
            rw, rh = max(1, round((x2 - x1) * scale)), max(1, round((y2 - y1) * scale))
            cw, ch = -(-rw // 32) * 32, -(-rh // 32) * 32  # the network wants multiples of 32
            blob = _window_blob(frame, (x1, y1, x2, y2), (rw, rh), (cw, ch), (0, 0), scale < 1)
            sx, sy = rw / (x2 - x1), rh / (y2 - y1)
            ox, oy = x1, y1
        recheck = 0.0 < self.recheck_above < self.threshold
        floor = self.recheck_above if recheck else self.threshold
        out, unsure = [], []
        for box, score in self._boxes(blob, floor, (ox, oy, sx, sy), (w, h)):
            if box[2] - box[0] < 4 or box[3] - box[1] < 2:
                continue
            if score >= self.threshold:
                out.append(Detection(box, score))
            elif len(unsure) < RECHECKS_PER_FRAME:
                unsure.append(box)  # decode_centers gives the surest first
        for box in unsure:
            found = self._look_again(frame, box, sx)
            if found is not None and all(iou(found.box, d.box) < 0.5 for d in out):
                out.append(found)
        return sorted(self._verified(frame, out), key=lambda d: -d.confidence)

    def _verified(self, frame: np.ndarray, found: list[Detection]) -> list[Detection]:
        """`found` less the unsure boxes the verifier takes for no plate."""
        if self.verifier is None:
            return found
        unsure = [d for d in found if d.confidence < self.verify_below]
        if not unsure:
            return found
        p = self.verifier.plate_probability(frame, [d.box for d in unsure])
        vetoed = {id(d) for d, pd in zip(unsure, p) if pd < self.verifier.threshold}
        self.vetoed += len(vetoed)
        return [d for d in found if id(d) not in vetoed]

    def _look_again(self, frame: np.ndarray, box: tuple[int, int, int, int], scale: float) -> Detection | None:
        """The plate in a window centred on `box`, scaled so it is as wide as at the full pass's
        `scale` but within RECHECK_MIN_PX..RECHECK_MAX_PX, if the detector is sure of it there; None
        otherwise."""
        self.rechecks += 1
        h, w = frame.shape[:2]
        ww, wh = RECHECK_WINDOW
        bw = max(2, box[2] - box[0])
        s = min(max(bw * scale, RECHECK_MIN_PX), RECHECK_MAX_PX) / bw
        cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
        # The part of the frame the window shows, clipped to the frame; the rest stays letterbox grey.
        x1, y1 = max(0, round(cx - ww / 2 / s)), max(0, round(cy - wh / 2 / s))
        x2, y2 = min(w, round(cx + ww / 2 / s)), min(h, round(cy + wh / 2 / s))
        px, py = max(0, round((x1 - cx) * s + ww / 2)), max(0, round((y1 - cy) * s + wh / 2))
        rw, rh = min(ww - px, max(1, round((x2 - x1) * s))), min(wh - py, max(1, round((y2 - y1) * s)))
        sx, sy = rw / (x2 - x1), rh / (y2 - y1)
        blob = _window_blob(frame, (x1, y1, x2, y2), (rw, rh), (ww, wh), (px, py), s < 1)
        best = None
        for seen, score in self._boxes(blob, self.threshold, (x1 - px / sx, y1 - py / sy, sx, sy), (w, h)):
            if iou(seen, box) > 0.3 and (best is None or score > best.confidence):
                best = Detection(seen, score)
        return best

    def _boxes(self, blob: np.ndarray, threshold: float, view: tuple[float, float, float, float],
               frame_size: tuple[int, int]) -> list[tuple[tuple[int, int, int, int], float]]:
        """The network's boxes on `blob` scored at `threshold` or more, in frame pixels: `view` is
        (x0, y0, sx, sy), where the input's pixel (0, 0) lies in the frame and its scale; clipped to
        the frame_size (w, h)."""
        ox, oy, sx, sy = view
        w, h = frame_size
        heat, size, offset = self.session.run(None, {self._input: blob})
        return [((int(max(0, round(bx1 / sx + ox))), int(max(0, round(by1 / sy + oy))),
                  int(min(w, round(bx2 / sx + ox))), int(min(h, round(by2 / sy + oy)))), score)
                for bx1, by1, bx2, by2, score in decode_centers(heat[0, 0], size[0], offset[0], self.stride, threshold)]


def _window_blob(frame: np.ndarray, part: tuple[int, int, int, int], size: tuple[int, int],
                 canvas_size: tuple[int, int], at: tuple[int, int], shrink: bool) -> np.ndarray:
    """The detector's [1, 3, H, W] input: `part` (x1, y1, x2, y2) of the frame resized to `size` and
    placed at `at` on a letterbox-grey canvas of `canvas_size` (w, h)."""
    (x1, y1, x2, y2), (rw, rh), (cw, ch), (px, py) = part, size, canvas_size, at
    canvas = np.full((ch, cw, 3), 114, np.uint8)
    canvas[py:py + rh, px:px + rw] = cv2.resize(frame[y1:y2, x1:x2], (rw, rh),
                                                interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    return canvas.transpose(2, 0, 1)[None].astype(np.float32)


class OnnxPlateVerifier(PlateVerifier):
    def __init__(self, entry: ModelEntry, providers: Sequence[str] = ("CPUExecutionProvider",),
                 intra_op_threads: int = 1):
        self.name, self.version = entry.name, entry.version
        self.session = make_session(entry, providers, intra_op_threads)
        self.size = (int(entry.input.get("width", 96)), int(entry.input.get("height", 48)))
        self.threshold = entry.threshold
        self._input = self.session.get_inputs()[0].name

    def plate_probability(self, frame: np.ndarray, boxes: list[tuple[int, int, int, int]]) -> list[float]:
        if not boxes:
            return []
        return [float(p) for p in self.session.run(None, {self._input: verifier_input(frame, boxes, self.size)})[0]]


class OnnxPlateOCR(PlateOCR):
    def __init__(self, entry: ModelEntry, providers: Sequence[str] = ("CPUExecutionProvider",),
                 intra_op_threads: int = 1):
        self.name, self.version = entry.name, entry.version
        self.session = make_session(entry, providers, intra_op_threads)
        self.height = int(entry.input.get("height", 64))
        self.width = int(entry.input.get("width", 128))
        if not entry.alphabet:
            raise ModelError(f"{entry.path}: manifest entry has no alphabet")
        self.chars = entry.alphabet + entry.pad
        self.pad = entry.pad
        if entry.decoder not in ("slots", "ctc"):
            raise ModelError(f"{entry.path}: unknown decoder {entry.decoder!r} in the manifest; valid: slots, ctc")
        self.ctc = entry.decoder == "ctc"
        self._input = self.session.get_inputs()[0].name
        self.path = entry.path  # the file in use: the int8 one, or its float original (see _check_int8)
        if entry.quantized_from:
            self._check_int8(entry, providers, intra_op_threads)

    def _check_int8(self, entry: ModelEntry, providers: Sequence[str], intra_op_threads: int) -> None:
        """Fall back to the float original where this CPU's int8 kernels do not compute what the
        quantized model means; probes of hard black-and-white edges are where int16 sums overflow."""
        rng = np.random.default_rng(0)
        blocks = np.kron(rng.integers(0, 2, (4, 1, self.height // 8, self.width // 8)), np.ones((1, 1, 8, 8)))
        stripes = np.tile((np.arange(self.width) // 3 % 2), (2, 1, self.height, 1))
        probes = (np.concatenate([blocks, stripes]) * 255).astype(np.float32)
        reference = make_session(entry, providers, intra_op_threads, ort.GraphOptimizationLevel.ORT_ENABLE_BASIC)
        drift = float(np.abs(self.session.run(None, {self._input: probes})[0]
                             - reference.run(None, {self._input: probes})[0]).max())
        if drift <= INT8_DRIFT_MAX:
            return
        try:
            original = entry.float_original()
        except ModelError as e:
            log.warning("%s: this CPU's int8 kernels are %.2f off the model's arithmetic (over %.2f) and its float "
                        "original cannot be used (%s); reads may be wrong", entry.path, drift, INT8_DRIFT_MAX, e)
            return
        assert original is not None  # quantized_from is set
        log.warning("%s: this CPU's int8 kernels are %.2f off the model's arithmetic (over %.2f); reading with the "
                    "float original %s instead (slower, same weights)", entry.path, drift, INT8_DRIFT_MAX, entry.quantized_from)
        self.session = make_session(original, providers, intra_op_threads)
        self.path = original.path

    def read(self, crops: list[np.ndarray]) -> list[PlateText]:
        if not crops:
            return []
        probs = self.session.run(None, {self._input: ocr_input(crops, self.height, self.width)})[0]
        return [self._decode(p) for p in probs]

    def _decode(self, p: np.ndarray) -> PlateText:
        return decode_ctc(p, self.chars, self.pad) if self.ctc else decode_slots(p, self.chars, self.pad)
