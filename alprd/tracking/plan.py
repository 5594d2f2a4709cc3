"""Detection and reading that follow what is already known, not the frame rate.

A moving camera changes the whole frame every frame, so the motion gate saves nothing there. What
is known instead: the open tracks. Between whole-frame detections (every `full_frame_every` frames,
`full_frame_every_settled` when every open track is settled), the detector looks only in windows
around each open track's predicted position; a plate arriving elsewhere is found by the next
whole-frame pass, and a plate stays in view far longer than that. A track is settled once its first
read is out and its vote is sure; its plate is not read again until it has grown enough (it came
closer) to add information. Whole frames read every plate, so a new plate next to a settled one is
read there at the latest.

Recognition runs ahead of tracking on worker threads. So that a recorded video gives the same events
on every run, frame N is planned from the tracks as they were after frame N - `lag` was consumed (a
fixed lag, at least the number of workers, so a worker never waits on a frame that no one analyses),
predicted forward to frame N's time."""

from __future__ import annotations

import threading
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from alprd.geometry import Box, Frame, iou, merge_rects
from alprd.tracking.vote import Observation, vote

FULL_FRAME_SHARE = 0.6  # windows covering more than this of the frame: detect on all of it
WAIT_S = 2.0  # longest a worker waits for the frame its plan comes from (then: the whole frame)
# A track seen in fewer frames than this has no velocity worth the name yet (a plate entering the
# frame, a fast car's second sighting): its window is twice as wide, as the tracker's reach is.
YOUNG_FRAMES = 3


@dataclass(frozen=True)
class TrackView:
    """What planning needs of an open track, as it was when a frame was consumed."""

    box: Box
    velocity: tuple[float, float, float, float]  # box edges, px per ms
    last_ms: int
    stationary: bool
    settled: bool
    read_width: int  # plate width at its widest read
    young: bool = False  # seen in fewer than YOUNG_FRAMES frames: its velocity is still a guess

    def predict(self, ts_ms: int) -> tuple[float, float, float, float]:
        """Constant velocity, as Track.predict (half a second at most)."""
        if self.stationary:
            return tuple(map(float, self.box))  # type: ignore[return-value]
        dt = min(max(0, ts_ms - self.last_ms), 500)
        return tuple(self.box[i] + self.velocity[i] * dt for i in range(4))  # type: ignore[return-value]


@dataclass(frozen=True)
class WorkPlan:
    full: bool  # whole-frame detection (the motion gate's regions, if any, still apply)
    windows: tuple[Box, ...] = ()  # when not full: detect only here (none: no detection at all)
    settled: tuple[tuple[Box, int], ...] = ()  # predicted box, width at last read: no OCR unless grown


FULL = WorkPlan(True)


def is_settled(observations: list[Observation], published: bool, min_reads: int, min_confidence: float,
               min_share: float) -> bool:
    """The track's read is out and more reads would not change it: `min_reads` reads agree on the
    voted text, they are at least `min_share` of the track's reads, and both the vote's weakest
    position and those reads' mean confidence are at least `min_confidence` (the vote's confidence
    grows with the number of reads, so a few unsure reads alike would pass on it alone)."""
    if not published or not observations:
        return False
    v = vote(observations)
    if v is None or v.agreeing < min_reads or v.agreeing / v.reads < min_share or v.confidence < min_confidence:
        return False
    agreeing = [o.confidence for o in observations if o.text == v.text]
    return sum(agreeing) / len(agreeing) >= min_confidence


def full_frame_interval(views: list[TrackView], every: int, every_settled: int) -> int:
    """Whole-frame detection every this many frames: often while nothing is open or a track is
    unsure (a new plate may be close behind), seldom when every open track is settled."""
    if views and all(v.settled for v in views):
        return every_settled
    return every


def window(box: tuple[float, float, float, float], margin: float, w: int, h: int) -> Box:
    """`box` widened by `margin` plate widths on every side (a plate's surroundings, and room for the
    prediction to be off), within the frame."""
    pad = margin * max(1.0, box[2] - box[0])
    return (max(0, int(box[0] - pad)), max(0, int(box[1] - pad)),
            min(w, int(box[2] + pad) + 1), min(h, int(box[3] + pad) + 1))


