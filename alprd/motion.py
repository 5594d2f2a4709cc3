"""Motion gating and regions of interest: the detector runs only where and when something moved.

A fixed camera looking at a road sees nothing new most of the time. `MotionDetector` compares each
frame with the previous one at low resolution (about 240 pixels wide, blurred so sensor noise and
compression do not count) inside the camera's ROI, and says whether to analyse the frame and which
parts of it. It runs in the source's thread, in frame order, so its decisions do not depend on which
worker happens to analyse a frame first. `MotionGate` is the pipeline's hook: it drops static
frames, and (live sources only) frames that waited too long to be analysed, and counts both.

Safety over speed: the whole frame is analysed on the first frame, on a global change (exposure,
headlights, a camera bump), at least every `keyframe_s`, and for `hold_frames` after motion stops."""

from __future__ import annotations

import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

import cv2
import numpy as np

from alprd.geometry import Box, Frame, Motion, merge_rects

if TYPE_CHECKING:
    from alprd.recognition.base import Detection, PlateRead
    from alprd.recognition.recognizer import Recognizer, Timings
    from alprd.tracking.plan import WorkPlanner

SMALL_WIDTH = 240  # width of the frame the motion test looks at
GLOBAL_CHANGE = 0.5  # more than this fraction of the ROI changed: lighting, not traffic
FULL_FRAME_SHARE = 0.6  # regions covering more than this of the frame: cheaper to detect on all of it
REGION_MARGIN = 0.05  # of the frame width, added around what moved so a plate's surroundings are seen


class MotionSettings(Protocol):
    """What the motion test reads from a camera's `motion:` section (alprd.config.MotionConfig)."""

    @property
    def threshold(self) -> int: ...
    @property
    def min_area(self) -> float: ...
    @property
    def hold_frames(self) -> int: ...
    @property
    def keyframe_s(self) -> float: ...
    @property
    def regions(self) -> bool: ...


def roi_polygon(roi: tuple[tuple[float, ...], ...], w: int, h: int) -> np.ndarray | None:
    if not roi:
        return None
    return np.array([[round(x * (w - 1)), round(y * (h - 1))] for x, y in roi], np.int32)


def point_in_roi(poly: np.ndarray | None, x: float, y: float) -> bool:
    return poly is None or cv2.pointPolygonTest(poly, (float(x), float(y)), False) >= 0


