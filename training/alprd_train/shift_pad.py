"""Shift/pad augmentation for the reader (issue 32): the plate at a random place and size inside a crop
of the same size, the space around it filled from the crop's own edges or a plain field.

The synthetic bank renders every plate centred with even margins, and the real crops are cut at the
plate's edge and wobble by a few per cent, so the attention slots only ever learned to look where the
characters usually are. On a plate framed off-centre or small in its crop, two slots then look at the
same character: the doubled character (a middle one too) of issue 32's misreads."""

from __future__ import annotations

import cv2
import numpy as np

WIDTH = (0.65, 1.0)  # the plate's width in the crop's: never wider, a cut character would make the label a lie


def shift_pad(rng: np.random.Generator, img: np.ndarray, width: tuple[float, float] = WIDTH) -> np.ndarray:
    """`img` (grey or BGR) shrunk to a random share of its width (its height by about as much) and put
    at a random offset in a canvas of its own size, around it: its edge pixels repeated (most often), a
    plain field of a random grey, or a blotchy texture (a bumper, a car body). Never its mirror image:
    mirrored characters at the edge would be characters the label does not have."""
    h, w = img.shape[:2]
    sx = rng.uniform(*width)
    sy = min(1.0, sx * rng.uniform(0.85, 1.15))
    ox, oy = rng.uniform(0, w * (1 - sx)), rng.uniform(0, h * (1 - sy))
    m = np.array([[sx, 0, ox], [0, sy, oy]], np.float32)
    pick = rng.random()
    if pick < 0.6:
        return cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    if pick < 0.8:
        field = np.full(img.shape, rng.integers(0, 256), np.uint8)
    else:
        blotch = rng.integers(0, 256, size=(int(rng.integers(2, 6)), int(rng.integers(3, 10))), dtype=np.uint8)
        field = cv2.resize(blotch, (w, h), interpolation=cv2.INTER_CUBIC)
        field = field if img.ndim == 2 else np.repeat(field[:, :, None], img.shape[2], 2)
    return cv2.warpAffine(img, m, (w, h), dst=field.copy(), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_TRANSPARENT)
