"""Detection that follows what is already known: between full-frame detections, the detector looks
only in windows around each open track's predicted position.

A plate stays in view for many frames, so a vehicle that arrives between two full-frame passes is
found at the next one (`tracking.full_frame_every` frames at most); a plate already tracked is found
every frame in its window, at the same scale as in the whole frame, so it is read as often as
before. Which frames get the whole frame depends on the frame index alone, so the analysis workers
can run those ahead of tracking; the windows need the tracks, so they are detected in frame order."""

from __future__ import annotations

from collections.abc import Sequence

from alprd.geometry import Box
from alprd.tracking.tracker import Track

FULL_FRAME_SHARE = 0.6  # windows covering more than this of the frame: the whole frame costs no more


def full_frame(index: int, every: int) -> bool:
    """Whether frame `index` is detected on the whole frame (every `every`th; 1 or less: all)."""
    return every <= 1 or index % every == 0


def plan_windows(tracks: Sequence[Track], ts_ms: int, width: int, height: int,
                 margin_widths: float = 1.0, margin_heights: float = 2.0, min_margin: int = 48) -> tuple[Box, ...] | None:
    """Windows (frame pixels) around each track's predicted box at `ts_ms`: the box grown by
    `margin_widths` plate widths left and right and `margin_heights` plate heights up and down (the
    plate moves and grows between frames), overlapping ones merged. None: the windows would cover
    most of the frame, detect on all of it. Empty: no track, nothing to look for."""
    rects: list[list[int]] = []
    for t in tracks:
        x1, y1, x2, y2 = t.predict(ts_ms)
        # A track seen once or twice has no velocity worth the name yet: a wider reach.
        young = 2.0 if t.frames < 3 else 1.0
        mx = max(min_margin, young * margin_widths * (x2 - x1))
        my = max(min_margin, margin_heights * (y2 - y1))
        r = [max(0, int(x1 - mx)), max(0, int(y1 - my)), min(width, int(x2 + mx)), min(height, int(y2 + my))]
        if r[2] - r[0] >= 8 and r[3] - r[1] >= 8:
            rects.append(r)
    merged = _merge(rects)
    if sum((r[2] - r[0]) * (r[3] - r[1]) for r in merged) > FULL_FRAME_SHARE * width * height:
        return None
    return tuple((r[0], r[1], r[2], r[3]) for r in merged)


def cut_by_window(box: Box, windows: Sequence[Box], width: int, height: int, slack: int = 2) -> bool:
    """Whether `box` touches an edge of the window it lies in where that edge is not the frame's:
    the plate goes on beyond the window, and the box (and its read) would be a piece of it."""
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    for w in windows:
        if w[0] <= cx <= w[2] and w[1] <= cy <= w[3]:
            return ((w[0] > 0 and box[0] <= w[0] + slack) or (w[1] > 0 and box[1] <= w[1] + slack)
                    or (w[2] < width and box[2] >= w[2] - slack) or (w[3] < height and box[3] >= w[3] - slack))
    return False


def _merge(rects: list[list[int]]) -> list[list[int]]:
    """Union of overlapping rectangles until none overlap (one per open track at most)."""
    changed = True
    while changed:
        changed = False
        out: list[list[int]] = []
        for r in rects:
            for o in out:
                if r[0] < o[2] and o[0] < r[2] and r[1] < o[3] and o[1] < r[3]:
                    o[0], o[1], o[2], o[3] = min(o[0], r[0]), min(o[1], r[1]), max(o[2], r[2]), max(o[3], r[3])
                    changed = True
                    break
            else:
                out.append(r[:])
        rects = out
    return rects
