"""Drive a camera's CameraPipeline over a recorded video exactly as the daemon would (decode thread,
motion gate, the same recognizer and pipeline, `finish()` at the end), timing every stage."""

from __future__ import annotations

import base64
import dataclasses
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from alprd.camera import build_camera
from alprd.config import CameraConfig, Config
from alprd.errors import UserError
from alprd.geometry import Frame
from alprd.gps.provider import LocationProvider, make_provider
from alprd.motion import RegionRecognizer
from alprd.pipeline import CameraPipeline, Outbound
from alprd.recognition.manifest import WidthCurve
from alprd.recognition.recognizer import Recognizer, Timings
from alprd.sources.decode import ThreadedFrames
from alprd.sources.sources import VideoFileSource

log = logging.getLogger(__name__)

CONTEXT_WIDTH = 320  # the vehicle-context thumbnail of each read in the report
RING_WIDTH = 480
RING_FRAMES = 150  # analysed frames whose context thumbnail is kept, for reads emitted after their frame (tracking)


@dataclass
class FrameRecord:
    index: int
    video_ms: int
    reason: str  # the motion verdict
    regions: tuple[tuple[int, int, int, int], ...] | None
    analysed: bool


@dataclass
class BenchResult:
    video: str
    camera: str
    width: int
    height: int
    fps: float
    frames: int
    wall_s: float
    realtime: bool
    models: dict[str, str]
    reads: list[dict[str, Any]] = field(default_factory=list)
    others: list[dict[str, Any]] = field(default_factory=list)  # hits and any other kinds, with their kind
    stages: dict[str, list[float]] = field(default_factory=dict)  # ms per run of each stage
    records: list[FrameRecord] = field(default_factory=list)
    gate: dict[str, int] = field(default_factory=dict)
    tracking: dict[str, int] = field(default_factory=dict)  # the pipeline's counters, drops included
    context: dict[str, bytes] = field(default_factory=dict)  # read_id -> JPEG of the frame around the plate
    crops: dict[str, bytes] = field(default_factory=dict)  # read_id -> JPEG of the plate
    scene: bytes = b""  # JPEG of the first frame, for the "where plates are read" view
    roi: tuple[tuple[float, ...], ...] = ()
    gps: dict[str, Any] | None = None
    workers: int = 0
    cpu_s: float = 0.0  # CPU time of the whole process during the run (all threads, FFmpeg's included)
    # track id -> frame index -> (confidence, plate width px): every per-frame read of each track, for
    # the confidence along each pass (the published payloads carry only the voted result)
    observations: dict[int, dict[int, tuple[float, int]]] = field(default_factory=dict)
    width_curve: WidthCurve | None = None  # the detector's measured detection rate per plate width
    input_width: int = 640  # the detector input width the run used
    min_read_confidence: float | None = None  # the publishing floor, drawn on the confidence charts

    @property
    def video_s(self) -> float:
        return self.frames / self.fps if self.fps else 0.0

    @property
    def throughput_fps(self) -> float:
        return self.frames / self.wall_s if self.wall_s > 0 else 0.0


class PrefetchRecognizer:
    """Recognition of upcoming frames on a thread pool, handed to the pipeline in frame order.

    The pipeline must see frames in order (tracking), but recognising a frame depends only on the
    frame and its motion verdict, so `workers` threads run it ahead, as the daemon's workers do;
    the pipeline's call for a frame returns that frame's result. Results are identical to running
    it in line. Also records each frame's detect and OCR time for the stage figures."""

    def __init__(self, inner: RegionRecognizer, workers: int):
        self.inner = inner
        self.workers = max(1, workers)
        self.pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="bench-recognize")
        self._jobs: dict[int, tuple[np.ndarray, Future]] = {}
        self.waited_ms = 0.0
        self.last: Timings | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    @property
    def model_versions(self) -> dict[str, str]:
        return self.inner.model_versions

    def submit(self, frame: Frame) -> None:
        regions = frame.motion.regions if frame.motion is not None else None

        def job() -> tuple[Any, Timings]:
            t = Timings()
            c0 = time.thread_time()
            out = self.inner.analyse_in(frame.image, regions, t, at=frame)  # `at`: the camera's track plan
            t.cpu_ms = (time.thread_time() - c0) * 1000  # type: ignore[attr-defined]
            return out, t

        self._jobs[id(frame.image)] = (frame.image, self.pool.submit(job))

    def analyse(self, frame: np.ndarray, timings: Timings | None = None, **kw: Any):
        job = self._jobs.pop(id(frame), None)
        t0 = time.perf_counter()
        if job is not None and job[0] is frame:
            out, t = job[1].result()
        else:  # not prefetched (a pipeline asking for something unexpected): in line, same result
            t = Timings()
            out = self.inner.analyse(frame, t)
        self.waited_ms += (time.perf_counter() - t0) * 1000
        self.last = t
        if timings is not None:
            timings.detect_ms += t.detect_ms
            timings.ocr_ms += t.ocr_ms
        return out

    def recognize(self, frame: np.ndarray, timings: Timings | None = None):
        return self.analyse(frame, timings)[1]

    def take(self) -> tuple[Timings | None, float]:
        t, w = self.last, self.waited_ms
        self.last, self.waited_ms = None, 0.0
        return t, w

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


