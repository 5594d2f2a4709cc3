"""One camera's frames -> outbound messages. The daemon and the bench both drive this, so what a
bench run reports is exactly what a unit would publish.

Recognition runs in parallel (worker threads), but tracking consumes the camera's frames one at a
time in the order the source produced them (a small reorder buffer), so a recorded source gives the
same events on every run and at any speed. Per vehicle pass: one `read` event ("event": "first") as
soon as the vote is confident, then at most one "update" with the same read_id when the track ends.
A hotlist match publishes a `hit` at once, ahead of its read."""

from __future__ import annotations

import logging
import threading
from collections import Counter, deque
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from alprd.config import FormatsConfig, TrackingConfig
from alprd.formats.formats import FormatChecker, FormatResult
from alprd.geometry import Frame, intersection
from alprd.gps.provider import LocationProvider
from alprd.hotlist.hotlist import Hotlist, HotlistMatch, canonical
from alprd.motion import MotionGate
from alprd.publish.payload import iso_ms, read_payload, uuid7
from alprd.recognition.base import PlateRead
from alprd.recognition.preprocess import crop_plate
from alprd.recognition.recognizer import Recognizer
from alprd.tracking.plan import YOUNG_FRAMES, TrackView, WorkPlanner, is_settled
from alprd.tracking.tracker import Track, Tracker
from alprd.tracking.vote import Observation, Vote, observation_weight, vote

log = logging.getLogger(__name__)

HIT_SCHEMA = "alprd.hit/1"
# A piece of a plate that traffic half hides reads as two or three characters (OpenALPR drops every
# read under four). Real three-character vanity plates exist, so a short plate is kept, but not on
# the word of a single frame.
SHORT_PLATE_CHARS = 4
_END = object()


@dataclass(frozen=True)
class Outbound:
    """A message for the spool: `kind` is the last topic segment (`read`, `hit`)."""

    kind: str
    camera: str
    payload: dict[str, Any]
    read_id: str
    timestamp_ms: int


@dataclass
class _Pass:
    """A vehicle pass that has its read event: what a later stretch of the same plate inherits."""

    read_id: str
    text: str
    confidence: float
    hit_plates: set[str]
    last_ms: int


@dataclass(frozen=True)
class _Analysed:
    frame: Frame
    reads: list[tuple[PlateRead, float, np.ndarray | None]]  # read, sharpness, crop (if kept)
    boxes: list[tuple[int, int, int, int]]  # every detection, read or not: keeps tracks alive


def _sharpness(crop: np.ndarray) -> float:
    if crop is None or not crop.size:
        return 0.0
    grey = cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY) if crop.ndim == 3 else crop
    return float(cv2.Laplacian(grey, cv2.CV_32F).var())


