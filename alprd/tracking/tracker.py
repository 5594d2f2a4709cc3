"""Multi-plate tracker: box overlap plus a constant-velocity prediction, so a plate is followed
through a missed frame or two, and two plates side by side stay apart (each detection goes to at
most one track, best pairs first)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from difflib import SequenceMatcher

from alprd.geometry import Box, intersection, iou
from alprd.tracking.vote import Observation


@dataclass
class Track:
    id: int
    box: Box
    first_index: int
    first_ms: int
    last_index: int
    last_ms: int
    frames: int = 1
    velocity: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)  # box edges, px per ms
    observations: list[Observation] = field(default_factory=list)
    # Publishing state, kept by the pipeline.
    read_id: str = ""
    first_text: str = ""
    first_confidence: float = 0.0
    hit_plates: set[str] = field(default_factory=set)
    force_update: bool = False  # a hit came after the first read: the refined read must follow
    repeat: bool = False  # a later stretch of a pass that already has its event (see CameraPipeline)
    best_crop: object = None
    best_score: float = -1.0
    origin: Box = (0, 0, 0, 0)

    def __post_init__(self) -> None:
        self.origin = self.box

    def stationary(self, min_frames: int = 5, max_widths: float = 0.5) -> bool:
        """Seen a while and still where it was first seen: a parked vehicle. Measured from the first
        box, not from the velocity: detector jitter on a small plate looks like speed."""
        if self.frames < min_frames:
            return False
        # The larger width: the detector may box half a plate at a frame's edge, then all of it.
        w = max(1.0, self.box[2] - self.box[0], self.origin[2] - self.origin[0])
        dx = (self.box[0] + self.box[2] - self.origin[0] - self.origin[2]) / 2
        dy = (self.box[1] + self.box[3] - self.origin[1] - self.origin[3]) / 2
        return (dx * dx + dy * dy) ** 0.5 <= max_widths * w

    def predict(self, ts_ms: int) -> tuple[float, float, float, float]:
        if self.stationary():
            return tuple(map(float, self.box))  # type: ignore[return-value]
        dt = min(ts_ms - self.last_ms, 500)  # beyond half a second a guess is worse than the last box
        return tuple(self.box[i] + self.velocity[i] * dt for i in range(4))  # type: ignore[return-value]

    def fragment(self, box: Box, max_width: float = 0.7, min_inside: float = 0.8) -> bool:
        """`box` is part of this parked plate, not a plate of its own: a passing car hides the rest,
        and the detector boxes what is left (often two pieces). Narrower than the plate and almost all
        inside it; a passing car's own plate at the same distance is as wide as this one."""
        if not self.stationary():
            return False
        bw, tw = box[2] - box[0], self.box[2] - self.box[0]
        area = bw * (box[3] - box[1])
        if area <= 0 or bw >= max_width * tw:
            return False
        return intersection(box, self.box) >= min_inside * area

    def update(self, box: Box, index: int, ts_ms: int) -> None:
        if self.fragment(box):
            # Seen, but the box stays the whole plate: shrunk to a piece, the track would lose the
            # other piece (and the whole plate when the car has passed) to a new track.
            self.last_index, self.last_ms = index, ts_ms
            self.frames += 1
            return
        dt = ts_ms - self.last_ms
        if dt > 0:
            inst = tuple((box[i] - self.box[i]) / dt for i in range(4))
            # Smoothed: detector jitter must not throw the prediction off.
            a = 0.6 if self.frames > 1 else 1.0
            self.velocity = tuple(a * inst[i] + (1 - a) * self.velocity[i] for i in range(4))  # type: ignore[assignment]
        self.box, self.last_index, self.last_ms = box, index, ts_ms
        self.frames += 1