def probe_video(path: Path) -> tuple[int, int, float, int]:
    """(width, height, fps, frame count) or a UserError naming the file."""
    if not path.is_file():
        raise UserError(f"{path}: video file not found")
    cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    try:
        ok, img = cap.read() if cap.isOpened() else (False, None)
        if not ok or img is None:
            raise UserError(f"{path}: cannot decode (not a video FFmpeg reads, or corrupt)")
        fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
        n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        return img.shape[1], img.shape[0], fps, n
    finally:
        cap.release()


def bench_camera(video: Path, cfg: Config | None, camera: str | None) -> CameraConfig:
    if cfg is None:
        return CameraConfig(id="bench", source=str(video), kind="file")
    cams = {c.id: c for c in cfg.cameras}
    if camera is not None and camera not in cams:
        raise UserError(f"--camera: no camera {camera!r} in {cfg.source_file}; cameras: {', '.join(cams)}")
    cam = cams[camera] if camera else cfg.cameras[0]
    return dataclasses.replace(cam, source=str(video), kind="file", loop=False, enabled=True)


def bench_location(cfg: Config) -> LocationProvider | None:
    if cfg.gps is not None and cfg.gps.source != "replay":
        log.warning("bench: gps.source %s is a live receiver; a recorded video is tagged only by a replayed log "
                    "(gps.source: replay) or a fixed location", cfg.gps.source)
        return None
    return make_provider(cfg)


def run_bench(video: Path, cfg: Config | None = None, camera: str | None = None, realtime: bool = False,
              recognizer: Recognizer | None = None, progress: Callable[[int, int, float, int], None] | None = None,
              thumbnails: bool = True, stop: threading.Event | None = None, workers: int | None = None) -> BenchResult:
    cam = bench_camera(video, cfg, camera)
    cfg = cfg or Config(unit_id="bench", cameras=(cam,))  # no config: every section's defaults
    width, height, fps, total = probe_video(video)
    base = recognizer or Recognizer.from_config(cfg.models)
    n_workers = workers or cfg.workers

    def read_ahead(region: RegionRecognizer) -> PrefetchRecognizer:
        return PrefetchRecognizer(region, n_workers)

    # The camera's own tracking, formats and hotlist: the bench reports the events the unit would
    # publish. Crops are always kept for the report; the reads keep them only as the unit would send them.
    wiring = build_camera(cfg, cam, base, include_crop=True, location=bench_location(cfg), wrap=read_ahead)
    gate, pipeline, location = wiring.gate, wiring.pipeline, wiring.location
    timed = pipeline.recognizer
    assert isinstance(timed, PrefetchRecognizer)
    include_crop = cfg.mqtt.include_crop
    res = BenchResult(str(video), cam.id, width, height, fps, 0, 0.0, realtime, base.model_versions, roi=cam.roi,
                      workers=timed.workers, width_curve=getattr(base.detector, "width_curve", None),
                      input_width=int(getattr(base.detector, "input_width", cfg.models.detector_input_width)),
                      min_read_confidence=cfg.models.min_read_confidence)
    for k in ("decode", "gate", "detect", "ocr", "track_publish", "pipeline", "cpu_decode", "cpu_recognize", "cpu_pipeline"):
        res.stages[k] = []
    frames = ThreadedFrames(VideoFileSource(cam))
    ring: dict[int, np.ndarray] = {}
    start_ms: int | None = None
    t_start, cpu_start = time.perf_counter(), time.process_time()
    last_progress = 0.0

    def collect(out: list[Outbound]) -> None:
        for m in out:
            if m.kind == "read":
                p = m.payload
                crop = p.pop("crop_jpeg", None) if not include_crop else p.get("crop_jpeg")
                if thumbnails:
                    if crop:
                        res.crops[m.read_id] = base64.b64decode(crop)
                    ctx = _context(ring.get(int(p.get("frame_index", -1))), p.get("box"), width)
                    if ctx:
                        res.context[m.read_id] = ctx
                res.reads.append(p)
            else:
                res.others.append({"kind": m.kind, **m.payload})

    def frames_ahead():
        """Frames from the decode thread, each submitted for recognition `ahead` frames early."""
        pending: deque[Frame] = deque()
        ahead = 2 * timed.workers
        for f in frames:
            if f.motion is None or f.motion.run:
                timed.submit(f)
            pending.append(f)
            if len(pending) > ahead:
                yield pending.popleft()
        yield from pending

    try:
        for frame in frames_ahead():
            if stop is not None and stop.is_set():
                break
            if start_ms is None:
                start_ms = frame.timestamp_ms - (frame.video_ms or 0)
                if thumbnails:
                    res.scene = _jpeg(_small(frame.image, 960), 80)
            if realtime and frame.video_ms is not None:
                wait = t_start + frame.video_ms / 1000 - time.perf_counter()
                if wait > 0:
                    time.sleep(wait)
            m = frame.motion
            t0, c0 = time.perf_counter(), time.thread_time()
            out = pipeline.process(frame)
            t1, c1 = time.perf_counter(), time.thread_time()
            tm, waited = timed.take()
            res.stages["cpu_pipeline"].append((c1 - c0) * 1000)
            if frame.index < len(frames.decode_cpu_ms):
                res.stages["cpu_decode"].append(frames.decode_cpu_ms[frame.index])
            if tm is not None:
                res.stages["cpu_recognize"].append(getattr(tm, "cpu_ms", 0.0))
            dm = frames.decode_ms[frame.index] if frame.index < len(frames.decode_ms) else 0.0
            gate_ms = m.ms if m is not None else 0.0
            res.stages["decode"].append(max(0.0, dm - gate_ms))
            res.stages["gate"].append(gate_ms)
            res.stages["pipeline"].append((t1 - t0) * 1000)
            if tm is not None:
                res.stages["detect"].append(tm.detect_ms)
                res.stages["ocr"].append(tm.ocr_ms)
                # What the pipeline itself spent (tracking, payloads), not the wait for recognition.
                res.stages["track_publish"].append(max(0.0, (t1 - t0) * 1000 - waited))
                if thumbnails:
                    ring[frame.index] = _small(frame.image, RING_WIDTH)
                    while len(ring) > RING_FRAMES:
                        del ring[next(iter(ring))]  # the oldest: frames are added in order
            res.records.append(FrameRecord(frame.index, frame.video_ms or 0, m.reason if m else "off",
                                           m.regions if m else None, tm is not None))
            observe_tracks(pipeline, res.observations)
            collect(out)
            res.frames += 1
            if progress is not None and (time.perf_counter() - last_progress > 0.25):
                last_progress = time.perf_counter()
                progress(res.frames, total, res.frames / max(1e-6, last_progress - t_start), len(res.reads))
    finally:
        frames.close()
        timed.close()
    collect(pipeline.finish())
    res.wall_s = time.perf_counter() - t_start
    res.cpu_s = time.process_time() - cpu_start
    if progress is not None:
        progress(res.frames, max(total, res.frames), res.throughput_fps, len(res.reads))
    res.gate = gate.snapshot()
    res.tracking = pipeline.stats()
    if location is not None:
        res.gps = location.stats()
    for p in res.reads:
        if start_ms is not None:
            p.setdefault("video_s", None)
            p["video_s"] = round((p["timestamp_ms"] - start_ms) / 1000, 3)
    return res