class CameraPipeline:
    def __init__(self, camera: str, recognizer: Recognizer, unit_id: str, include_crop: bool = False,
                 tracking: TrackingConfig | None = None, formats: FormatsConfig | None = None,
                 hotlist: Hotlist | None = None, live: bool = False,
                 gate: MotionGate | None = None, location: LocationProvider | None = None,
                 planner: WorkPlanner | None = None):
        self.camera = camera
        self.recognizer = recognizer
        self.unit_id = unit_id
        self.include_crop = include_crop
        self.tracking = tracking or TrackingConfig()
        fm = formats or FormatsConfig()
        self.formats = FormatChecker(fm.presets, fm.custom, fm.fix_confusables, fm.max_fixes)
        self.reject_unmatched = fm.reject_unmatched
        self.hotlist = hotlist
        self.live = live
        self.gate = gate  # motion/ROI gate (alprd/motion.py): static and late frames are not analysed
        self.location = location  # GPS or fixed position (alprd/gps): a `gps` object on every read
        self.planner = planner  # detection and reading that follow the open tracks (alprd/tracking/plan.py)
        self._settled: dict[int, tuple[int, int, bool]] = {}  # track id -> (reads, last read frame, settled)
        self.tracker = Tracker(self.tracking.min_iou)
        self.counts: Counter[str] = Counter()
        self._lock = threading.Lock()
        # Reorder buffer: frame indices in the order the feeder admitted them, and finished analyses.
        self._admitted: deque[Any] = deque()  # frame indices, and _END where a source ended
        self._admitted_set: set[int] = set()
        self._done: dict[int, _Analysed | None] = {}
        self._last_shape: tuple[int, ...] = (0, 0, 3)
        self._passes: dict[str, _Pass] = {}  # canonical plate -> its latest pass (repeat_window_s)
        self._now_ms = 0  # the camera's clock: the frame being consumed, or the wall clock in tick() (live)

    # --- frame order ------------------------------------------------------------------------

    def admit(self, frame: Frame) -> None:
        """The feeder hands this camera's frames over in source order: tracking will consume them in
        that order, whichever worker finishes first. Frames never admitted (the bench, which calls
        process() in order) are consumed as they come."""
        with self._lock:
            self._admitted.append(frame.index)
            self._admitted_set.add(frame.index)

    def source_ended(self) -> list[Outbound]:
        """The source yields no more frames (a recorded file ran out): once the frames before this
        point are consumed, every track ends, as it would when the vehicles drove out of view."""
        with self._lock:
            self._admitted.append(_END)
            return self._locate(self._release())

    def withdraw(self, frame: Frame) -> list[Outbound]:
        """An admitted frame that will not be processed (shutdown before it was queued)."""
        with self._lock:
            if frame.index in self._admitted_set:
                self._done[frame.index] = None
            else:
                self._note(frame.index)  # consumed as it comes (not admitted): nothing changed
            return self._locate(self._release())

    def process(self, frame: Frame) -> list[Outbound]:
        """Called from worker threads, possibly for several frames of this camera at once."""
        if self.location is not None:
            self.location.observe(frame)
        if self.gate is not None and not self.gate.admit(frame):
            # Nothing moved (or a live frame came too late): not analysed, and not a "miss" for the
            # tracker either, whose tracks end on time, not on skipped frames.
            return self.withdraw(frame)
        analysed: _Analysed | None = None
        try:
            analysed = self._analyse(frame)
        finally:
            # Even when recognition fails, the slot is released, or the camera's later frames would wait forever.
            with self._lock:
                if frame.index in self._admitted_set:
                    self._done[frame.index] = analysed
                    out = self._release()
                elif analysed is not None:
                    out = self._consume(analysed)
                else:
                    out = []
                    self._note(frame.index)
        return self._locate(out)

    def _analyse(self, frame: Frame) -> _Analysed:
        if getattr(self.recognizer, "plans", False):  # a RegionRecognizer with a planner (or the bench's wrap of one)
            dets, reads = self.recognizer.analyse(frame.image, at=frame)  # type: ignore[call-arg]
        else:
            dets, reads = self.recognizer.analyse(frame.image)
        kept = []
        # Surest read first, as before reads were ranked by plate likelihood (alprd/recognition/rank.py):
        # _distinct lets the first box win an overlap, and that choice was not what the ranking measured.
        reads = sorted(reads, key=lambda r: -r.confidence)
        for r in map(self.formats.fitted, reads):  # each frame's read fitted to the camera's layouts before the vote
            crop = crop_plate(frame.image, r.box)
            kept.append((r, _sharpness(crop), crop if self.include_crop else None))
        return _Analysed(frame, kept, [d.box for d in dets])

    def _release(self) -> list[Outbound]:
        out: list[Outbound] = []
        while self._admitted and (self._admitted[0] is _END or self._admitted[0] in self._done):
            idx = self._admitted.popleft()
            if idx is _END:
                out += self._end(self.tracker.drain())
                continue
            self._admitted_set.discard(idx)
            a = self._done.pop(idx)
            if a is not None:
                out += self._consume(a)
            else:
                self._note(idx)
        return out

    def _note(self, index: int) -> None:
        """The planner learns the open tracks as they are once frame `index` is consumed."""
        if self.planner is None:
            return
        tc = self.tracking
        views = []
        for t in self.tracker.tracks:
            key = (len(t.observations), t.observations[-1].frame_index if t.observations else -1)
            cached = self._settled.get(t.id)
            if cached is None or cached[:2] != key or (t.read_id and not cached[2]):
                settled = is_settled(t.observations, bool(t.read_id), tc.settle_reads,
                                     tc.settle_confidence, tc.settle_share)
                self._settled[t.id] = cached = (*key, settled)
            widest = max((o.box[2] - o.box[0] for o in t.observations), default=t.box[2] - t.box[0])
            views.append(TrackView(t.box, t.velocity, t.last_ms, t.stationary(), cached[2], widest,
                                   t.frames < YOUNG_FRAMES))
        if len(self._settled) > 4 * len(self.tracker.tracks) + 64:  # forget ended tracks
            open_ids = {t.id for t in self.tracker.tracks}
            self._settled = {k: v for k, v in self._settled.items() if k in open_ids}
        self.planner.consumed(index, views)

    # --- tracking and events (under self._lock) ---------------------------------------------

    def _consume(self, a: _Analysed) -> list[Outbound]:
        frame = a.frame
        self._last_shape = frame.image.shape
        self._now_ms = frame.timestamp_ms
        self.counts["frame_reads"] += len(a.reads)
        out: list[Outbound] = []
        if not self.tracking.enabled:
            for r, sharp, crop in a.reads:
                obs = self._observation(r, sharp, frame)
                t = Track(0, r.box, frame.index, frame.timestamp_ms, frame.index, frame.timestamp_ms)
                t.observations.append(obs)
                t.best_crop = crop
                out += self._end_of_track(t)
            return out
        out += self._end(self.tracker.expire(frame.index, frame.timestamp_ms, self.tracking.max_missed_s,
                                             self.tracking.max_missed_frames, self.tracking.parked_missed_s))
        by_box = {r.box: (r, sharp, crop) for r, sharp, crop in a.reads}
        boxes = _distinct([r.box for r, _, _ in a.reads] + list(a.boxes))
        texts = [by_box[b][0].text if b in by_box else None for b in boxes]
        tracks = self.tracker.assign(boxes, texts, frame.index, frame.timestamp_ms)
        for b, t in zip(boxes, tracks):
            if b not in by_box:
                continue
            r, sharp, crop = by_box[b]
            obs = self._observation(r, sharp, frame)
            t.observations.append(obs)
            if len(t.observations) > self.tracking.max_observations:
                # Keep the heaviest: the plate near the camera matters more than the first far sightings.
                t.observations.remove(min(t.observations, key=lambda o: o.weight * o.confidence))
            score = obs.weight * obs.confidence
            if score > t.best_score:
                t.best_score, t.best_crop = score, crop
            if not t.read_id:
                out += self._maybe_first(t, obs, crop)
            elif self.hotlist and not t.hit_plates:
                out += self._late_hit(t, obs, crop)
        self._note(frame.index)
        return out

    def _observation(self, r: PlateRead, sharp: float, frame: Frame) -> Observation:
        return Observation(r.text, r.char_confidences, r.confidence,
                           observation_weight(r.box, sharp, r.detection_confidence), frame.index,
                           frame.timestamp_ms, r.box, r.detection_confidence)

    def _maybe_first(self, t: Track, obs: Observation, crop: np.ndarray | None) -> list[Outbound]:
        v = vote(t.observations)
        if v is None:
            return []
        fmt = self.formats.check(v.text, v.char_confidences)
        if fmt is None:
            return []  # wait: more frames may fix it; counted at the track's end if never
        confident = (v.agreeing >= self.tracking.first_read_min_frames
                     and v.confidence >= self.tracking.first_read_min_confidence)
        # A plate on the hotlist goes out on the first read that matches: an alert must not wait
        # for more frames (it still needs the end-of-track floor and a valid format).
        if not confident and not (self.hotlist and v.confidence >= self.tracking.end_read_min_confidence
                                  and self.hotlist.match(fmt.text)):
            return []
        return self._publish(t, v, fmt, obs, crop, "first")

    def _late_hit(self, t: Track, obs: Observation, crop: np.ndarray | None) -> list[Outbound]:
        """The first read did not match the hotlist, but the vote has moved to a listed plate: the hit
        goes out now, and the track's refined read follows at its end whatever the update mode."""
        v = vote(t.observations)
        fmt = self.formats.check(v.text, v.char_confidences) if v else None
        if v is None or fmt is None or v.confidence < self.tracking.end_read_min_confidence:
            return []
        match = self.hotlist.match(fmt.text) if self.hotlist else None
        if match is None:
            return []
        t.hit_plates.add(match.entry.plate)
        t.force_update = True
        self.counts["hits"] += 1
        read = PlateRead(fmt.text, v.confidence, v.char_confidences, obs.box, obs.detection_confidence)
        payload = read_payload(read, read_id=t.read_id, unit=self.unit_id, camera=self.camera,
                               timestamp_ms=obs.timestamp_ms, frame_index=obs.frame_index,
                               frame_shape=self._last_shape, models=self.recognizer.model_versions, crop=crop,
                               extra={"event": "update", "track": self._track_info(t, v, False),
                                      "format": fmt.format or None, "hit": _hit_summary(match)})
        log.info("camera %s: hotlist hit (priority %d), read %s", self.camera, match.entry.priority, t.read_id)
        return [self._hit(match, payload)]

    def _end(self, tracks: list[Track]) -> list[Outbound]:
        out: list[Outbound] = []
        for t in tracks:
            out += self._end_of_track(t)
        return out

    def _end_of_track(self, t: Track) -> list[Outbound]:
        v = vote(t.observations)
        if v is None:
            self.counts["tracks_unread"] += 1  # detected, never read confidently
            return []
        self.counts["tracks"] += 1
        fmt = self.formats.check(v.text, v.char_confidences)
        if fmt is None and not self.reject_unmatched:
            fmt = FormatResult(v.text, "", ())
        best = self._best(t, v)
        if t.read_id:
            self._remember(t, t.first_text, t.first_confidence)
            if t.repeat and not t.force_update:
                return []  # the pass's first stretch already had its update (if any)
            mode = self.tracking.update
            if fmt is None or (mode == "never" and not t.force_update):
                return []
            changed = fmt.text != t.first_text or abs(v.confidence - t.first_confidence) >= self.tracking.update_min_gain
            if mode == "on_change" and not changed and not t.force_update:
                return []
            return self._publish(t, v, fmt, best, t.best_crop, "update", ended=True)
        if fmt is None:
            self.counts["rejected_format"] += 1
            log.debug("camera %s: track %d rejected by format: %s", self.camera, t.id, v.text)
            return []
        if v.confidence < self.tracking.end_read_min_confidence:
            self.counts["rejected_low_confidence"] += 1
            return []
        if len(fmt.text) < SHORT_PLATE_CHARS and v.agreeing < self.tracking.first_read_min_frames:
            self.counts["rejected_short"] += 1
            return []
        return self._publish(t, v, fmt, best, t.best_crop, "first", ended=True)

    @staticmethod
    def _best(t: Track, v: Vote) -> Observation:
        agreeing = [o for o in t.observations if o.text == v.text] or t.observations
        return max(agreeing, key=lambda o: (o.weight * o.confidence, -o.frame_index))

    def _publish(self, t: Track, v: Vote, fmt: FormatResult, obs: Observation, crop: np.ndarray | None,
                 event: str, ended: bool = False) -> list[Outbound]:
        match = self.hotlist.match(fmt.text) if self.hotlist else None
        if event == "first":
            prior = self._repeat_of(fmt.text, t.first_ms)
            # A plate listed since its last event (a hotlist reload) is not a repeat: the hit gets an
            # event of its own.
            if prior is not None and not (match and match.entry.plate not in prior.hit_plates):
                # The plate's pass already has its event: this stretch joins it, silently.
                t.read_id, t.first_text, t.first_confidence = prior.read_id, prior.text, prior.confidence
                t.hit_plates |= prior.hit_plates
                t.repeat = True
                self.counts["repeats_merged"] += 1
                log.debug("camera %s: track %d repeats read %s", self.camera, t.id, t.read_id)
                self._remember(t, prior.text, prior.confidence)
                return []
            t.read_id = uuid7(obs.timestamp_ms)
            t.first_text, t.first_confidence = fmt.text, v.confidence
        self.counts["events_" + event] += 1
        read = PlateRead(fmt.text, v.confidence, v.char_confidences, obs.box, obs.detection_confidence)
        extra: dict[str, Any] = {
            "event": event,
            "track": self._track_info(t, v, ended),
            "format": fmt.format or None,
        }
        if fmt.fixes:
            extra["format_fixes"] = [{"position": i, "read": a, "fixed": b} for i, a, b in fmt.fixes]
        if match:
            extra["hit"] = _hit_summary(match)
        payload = read_payload(read, read_id=t.read_id, unit=self.unit_id, camera=self.camera,
                               timestamp_ms=obs.timestamp_ms, frame_index=obs.frame_index,
                               frame_shape=self._last_shape, models=self.recognizer.model_versions,
                               crop=crop, extra=extra)
        out: list[Outbound] = []
        if match and match.entry.plate not in t.hit_plates:
            t.hit_plates.add(match.entry.plate)
            self.counts["hits"] += 1
            out.append(self._hit(match, payload))
            log.info("camera %s: hotlist hit (priority %d), read %s", self.camera, match.entry.priority, t.read_id)
        out.append(Outbound("read", self.camera, payload, t.read_id, obs.timestamp_ms))
        self._remember(t, t.first_text, t.first_confidence)
        if fmt.text != t.first_text:  # an update that corrected the plate: a repeat may read either
            self._remember(t, fmt.text, v.confidence)
        log.debug("camera %s: %s read %s (%.2f) track %d id %s", self.camera, event, fmt.text, v.confidence,
                  t.id, t.read_id)
        return out

    def _repeat_of(self, text: str, since_ms: int) -> _Pass | None:
        """The pass of the same plate (look-alike characters equal) last seen within the window
        before this track began, if any."""
        window_ms = self.tracking.repeat_window_s * 1000
        if window_ms <= 0:
            return None
        prior = self._passes.get(canonical(text))
        if prior is None or since_ms - prior.last_ms > window_ms:
            return None
        return prior

    def _remember(self, t: Track, text: str, confidence: float) -> None:
        if self.tracking.repeat_window_s <= 0:
            return
        key = canonical(text)
        prior = self._passes.get(key)
        if prior is not None and prior.read_id == t.read_id:
            prior.last_ms = max(prior.last_ms, t.last_ms)
            prior.hit_plates |= t.hit_plates
        else:
            self._passes[key] = _Pass(t.read_id, text, confidence, set(t.hit_plates), t.last_ms)
        horizon = t.last_ms - 2 * self.tracking.repeat_window_s * 1000
        if len(self._passes) > 256:  # bounded: forget passes long gone
            self._passes = {k: p for k, p in self._passes.items() if p.last_ms >= horizon}

    @staticmethod
    def _track_info(t: Track, v: Vote, ended: bool) -> dict[str, Any]:
        return {"id": t.id, "first_seen_ms": t.first_ms, "last_seen_ms": t.last_ms, "frames": t.frames,
                "reads": v.reads, "agreeing": v.agreeing, "ended": ended}

    def _hit(self, match: HotlistMatch, read: dict[str, Any]) -> Outbound:
        ts = read["timestamp_ms"]
        payload = {
            "schema": HIT_SCHEMA,
            "hit_id": uuid7(ts),
            "read_id": read["read_id"],
            "unit": self.unit_id,
            "camera": self.camera,
            "plate": read["plate"],
            "timestamp": iso_ms(ts),
            "timestamp_ms": ts,
            # When the hit was decided (the frame that made the read match, or the track's end):
            # an alert's latency runs from here.
            "decided_ms": max(ts, self._now_ms),
            **_hit_summary(match),
            "read": read,
        }
        return Outbound("hit", self.camera, payload, read["read_id"], ts)

    # --- clock and end -------------------------------------------------------------------------

    def tick(self, now_ms: int) -> list[Outbound]:
        """Called about four times a second by the daemon: what became due without a new frame.
        Live sources end tracks on the wall clock here; recorded ones only on video time."""
        if self.hotlist:
            self.hotlist.poll()
        if not self.live:
            return []
        with self._lock:
            if self._admitted:
                return []  # frames in flight: they end tracks by their own timestamps, in order
            self._now_ms = max(self._now_ms, now_ms)
            return self._locate(self._end(self.tracker.expire(None, now_ms, self.tracking.max_missed_s, 0,
                                                              self.tracking.parked_missed_s)))

    def finish(self) -> list[Outbound]:
        """The source ended or the daemon is stopping: everything still held back."""
        with self._lock:
            out = []
            for idx in sorted(self._done):  # analysed frames stuck behind one that never came
                a = self._done.pop(idx)
                if a is not None:
                    out += self._consume(a)
            self._admitted.clear()
            self._admitted_set.clear()
            return self._locate(out + self._end(self.tracker.drain()))

    def _locate(self, out: list[Outbound]) -> list[Outbound]:
        """The fix valid at each read's frame time goes into its payload (and into the read a hit carries)."""
        if self.location is not None:
            for m in out:
                read = m.payload if m.kind == "read" else m.payload.get("read")
                if isinstance(read, dict) and "gps" not in read:
                    read["gps"] = self.location.fix_at(m.camera, read["timestamp_ms"])
        return out

    def stats(self) -> dict[str, int]:
        with self._lock:
            out = dict(self.counts)
        if self.planner is not None:
            out.update(self.planner.snapshot())
        return out


def _distinct(boxes: list[tuple[int, int, int, int]], max_cover: float = 0.6) -> list[tuple[int, int, int, int]]:
    """One box per plate: the detector sometimes boxes half a plate as well as all of it, which would
    start a second track on the same vehicle. Earlier boxes win (reads come first, surest read first)."""
    kept: list[tuple[int, int, int, int]] = []
    for b in boxes:
        area = max(1, (b[2] - b[0]) * (b[3] - b[1]))
        dup = False
        for k in kept:
            if intersection(b, k) >= max_cover * min(area, max(1, (k[2] - k[0]) * (k[3] - k[1]))):
                dup = True
                break
        if not dup:
            kept.append(b)
    return kept


def _hit_summary(m: HotlistMatch) -> dict[str, Any]:
    return {"hotlist": m.entry.as_dict(), "reason": m.entry.reason, "priority": m.entry.priority,
            "match": {"listed": m.entry.plate, "edits": m.edits, "exact": m.exact}}