class MotionDetector:
    """In-order motion test for one camera's frames. `threshold`: grey-level change (0-255) of a
    low-resolution pixel that counts as motion; `min_area`: the fraction of the ROI that must change;
    `hold_frames`: frames still analysed after motion stops; `keyframe_s`: the whole frame at least
    this often (0: never); `regions`: detect only around what moved."""

    def __init__(self, *, threshold: int, min_area: float, hold_frames: int, keyframe_s: float, regions: bool,
                 roi: tuple[tuple[float, ...], ...] = ()):
        self.threshold, self.min_area, self.hold_frames = threshold, min_area, hold_frames
        self.keyframe_s, self.regions = keyframe_s, regions
        self.roi = roi
        self._prev: np.ndarray | None = None
        self._mask: np.ndarray | None = None
        self._mask_area = 0
        self._step = 1
        self._shape: tuple[int, int] = (0, 0)
        self._hold = 0
        self._last_regions: tuple[Box, ...] | None = None
        self._last_full_ms: int | None = None

    @classmethod
    def from_settings(cls, s: MotionSettings, roi: tuple[tuple[float, ...], ...] = ()) -> MotionDetector:
        return cls(threshold=s.threshold, min_area=s.min_area, hold_frames=s.hold_frames, keyframe_s=s.keyframe_s,
                   regions=s.regions, roi=roi)

    def _setup(self, w: int, h: int) -> None:
        self._shape = (w, h)
        self._step = max(1, round(w / SMALL_WIDTH))
        sh, sw = len(range(0, h, self._step)), len(range(0, w, self._step))
        self._mask = None
        self._mask_area = sh * sw
        poly = roi_polygon(self.roi, sw, sh)
        if poly is not None:
            self._mask = np.zeros((sh, sw), np.uint8)
            cv2.fillPoly(self._mask, [poly], 255)
            self._mask_area = max(1, cv2.countNonZero(self._mask))
        self._prev = None

    def analyse(self, image: np.ndarray, t_ms: int) -> Motion:
        t0 = time.perf_counter()
        m = self._analyse(image, t_ms)
        if m.run and m.regions is None:
            self._last_full_ms = t_ms
        return Motion(m.run, m.reason, m.changed, m.regions, (time.perf_counter() - t0) * 1000)

    def _analyse(self, image: np.ndarray, t_ms: int) -> Motion:
        h, w = image.shape[:2]
        if (w, h) != self._shape:
            self._setup(w, h)
        # A strided sample is ~10x cheaper than an area resize of a 1080p frame; the blur that
        # follows removes the aliasing and pixel noise the sample keeps.
        small = image[::self._step, ::self._step]
        small = cv2.cvtColor(small, cv2.COLOR_BGR2GRAY) if small.ndim == 3 else np.ascontiguousarray(small)
        small = cv2.GaussianBlur(small, (5, 5), 0)
        prev, self._prev = self._prev, small
        if prev is None:
            return Motion(True, "first", 1.0, None)
        diff = cv2.absdiff(small, prev)
        _, moved = cv2.threshold(diff, self.threshold, 255, cv2.THRESH_BINARY)
        if self._mask is not None:
            moved = cv2.bitwise_and(moved, self._mask)
        n = cv2.countNonZero(moved)
        changed = n / self._mask_area
        if changed > GLOBAL_CHANGE:
            self._hold = self.hold_frames
            self._last_regions = None
            return Motion(True, "global", changed, None)
        if changed >= self.min_area and n >= 3:
            self._hold = self.hold_frames
            regions = self._regions(moved, w, h) if self.regions else None
            self._last_regions = regions
            return Motion(True, "moving", changed, regions)
        if self._hold > 0:
            self._hold -= 1
            return Motion(True, "hold", changed, self._last_regions)
        if self.keyframe_s > 0 and (self._last_full_ms is None
                                    or t_ms - self._last_full_ms >= self.keyframe_s * 1000):
            return Motion(True, "keyframe", changed, None)
        return Motion(False, "static", changed, ())

    def _regions(self, moved: np.ndarray, w: int, h: int) -> tuple[Box, ...] | None:
        s = self._step
        moved = cv2.dilate(moved, np.ones((5, 5), np.uint8), iterations=2)
        count, _, stats, _ = cv2.connectedComponentsWithStats(moved, connectivity=8)
        margin = int(REGION_MARGIN * w)
        rects = []
        for i in range(1, count):
            x, y, bw, bh, _area = stats[i]
            rects.append([max(0, x * s - margin), max(0, y * s - margin),
                          min(w, (x + bw) * s + margin), min(h, (y + bh) * s + margin)])
        merged = merge_rects(rects)
        if not merged or sum((r[2] - r[0]) * (r[3] - r[1]) for r in merged) > FULL_FRAME_SHARE * w * h:
            return None
        return tuple((int(a), int(b), int(c), int(d)) for a, b, c, d in merged)