def observe_tracks(pipeline: CameraPipeline, seen: dict[int, dict[int, tuple[float, int]]]) -> None:
    """Copies the per-frame reads of the live tracks (the tracker keeps them for its vote) before a
    track ends and takes them with it. A read the track drops at once (its cap on observations keeps
    the heaviest) is not seen; with tracking off there are no tracks and a pass is its one read."""
    tracker = getattr(pipeline, "tracker", None)
    for t in getattr(tracker, "tracks", ()):
        got = seen.setdefault(t.id, {})
        for o in t.observations:
            got.setdefault(o.frame_index, (round(o.confidence, 4), o.box[2] - o.box[0]))


def _small(img: np.ndarray, width: int) -> np.ndarray:
    h, w = img.shape[:2]
    if w <= width:
        return img.copy()
    step = max(1, w // (width * 2))  # a strided sample first: an area resize of 1080p costs ~2 ms
    sub = img[::step, ::step]
    return cv2.resize(sub, (width, round(h * width / w)), interpolation=cv2.INTER_AREA)


def _jpeg(img: np.ndarray, quality: int = 85) -> bytes:
    ok, enc = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, quality])
    return enc.tobytes() if ok else b""


def _context(small: np.ndarray | None, box: list[int] | None, width: int) -> bytes:
    """The vehicle around the plate: a crop of the downscaled frame centred on the plate, box drawn."""
    if small is None or not box:
        return b""
    s = small.shape[1] / width
    x1, y1, x2, y2 = (int(round(v * s)) for v in box)
    cx, cy = (x1 + x2) // 2, (y1 + y2) // 2
    cw, ch = CONTEXT_WIDTH, CONTEXT_WIDTH * 9 // 16
    h, w = small.shape[:2]
    ax = min(max(0, cx - cw // 2), max(0, w - cw))
    ay = min(max(0, cy - ch * 2 // 3), max(0, h - ch))
    img = small[ay:ay + ch, ax:ax + cw].copy()
    cv2.rectangle(img, (x1 - ax, y1 - ay), (x2 - ax, y2 - ay), (0, 220, 255), 2)
    return _jpeg(img, 85)