class Tracker:
    def __init__(self, min_iou: float = 0.1, max_center_dist: float = 0.8):
        self.min_iou = min_iou
        self.max_center_dist = max_center_dist  # in plate widths
        self.tracks: list[Track] = []
        self._next_id = 1
        self.started = 0

    def _score(self, t: Track, box: Box, ts_ms: int, text: str | None) -> float:
        p = t.predict(ts_ms)
        ov = iou(p, box)
        pw = max(1.0, p[2] - p[0])
        dx = ((box[0] + box[2]) - (p[0] + p[2])) / 2
        dy = ((box[1] + box[3]) - (p[1] + p[3])) / 2
        dist = (dx * dx + dy * dy) ** 0.5 / pw
        ratio = (box[2] - box[0]) / pw
        # Frames skipped (a busy unit on a live camera) or a track without a velocity yet (a fast
        # car's second sighting): the plate may be further from the prediction.
        # A parked plate does not move: a long gap there is occlusion, and a wide reach would let a
        # passing car's plate take its track.
        reach = self.max_center_dist
        if not t.stationary():
            reach *= min(3.0, max(1.0, (ts_ms - t.last_ms) / 100.0)) * (1.5 if t.frames == 1 else 1.0)
        # A piece of a parked plate overlaps it little and is much narrower, yet it is that plate:
        # when the rest is hidden in this frame, it must not start a track (and an event) of its own.
        fragment = t.fragment(box)
        if ov < self.min_iou and (dist > reach or not 0.5 <= ratio <= 2.0) and not fragment:
            return -1.0
        score = ov + 0.5 * max(0.0, 1.0 - dist / reach)
        if text and t.observations and not fragment:
            # The track's usual text tells apart two plates whose boxes touch; a clearly different
            # text (a fast car passing a slower one) must not take over a track that has read its plate
            # twice alike. A single odd read (half the plate hidden) is no reason to split, nor is the
            # read of a piece of a parked plate. Characters are matched in order, not by position: a
            # plate coming out from behind a car reads 4U87Z, then L4U87Z, and that is one plate.
            counts = Counter(o.text for o in t.observations)
            usual, n = counts.most_common(1)[0]
            same = SequenceMatcher(None, usual, text, autojunk=False).ratio()
            # Half the characters or fewer: a piece of the plate, the rest hidden by a car in front
            # (B37 of Q7HI637), read too short to tell one plate from another.
            piece = 2 * len(text) <= len(usual)
            score += 0.3 * same if same >= 0.5 or n < 2 or piece else -0.6
        return score

    def assign(self, boxes: list[Box], texts: list[str | None], index: int, ts_ms: int) -> list[Track]:
        """The track of each box (new tracks for boxes that continue none)."""
        pairs = []
        for ti, t in enumerate(self.tracks):
            for di, b in enumerate(boxes):
                s = self._score(t, b, ts_ms, texts[di])
                if s > 0:
                    pairs.append((-s, ti, di))
        pairs.sort()
        used_t: set[int] = set()
        out: list[Track | None] = [None] * len(boxes)
        for _, ti, di in pairs:
            if ti in used_t or out[di] is not None:
                continue
            used_t.add(ti)
            t = self.tracks[ti]
            t.update(boxes[di], index, ts_ms)
            out[di] = t
        for di, b in enumerate(boxes):
            if out[di] is None:
                # The other piece of a parked plate whose first piece already took the track.
                out[di] = next((t for t in self.tracks if t.last_ms == ts_ms and t.fragment(b)), None)
            if out[di] is None:
                t = Track(self._next_id, b, index, ts_ms, index, ts_ms)
                self._next_id += 1
                self.started += 1
                self.tracks.append(t)
                out[di] = t
        return [t for t in out if t is not None]

    def expire(self, index: int | None, ts_ms: int, max_missed_s: float, max_missed_frames: int,
               parked_missed_s: float = 0.0) -> list[Track]:
        """Remove and return tracks not seen for too long (video time or frames for recorded
        sources, the wall clock for live ones). A parked plate hidden by passing traffic keeps its
        track for `parked_missed_s`: it reappears where it was, and must not count as a new pass."""
        ended, kept = [], []
        for t in self.tracks:
            if parked_missed_s > 0 and t.stationary():
                late = ts_ms - t.last_ms > parked_missed_s * 1000
            else:
                late = ts_ms - t.last_ms > max_missed_s * 1000
                if index is not None and max_missed_frames > 0 and index - t.last_index > max_missed_frames:
                    late = True
            (ended if late else kept).append(t)
        self.tracks = kept
        return ended

    def drain(self) -> list[Track]:
        out, self.tracks = self.tracks, []
        return out
