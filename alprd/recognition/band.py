"""Band-aware framing: a detector box that starts at or inside a European plate's blue band is grown
leftwards to the band's outer edge before the plate is cropped.

The detector often puts a European plate's left edge at the band's inner edge, or a little into the
first character, since the band does not look like text. crop_plate's padding then still shows that
character, but the second look's tighter boxes (recognizer.REREAD_BOXES) cut it, and two reads that
agree without it outvote the one that has it: IF99STK read F99STK, a thin I beside the band lost.
Framed from the band's outer edge, as the reader was trained on plates cut at their edge, every look
keeps the band and the character beside it. No model is involved (the reader is not asked to find
the band): a few numpy operations on a strip of the frame at the box's left edge.
"""

from __future__ import annotations

import numpy as np

# How far left of the box's left edge to look for the band, as a share of the box's width: the band is
# 8-9 % of a plate's width, so a box at its inner edge has it within 0.10; the rest is the plate's
# edge beyond it (a band must end there, or it is a blue car, not a band).
SCAN_LEFT = 0.3
# How far right of the box's left edge to look for the band's inner edge (a box that starts inside the
# band): the band must end inside the window, or it is a blue plate or a blue panel, not a band.
SCAN_RIGHT = 0.2
# A band column: blue in at least this share of the rows of the box's middle (the band's country code,
# in white, takes up to a third of them; the rows near the box's top and bottom edges are left out,
# where a box taller than the plate sees the car, or a Mercosur plate its blue top strip).
MIN_BLUE_ROWS = 0.5
# A band is this wide, as a share of the box's width: narrower is a blue character's stroke (dark blue
# characters on Californian plates), wider a blue car or sign beside the plate.
BAND_WIDTH = (0.04, 0.16)
# Right of a band the plate is white or yellow with black characters: more than this share of blue
# columns in the quarter of the box after it is a blue plate (its characters cut the blue into
# pieces of band width) or blue characters, not a band.
MAX_BLUE_AFTER = 0.1
# A pixel is band blue when its blue channel leads the others by this much and is this bright: the
# band's blue at dusk still leads by 30-100, white, grey and night (IR) pixels by under 15.
BLUE_LEAD = 30
BLUE_MIN = 50
# Boxes narrower than this (pixels) are left as they are: at a few pixels the band is not resolved.
MIN_BOX_WIDTH = 24


def blue_columns(strip: np.ndarray) -> np.ndarray:
    """For each column of a BGR strip, whether it is band blue in MIN_BLUE_ROWS of its rows."""
    s = strip.astype(np.int16)
    b, g, r = s[..., 0], s[..., 1], s[..., 2]
    blue = (b - np.maximum(g, r) >= BLUE_LEAD) & (b >= BLUE_MIN)
    return blue.mean(axis=0) >= MIN_BLUE_ROWS


def band_left_edge(frame: np.ndarray, box: tuple[int, int, int, int]) -> int | None:
    """The frame column where an EU band at the box's left edge begins (its outer edge), when the box
    starts right of it; None when there is no band there or the box already holds all of it."""
    h, w = frame.shape[:2]
    x1, y1, x2, y2 = (int(round(v)) for v in box[:4])
    bw, bh = x2 - x1, y2 - y1
    if bw < MIN_BOX_WIDTH or bh < 4:
        return None
    ya, yb = max(0, y1 + bh // 5), min(h, y2 - bh // 5)
    xa, xb = max(0, x1 - round(SCAN_LEFT * bw)), min(w, x1 + round(SCAN_RIGHT * bw))
    if yb - ya < 2 or xb - xa < 4:
        return None
    cols = blue_columns(frame[ya:yb, xa:xb])
    # Runs of band columns, [start, end) in the strip; the band is the rightmost that begins left of
    # the box (one that begins inside it is already in the crop).
    edges = np.flatnonzero(np.diff(np.concatenate(([0], cols.view(np.int8), [0]))))
    runs = [(int(s), int(e)) for s, e in zip(edges[::2], edges[1::2]) if xa + s < x1]
    if not runs:
        return None
    start, end = runs[-1]
    if (start == 0 and xa > 0) or (end == len(cols) and xb < w):
        return None  # blue up to where we looked: a blue car, plate or panel, not a band with two edges
    if not BAND_WIDTH[0] * bw <= end - start <= BAND_WIDTH[1] * bw:
        return None
    after = frame[ya:yb, xa + end:min(w, xa + end + bw // 4)]
    if after.shape[1] and blue_columns(after).mean() > MAX_BLUE_AFTER:
        return None
    # A band is as high as its plate: blue well above or below the box is a blue car's body.
    for ra, rb in ((y1 - bh * 3 // 5, y1 - bh // 4), (y2 + bh // 4, y2 + bh * 3 // 5)):
        ra, rb = max(0, ra), min(h, rb)
        if rb - ra >= 2 and blue_columns(frame[ra:rb, xa + start:xa + end]).mean() >= 0.5:
            return None
    return xa + start


def band_framed(frame: np.ndarray, box: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
    """The box grown leftwards to the outer edge of an EU band it starts at or in; else the box."""
    left = band_left_edge(frame, box)
    if left is None:
        return box
    return left, box[1], box[2], box[3]