class MotionGate:
    """The pipeline's gate, called at the start of `process()`: False means "do not analyse".
    Counts: analysed, static (nothing moved), late (live frame older than max_lag_ms), and of the
    analysed ones how many were detected in regions only."""

    def __init__(self, live: bool = False, max_lag_ms: int = 0, clock=time.time,
                 newest: Callable[[], int] | None = None):
        self.live, self.max_lag_ms, self._clock = live, max_lag_ms, clock
        self._newest = newest  # index of the newest frame the live source has captured
        self.counts: Counter[str] = Counter()
        self._lock = threading.Lock()
        # Regions for the recognizer, keyed by the frame's image object: the pipeline passes the
        # image, not the frame, to the recognizer; workers may analyse several frames at once.
        self._hints: OrderedDict[int, tuple[np.ndarray, tuple[Box, ...]]] = OrderedDict()

    def admit(self, frame: Frame) -> bool:
        # The unit fell behind a live camera: skip a frame that waited too long, but only when a newer
        # one is already there to take its place, so a unit slower than max_lag_ms still reads.
        if (self.live and self.max_lag_ms and self._newest is not None and frame.index < self._newest()
                and self._clock() * 1000 - frame.timestamp_ms > self.max_lag_ms):
            self._count("late")
            return False
        m = frame.motion
        if m is not None and not m.run:
            self._count("static")
            return False
        self._count("analysed")
        if m is not None and m.regions is not None:
            with self._lock:
                self.counts["regions"] += 1
                self._hints[id(frame.image)] = (frame.image, m.regions)
                while len(self._hints) > 64:  # a pipeline that never asked: forget, do not leak frames
                    self._hints.popitem(last=False)
        return True

    def regions_for(self, image: np.ndarray) -> tuple[Box, ...] | None:
        with self._lock:
            hint = self._hints.pop(id(image), None)
        if hint is None or hint[0] is not image:
            return None
        return hint[1]

    def _count(self, key: str) -> None:
        with self._lock:
            self.counts[key] += 1

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self.counts)


class RegionRecognizer:
    """A camera's view of the shared Recognizer: detects only in the regions the gate found for a
    frame (or, given the frame and a planner, only around the camera's open tracks on the frames
    between whole-frame passes, without reading settled plates), and drops plates whose centre lies
    outside the camera's ROI."""

    def __init__(self, base: Recognizer, gate: MotionGate | None = None, roi: tuple[tuple[float, ...], ...] = (),
                 planner: WorkPlanner | None = None):
        self.base, self.gate, self.roi, self.planner = base, gate, roi, planner
        self._poly: dict[tuple[int, int], np.ndarray | None] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self.base, name)

    @property
    def model_versions(self) -> dict[str, str]:
        return self.base.model_versions

    def recognize(self, frame: np.ndarray, timings: Timings | None = None) -> list[PlateRead]:
        return self.analyse(frame, timings)[1]

    @property
    def plans(self) -> bool:
        """The pipeline passes the frame itself (`at`): its index and time are what a plan needs."""
        return self.planner is not None

    def analyse(self, frame: np.ndarray, timings: Timings | None = None,
                at: Frame | None = None) -> tuple[list[Detection], list[PlateRead]]:
        regions = self.gate.regions_for(frame) if self.gate is not None else None
        return self.analyse_in(frame, regions, timings, at)

    def analyse_in(self, frame: np.ndarray, regions: tuple[Box, ...] | None,
                   timings: Timings | None = None, at: Frame | None = None) -> tuple[list[Detection], list[PlateRead]]:
        skip = None
        if self.planner is not None and at is not None:
            p = self.planner.plan_for(at)
            if not p.full:
                if not p.windows:
                    return [], []  # nothing open, and not a whole-frame pass: nothing to look for
                regions = p.windows
            skip = self.planner.skipper(p)
        extra = {"skip": skip} if skip is not None else {}
        dets, reads = self.base.analyse(frame, timings, regions=regions, **extra)
        if self.roi:
            h, w = frame.shape[:2]
            if (w, h) not in self._poly:
                self._poly[(w, h)] = roi_polygon(self.roi, w, h)
            poly = self._poly[(w, h)]

            def inside(box: Box) -> bool:
                return point_in_roi(poly, (box[0] + box[2]) / 2, (box[1] + box[3]) / 2)

            dets = [d for d in dets if inside(d.box)]
            reads = [r for r in reads if inside(r.box)]
        return dets, reads
