"""Reading only what can change the result: a track whose vote is settled is not read again until
its plate has grown enough to add detail.

A track is settled when its read event is out and its vote is beyond doubt: the voted text was read
`min_reads` times alike, its weakest position holds at least `min_confidence`, and those reads are at
least `min_share` of all the track's reads (no rival text close behind). Its boxes are still detected
every frame (they keep the track alive and its box current), but OCR is skipped while the box is
less than `growth` times as wide as at the track's last read: a plate that has grown that much shows
its characters with more pixels, and that read may still correct the vote. A settled plate that runs
into the frame's edge is not read either: a piece of the plate adds nothing, and without the many
reads skipped before it, such misreads would weigh more in the vote than when every frame is read.

With `tracking.update: on_change` the track's end publishes an update when the vote's confidence
moved by `update_gain` from the first read's: a track is not settled while a further read could
still make that difference (first read under 1 - update_gain and the vote not yet that far from
it), so skipping never drops an update that reading every frame would publish."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from alprd.geometry import Box, iou
from alprd.tracking.tracker import Track
from alprd.tracking.vote import Vote


@dataclass(frozen=True)
class SettleRule:
    min_reads: int = 3  # 0: never settled (every plate read every frame)
    min_confidence: float = 0.9
    min_share: float = 0.8
    growth: float = 1.3
    update_gain: float = 0.0  # on_change's update_min_gain; 0: updates do not depend on confidence


def is_settled(v: Vote | None, published: bool, rule: SettleRule, first_confidence: float = 1.0) -> bool:
    """Whether a track with vote `v` (its read event out, `published`, at `first_confidence`) need not
    be read again."""
    if rule.min_reads <= 0 or not published or v is None:
        return False
    if rule.update_gain > 0 and first_confidence + rule.update_gain <= 1.0 \
            and abs(v.confidence - first_confidence) < rule.update_gain:
        return False  # more reads could still raise the vote enough for an update event
    return (v.agreeing >= rule.min_reads and v.confidence >= rule.min_confidence
            and v.agreeing >= rule.min_share * v.reads)


def settled_track_of(box: Box, tracks: Sequence[Track], ts_ms: int, rule: SettleRule,
                     frame_size: tuple[int, int] = (0, 0), min_overlap: float = 0.3) -> Track | None:
    """The settled track that `box` continues, when its plate has not grown enough since the track's
    last read to be worth reading; None: read it. A box that overlaps two tracks' predictions is read
    (two plates side by side: the text tells them apart)."""
    near = [t for t in tracks if iou(t.predict(ts_ms), box) >= min_overlap]
    if len(near) != 1 or not near[0].settled:
        return None
    t = near[0]
    w, h = frame_size
    if w and h and (box[0] <= 1 or box[1] <= 1 or box[2] >= w - 1 or box[3] >= h - 1):
        return t  # cut by the frame's edge
    width = box[2] - box[0]
    if t.read_width <= 0 or width >= rule.growth * t.read_width:
        return None
    return t
