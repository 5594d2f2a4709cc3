"""Pre- and post-processing shared by inference and training, so both see identical inputs."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from alprd.geometry import iou

# Fraction of the box added on each side before OCR: detector boxes are tight and real crops in
# the training data carry a little border, so the reader is trained on that framing.
CROP_PAD_X = 0.06
CROP_PAD_Y = 0.12


def crop_plate(frame: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    h, w = frame.shape[:2]
    x1, y1, x2, y2 = box
    bw, bh = x2 - x1, y2 - y1
    px, py = int(round(bw * CROP_PAD_X)), int(round(bh * CROP_PAD_Y))
    xa, ya = max(0, x1 - px), max(0, y1 - py)
    xb, yb = min(w, x2 + px), min(h, y2 + py)
    return frame[ya:yb, xa:xb]


def ocr_input(crops: list[np.ndarray], height: int, width: int) -> np.ndarray:
    """BGR crops -> float32 [N, 1, H, W] grey, 0..255 (the model normalises)."""
    out = np.empty((len(crops), 1, height, width), np.float32)
    for i, c in enumerate(crops):
        g = c if c.ndim == 2 else cv2.cvtColor(c, cv2.COLOR_BGR2GRAY)
        interp = cv2.INTER_AREA if g.shape[1] > width else cv2.INTER_LINEAR
        out[i, 0] = cv2.resize(g, (width, height), interpolation=interp)
    return out


# The plate verifier's view of a box: the plate in the middle of a window twice its width (and at
# least twice its height), at 2:1, so it sees the plate's edges and what is around them: a bumper
# or a boot lid, against the shop front, badge or watermark that the detector took for a plate.
VERIFIER_SIZE = (96, 48)  # w, h


def verifier_window(box: Sequence[float]) -> tuple[float, float, float, float]:
    """The part of the frame (x1, y1, x2, y2, possibly beyond its edges) the verifier sees for `box`."""
    x1, y1, x2, y2 = box[:4]
    bw, bh = max(2.0, x2 - x1), max(2.0, y2 - y1)
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    h = max(bw, 2.0 * bh)  # a window of 2 x the plate's width at 2:1, taller for two-line plates
    w = 2.0 * h
    return cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2


def verifier_input(frame: np.ndarray, boxes: Sequence[Sequence[float]],
                   size: tuple[int, int] = VERIFIER_SIZE) -> np.ndarray:
    """BGR frame and boxes -> float32 [N, 3, H, W], 0..255: each box's verifier_window, resized;
    what lies beyond the frame is letterbox grey."""
    fh, fw = frame.shape[:2]
    ow, oh = size
    out = np.full((len(boxes), oh, ow, 3), 114, np.uint8)
    for i, box in enumerate(boxes):
        wx1, wy1, wx2, wy2 = verifier_window(box)
        sx, sy = ow / (wx2 - wx1), oh / (wy2 - wy1)
        x1, y1 = max(0, int(np.floor(wx1))), max(0, int(np.floor(wy1)))
        x2, y2 = min(fw, int(np.ceil(wx2))), min(fh, int(np.ceil(wy2)))
        if x2 - x1 < 1 or y2 - y1 < 1:
            continue
        dx1, dy1 = max(0, round((x1 - wx1) * sx)), max(0, round((y1 - wy1) * sy))
        dx2, dy2 = min(ow, max(dx1 + 1, round((x2 - wx1) * sx))), min(oh, max(dy1 + 1, round((y2 - wy1) * sy)))
        shrink = (x2 - x1) > (dx2 - dx1)
        out[i, dy1:dy2, dx1:dx2] = cv2.resize(frame[y1:y2, x1:x2], (dx2 - dx1, dy2 - dy1),
                                              interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    return out.transpose(0, 3, 1, 2).astype(np.float32)


def letterbox(frame: np.ndarray, width: int, height: int) -> tuple[np.ndarray, float, int, int]:
    """Fit a BGR frame into width x height keeping aspect; returns [1,3,H,W] float32, scale, pads."""
    h, w = frame.shape[:2]
    scale = min(width / w, height / h)
    nw, nh = int(round(w * scale)), int(round(h * scale))
    resized = cv2.resize(frame, (nw, nh), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    px, py = (width - nw) // 2, (height - nh) // 2
    canvas = np.full((height, width, 3), 114, np.uint8)
    canvas[py:py + nh, px:px + nw] = resized
    blob = canvas.transpose(2, 0, 1)[None].astype(np.float32)
    return blob, scale, px, py


def decode_centers(heat: np.ndarray, size: np.ndarray, offset: np.ndarray, stride: int,
                   threshold: float, max_det: int = 50) -> list[tuple[float, float, float, float, float]]:
    """CenterNet decoding: local maxima of the heatmap [H,W] with size [2,H,W] (log of box w,h in
    input pixels) and sub-cell offset [2,H,W]. Returns (x1, y1, x2, y2, score) in input pixels."""
    peaks = cv2.dilate(heat, np.ones((3, 3), np.uint8))
    ys, xs = np.nonzero((heat >= peaks) & (heat >= threshold))
    if len(ys) == 0:
        return []
    scores = heat[ys, xs]
    order = np.argsort(-scores)[:max_det]
    out = []
    for i in order:
        y, x = ys[i], xs[i]
        cx = (x + offset[0, y, x]) * stride
        cy = (y + offset[1, y, x]) * stride
        bw, bh = np.exp(size[0, y, x]), np.exp(size[1, y, x])
        out.append((cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2, float(scores[i])))
    return nms(out, 0.5)


def nms(boxes: Sequence[tuple[float, float, float, float, float]], iou_max: float):
    """The best-scoring boxes, dropping any that overlaps a kept one by `iou_max` or more."""
    keep: list[tuple[float, float, float, float, float]] = []
    for b in sorted(boxes, key=lambda b: -b[4]):
        if all(iou(b[:4], k[:4]) < iou_max for k in keep):
            keep.append(b)
    return keep
