"""What every stage passes along: a camera frame, the motion test's verdict on it, and plate boxes
with the overlap arithmetic on them. A leaf module (numpy only), so sources, motion, recognition,
tracking and the pipeline can all use it without importing one another."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

Box = tuple[int, int, int, int]  # x1, y1, x2, y2 in frame pixels


@dataclass(frozen=True)
class Motion:
    """The motion test's verdict on a frame (alprd/motion.py makes it)."""

    run: bool  # analyse this frame
    reason: str  # first, moving, hold, keyframe, global, static, off
    changed: float  # fraction of the ROI that changed since the previous frame
    regions: tuple[Box, ...] | None  # where to detect, in frame pixels; None: the whole frame
    ms: float = 0.0  # what the test cost


@dataclass(frozen=True)
class Frame:
    camera: str
    index: int
    timestamp_ms: int  # wall clock (UTC ms) when captured, or video time offset from start for files
    image: np.ndarray
    video_ms: int | None = None  # recorded video: the video's own clock (0 at its first frame)
    motion: Motion | None = None  # the motion test's verdict, made in frame order by the source


def intersection(a: Sequence[float], b: Sequence[float]) -> float:
    """Area shared by two (x1, y1, x2, y2) boxes."""
    return max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))


def iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two (x1, y1, x2, y2) boxes; 0 for two empty boxes."""
    inter = intersection(a, b)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def resize_box(box: Box, grow_x: float, grow_y: float) -> Box:
    """The box with grow_x of its width and grow_y of its height added on each side (negative
    shrinks it); never narrower than 4 px or lower than 2 px. crop_plate clips it to the frame."""
    x1, y1, x2, y2 = box
    dx, dy = round((x2 - x1) * grow_x), round((y2 - y1) * grow_y)
    x1, y1, x2, y2 = x1 - dx, y1 - dy, x2 + dx, y2 + dy
    if x2 - x1 < 4:
        x1, x2 = box[0], box[2]
    if y2 - y1 < 2:
        y1, y2 = box[1], box[3]
    return x1, y1, x2, y2


def merge_rects(rects: Sequence[Sequence[float]]) -> list[tuple[float, float, float, float]]:
    """Union of overlapping (x1, y1, x2, y2) rectangles until none overlap (a handful per frame:
    the motion gate's blobs, the windows around the open tracks)."""
    out = [list(r) for r in rects]
    changed = True
    while changed:
        changed = False
        merged: list[list[float]] = []
        for r in out:
            for o in merged:
                if r[0] < o[2] and o[0] < r[2] and r[1] < o[3] and o[1] < r[3]:
                    o[:] = [min(o[0], r[0]), min(o[1], r[1]), max(o[2], r[2]), max(o[3], r[3])]
                    changed = True
                    break
            else:
                merged.append(r)
        out = merged
    return [(a, b, c, d) for a, b, c, d in out]
