"""Camera-style degradations of a training crop: tilt, blur, sensor noise, colour cast, JPEG.

Issue 32: on road photos from camera styles the project never saw, the detector scored most
missed plates 0.2-0.4 (tilted, mid-distance, daylight): under-confident on an unseen look rather
than blind. The real training scenes come from few cameras, so the look of those cameras is all
the detector learnt; these draws widen it. Each is cheap on a 320 px crop (well under a
millisecond to a few ms), since training runs on the CPU.

The evaluation styles (alprd_train.style_report) are deliberately drawn another way (fixed
angles, disk defocus, shifted-copy motion blur, shot noise, haze blends, fixed JPEG qualities),
so the report does not only measure the augmentation's own recipe.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

FILL = 114  # the grey the training crops are padded with


def warp_boxes(M: np.ndarray, boxes: Sequence[np.ndarray], w: int, h: int,
               keep: float = 0.6) -> list[np.ndarray]:
    """Each box's four corners through the 3x3 `M`, as the axis-aligned box around them (how a
    tilted plate is labelled), clipped to the w x h frame; a box left mostly outside is dropped."""
    out = []
    for b in boxes:
        pts = np.array([[b[0], b[1]], [b[2], b[1]], [b[2], b[3]], [b[0], b[3]]], np.float32)[None]
        q = cv2.perspectiveTransform(pts, M)[0]
        x1, y1 = q.min(0)
        x2, y2 = q.max(0)
        c = np.array([max(0.0, x1), max(0.0, y1), min(float(w), x2), min(float(h), y2)], np.float32)
        full = (x2 - x1) * (y2 - y1)
        if c[2] - c[0] >= 4 and c[3] - c[1] >= 2 and (c[2] - c[0]) * (c[3] - c[1]) >= keep * full:
            out.append(c)
    return out


def tilt_matrix(w: int, h: int, angle_deg: float, keystone: tuple[float, float] = (0.0, 0.0)) -> np.ndarray:
    """Rotation by `angle_deg` about the centre, then a keystone: the top edge squeezed by
    keystone[0] and the left edge by keystone[1] (fractions of the side; negative: the other
    edge), the look of a camera turned and pitched towards the road."""
    a = np.deg2rad(angle_deg)
    R = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]], np.float64)
    C = np.array([[1, 0, w / 2], [0, 1, h / 2], [0, 0, 1]], np.float64)
    src = np.array([[0, 0], [w, 0], [w, h], [0, h]], np.float32)
    kx, ky = keystone[0] * w / 2, keystone[1] * h / 2
    dst = np.array([[max(kx, 0), max(ky, 0)], [w - max(kx, 0), max(-ky, 0)],
                    [w - max(-kx, 0), h - max(-ky, 0)], [max(-kx, 0), h - max(ky, 0)]], np.float32)
    K = cv2.getPerspectiveTransform(src, dst).astype(np.float64)
    return C @ R @ np.linalg.inv(C) @ K


def draw_tilt(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    """A random tilt for a w x h image: a roll of up to 20 degrees and a mild keystone, since road
    cameras are rarely square to the plate."""
    angle = float(rng.uniform(-20, 20))
    return tilt_matrix(w, h, angle, (float(rng.uniform(-0.25, 0.25)), float(rng.uniform(-0.15, 0.15))))


def tilted(img: np.ndarray, M: np.ndarray) -> np.ndarray:
    h, w = img.shape[:2]
    return cv2.warpPerspective(img, M, (w, h), flags=cv2.INTER_LINEAR, borderValue=(FILL, FILL, FILL))


def _motion_kernel(length: int, angle_deg: float) -> np.ndarray:
    k = np.zeros((length, length), np.float32)
    c = (length - 1) / 2
    dx, dy = np.cos(np.deg2rad(angle_deg)) * c, np.sin(np.deg2rad(angle_deg)) * c
    cv2.line(k, (round(c - dx), round(c - dy)), (round(c + dx), round(c + dy)), 1.0, 1)
    return k / max(k.sum(), 1e-6)


PARTS = ("tilt", "blur", "noise", "colour", "jpeg")


def augment(rng: np.random.Generator, img: np.ndarray, boxes: Sequence[np.ndarray],
            parts: Sequence[str] = PARTS) -> tuple[np.ndarray, list]:
    """One random camera style on a uint8 BGR crop and its boxes: each part drawn on its own, in
    a camera's order (optics, sensor, processing, compression). `parts` leaves the others out (the
    draws of whether a part applies are the same, so a run with every part is as before)."""
    h, w = img.shape[:2]
    out = [np.asarray(b, np.float32) for b in boxes]
    if rng.random() < 0.5 and "tilt" in parts:
        M = draw_tilt(rng, w, h)
        img = tilted(img, M)
        out = warp_boxes(M, out, w, h)
    if rng.random() < 0.4 and "blur" in parts:
        if rng.random() < 0.5:
            img = cv2.GaussianBlur(img, (0, 0), float(rng.uniform(0.6, 2.0)))
        else:
            img = cv2.filter2D(img, -1, _motion_kernel(int(rng.integers(3, 10)) | 1, float(rng.uniform(0, 180))))
    f = img.astype(np.float32)
    if rng.random() < 0.3 and "noise" in parts:
        f += rng.normal(0, rng.uniform(2, 10), f.shape).astype(np.float32)
    if rng.random() < 0.5 and "colour" in parts:
        # White balance off, washed-out colour, daylight haze (contrast pulled towards a light grey).
        f *= rng.uniform(0.8, 1.2, 3).astype(np.float32)
        grey = f.mean(2, keepdims=True)
        f = grey + (f - grey) * float(rng.uniform(0.3, 1.3))
        if rng.random() < 0.4:
            t = float(rng.uniform(0.1, 0.5))
            f = f * (1 - t) + t * float(rng.uniform(150, 230))
    img = np.clip(f, 0, 255).astype(np.uint8)
    if rng.random() < 0.5 and "jpeg" in parts:
        ok, enc = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(15, 61))])
        if ok:
            img = cv2.imdecode(enc, cv2.IMREAD_COLOR)
    return img, out