def plan(index: int, ts_ms: int, views: list[TrackView] | None, w: int, h: int, *, every: int,
         every_settled: int, margin: float, since_full: int | None = None) -> WorkPlan:
    """Frame `index`'s plan from the open tracks (None: not known, the whole frame). `since_full`
    (live cameras): frame numbers since the last whole-frame plan, which also makes one once it
    reaches the interval, since a live source's dropped frames may never land on a multiple of it."""
    interval = full_frame_interval(views or [], every, every_settled)
    if views is None or index % interval == 0 or (since_full is not None and since_full >= interval):
        return FULL
    predicted = [v.predict(ts_ms) for v in views]
    wins = merge_rects([window(p, margin * (2 if v.young else 1), w, h) for p, v in zip(predicted, views)])
    if sum((r[2] - r[0]) * (r[3] - r[1]) for r in wins) > FULL_FRAME_SHARE * w * h:
        return FULL
    settled = tuple((tuple(int(round(c)) for c in p), v.read_width)
                    for p, v in zip(predicted, views) if v.settled)
    return WorkPlan(False, tuple(wins), settled)  # type: ignore[arg-type]


def skip_read(box: Box, settled: tuple[tuple[Box, int], ...], growth: float, min_iou: float = 0.3) -> bool:
    """The plate in `box` is a settled track's (it overlaps the predicted box) and is not yet
    `growth` times as wide as at its last read: reading it again adds nothing."""
    width = box[2] - box[0]
    for pbox, read_width in settled:
        if iou(box, pbox) >= min_iou and width < growth * read_width:
            return True
    return False


class WorkPlanner:
    """Per camera: the pipeline records the open tracks after each consumed frame; the recognizer
    asks for a frame's plan, made from the tracks `lag` frames earlier."""

    def __init__(self, *, lag: int, every: int, every_settled: int, margin: float, growth: float,
                 live: bool = False):
        self.lag, self.every, self.every_settled = lag, every, every_settled
        # A live source keeps only its newest frame, so the frame numbers analysed can fall into a
        # stride that misses every multiple of the interval: there, the gap since the last
        # whole-frame plan decides too (a recorded file keeps the index rule, the same on every run).
        self.live = live
        self._last_full = -1
        self.margin, self.growth = margin, growth
        self.counts: Counter[str] = Counter()
        self._cond = threading.Condition()
        self._views: OrderedDict[int, list[TrackView]] = OrderedDict()  # consumed frame -> open tracks
        self._consumed = -1

    def consumed(self, index: int, views: list[TrackView]) -> None:
        """Called by the pipeline, in frame order, for every frame it consumed or withdrew."""
        with self._cond:
            self._consumed = max(self._consumed, index)
            self._views[index] = views
            while len(self._views) > 4 * self.lag + 64:
                self._views.popitem(last=False)
            self._cond.notify_all()

    def _views_at(self, index: int) -> list[TrackView] | None:
        """The open tracks after the last consumed frame at or before `index`."""
        for i in reversed(self._views):
            if i <= index:
                return self._views[i]
        return None

    def plan_for(self, frame: Frame) -> WorkPlan:
        src = frame.index - self.lag
        if src < 0:
            return FULL
        with self._cond:
            if not self._cond.wait_for(lambda: self._consumed >= src, WAIT_S):
                self.counts["plan_late"] += 1  # tracking fell far behind: safe, not deterministic
                return FULL
            views = self._views_at(src)
        h, w = frame.image.shape[:2]
        with self._cond:
            since = frame.index - self._last_full if self.live else None
        p = plan(frame.index, frame.timestamp_ms, views, w, h, every=self.every, every_settled=self.every_settled,
                 margin=self.margin, since_full=since)
        with self._cond:
            self.counts["full_frames" if p.full else "window_frames"] += 1
            if p.full:
                self._last_full = max(self._last_full, frame.index)
        return p

    def skipper(self, p: WorkPlan) -> Callable[[Box], bool] | None:
        """The recognizer's `skip` for a frame planned as `p` (counted as ocr_skipped)."""
        if not p.settled:
            return None

        def skip(box: Box) -> bool:
            if not skip_read(box, p.settled, self.growth):
                return False
            with self._cond:
                self.counts["ocr_skipped"] += 1
            return True

        return skip

    def snapshot(self) -> dict[str, int]:
        with self._cond:
            return dict(self.counts)
