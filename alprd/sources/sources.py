"""Camera sources. Recorded sources (video file, image folder) yield every frame, deterministically;
live sources (RTSP, HTTP/MJPEG, USB) run a capture thread that keeps only the newest frame and
reconnects with backoff, the way OpenALPR's alprd does, so a slow unit never falls behind a stream."""

from __future__ import annotations

import dataclasses
import logging
import os
import queue
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2

from alprd.config import CameraConfig
from alprd.geometry import Frame
from alprd.motion import MotionDetector
from alprd.sources.still import ImageRefused, load_still

log = logging.getLogger(__name__)

# FFmpeg prints its own lines on every failed open of a stream; the daemon already reports the
# state once per problem, so a camera that stays down must not flood the journal. OpenCV reads
# these when its FFmpeg backend first opens something, which is after this import.
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
if hasattr(cv2, "utils") and hasattr(cv2.utils, "logging"):
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)

DECODE_THREADS = 1
IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}


class SourceState:
    """What the status topic shows for a camera."""

    def __init__(self) -> None:
        self.state = "starting"
        self.detail = ""
        self.frames = 0
        self.skipped = 0  # live frames replaced by a newer one before analysis
        self.reconnects = 0
        self.errors = 0

    def set(self, state: str, detail: str = "") -> None:
        self.state, self.detail = state, detail

    def as_dict(self) -> dict[str, object]:
        return {"state": self.state, "detail": self.detail, "frames": self.frames,
                "skipped": self.skipped, "reconnects": self.reconnects}


def put_unless_stopped(q: queue.Queue[Any], item: Any, stop: threading.Event) -> bool:
    """Hand an item to a bounded queue, waiting while it is full; False if `stop` was set first."""
    while not stop.is_set():
        try:
            q.put(item, timeout=0.2)
            return True
        except queue.Full:
            continue
    return False


def motion_detector(cam: CameraConfig) -> MotionDetector | None:
    """The camera's motion test, run in its source's thread so its verdicts follow frame order."""
    return MotionDetector.from_settings(cam.motion, cam.roi) if cam.motion.enabled else None


def source_kind(cam: CameraConfig) -> str:
    if cam.kind != "auto":
        return cam.kind
    s = cam.source
    if s.startswith(("rtsp://", "rtsps://")):
        return "rtsp"
    if s.startswith(("http://", "https://")):
        return "http"
    if s.startswith("/dev/video") or s.isdigit():
        return "usb"
    if os.path.isdir(s):
        return "images"
    return "file"


class Source:
    live = False

    def __init__(self, cam: CameraConfig):
        self.cam = cam
        self.status = SourceState()

    def frames(self, stop: threading.Event) -> Iterator[Frame]:
        raise NotImplementedError


class VideoFileSource(Source):
    """Every frame of a recorded video, timestamps from the video's own clock."""

    def frames(self, stop: threading.Event) -> Iterator[Frame]:
        path = self.cam.source
        if not os.path.isfile(path):
            self.status.set("error", f"video file not found: {path}")
            log.error("camera %s: video file not found: %s", self.cam.id, path)
            return
        start_ms = int(time.time() * 1000)
        index = 0
        motion = motion_detector(self.cam)
        while not stop.is_set():
            # Software decoding on one FFmpeg thread: the decoder has this thread to itself and the
            # other cores are left to inference (more decoder threads only fight the detector).
            cap = cv2.VideoCapture(path, cv2.CAP_FFMPEG, [cv2.CAP_PROP_HW_ACCELERATION, cv2.VIDEO_ACCELERATION_NONE,
                                                          cv2.CAP_PROP_N_THREADS, DECODE_THREADS])
            if not cap.isOpened():
                self.status.set("error", f"cannot decode video file {path} (not a video, or corrupt)")
                log.error("camera %s: cannot decode video file %s (not a video, or corrupt)", self.cam.id, path)
                return
            fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
            self.status.set("running")
            got_any = False
            local = 0
            while not stop.is_set():
                ok, img = cap.read()
                if not ok or img is None:
                    break
                got_any = True
                self.status.frames += 1
                video_ms = int(local * 1000 / fps)
                yield Frame(self.cam.id, index, start_ms + video_ms, img, video_ms,
                            motion.analyse(img, video_ms) if motion else None)
                index += 1
                local += 1
            cap.release()
            if not got_any:
                self.status.set("error", f"no decodable frames in {path} (corrupt or truncated)")
                log.error("camera %s: no decodable frames in %s (corrupt or truncated)", self.cam.id, path)
                return
            if not self.cam.loop:
                break
            start_ms += int(local * 1000 / fps)
        if not stop.is_set():
            self.status.set("finished", f"{index} frames")


class ImageFolderSource(Source):
    def frames(self, stop: threading.Event) -> Iterator[Frame]:
        folder = Path(self.cam.source)
        if not folder.is_dir():
            self.status.set("error", f"image folder not found: {folder}")
            log.error("camera %s: image folder not found: %s", self.cam.id, folder)
            return
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTS)
        self.status.set("running")
        for i, p in enumerate(files):
            if stop.is_set():
                return
            try:
                img = load_still(p)  # a decompression bomb is refused from its header, not decoded
            except ImageRefused as e:
                self.status.errors += 1
                log.error("camera %s: %s; skipped", self.cam.id, e)
                continue
            self.status.frames += 1
            yield Frame(self.cam.id, i, int(p.stat().st_mtime * 1000), img)
        self.status.set("finished", f"{len(files)} images")


class LiveSource(Source):
    """A capture thread reads as fast as the stream delivers; the analysis side takes the newest
    frame. Frames overwritten before analysis are counted as skipped."""

    live = True

    def __init__(self, cam: CameraConfig):
        super().__init__(cam)
        self._latest: Frame | None = None
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None

    def _open(self) -> cv2.VideoCapture:
        src = self.cam.source
        if source_kind(self.cam) == "usb":
            dev = int(src) if src.isdigit() else src
            return cv2.VideoCapture(dev, cv2.CAP_V4L2)
        return cv2.VideoCapture(src, cv2.CAP_FFMPEG)

    def _capture(self, stop: threading.Event) -> None:
        delay = self.cam.reconnect_min_s
        index = 0
        while not stop.is_set():
            cap = self._open()
            if not cap.isOpened():
                self.status.set("reconnecting", f"cannot open {self._safe_source()}; retry in {delay:.0f}s")
                self.status.errors += 1
                if self.status.errors == 1 or self.status.reconnects % 10 == 0:
                    log.warning("camera %s: cannot open %s; retrying with backoff", self.cam.id, self._safe_source())
                self.status.reconnects += 1
                stop.wait(delay)
                delay = min(self.cam.reconnect_max_s, delay * 2)
                continue
            self.status.set("running")
            log.info("camera %s: stream open", self.cam.id)
            delay = self.cam.reconnect_min_s
            while not stop.is_set():
                ok, img = cap.read()
                if not ok or img is None:
                    break
                frame = Frame(self.cam.id, index, int(time.time() * 1000), img)
                index += 1
                self.status.frames += 1
                with self._cond:
                    if self._latest is not None:
                        self.status.skipped += 1
                    self._latest = frame
                    self._cond.notify()
            cap.release()
            if not stop.is_set():
                self.status.set("reconnecting", "stream ended or dropped")
                log.warning("camera %s: stream dropped; reconnecting", self.cam.id)
                self.status.reconnects += 1
                stop.wait(delay)
                delay = min(self.cam.reconnect_max_s, delay * 2)

    def _safe_source(self) -> str:
        """The URL without credentials: rtsp://user:pass@host must never reach a log."""
        s = self.cam.source
        if "@" in s and "://" in s:
            scheme, rest = s.split("://", 1)
            return f"{scheme}://***@{rest.split('@', 1)[1]}"
        return s

    def frames(self, stop: threading.Event) -> Iterator[Frame]:
        motion = motion_detector(self.cam)
        self._thread = threading.Thread(target=self._capture, args=(stop,), name=f"capture-{self.cam.id}", daemon=True)
        self._thread.start()
        while not stop.is_set():
            with self._cond:
                while self._latest is None and not stop.is_set():
                    self._cond.wait(0.2)
                frame, self._latest = self._latest, None
            if frame is not None:
                # The motion test compares with the previous frame analysed, however many the
                # stream delivered in between.
                if motion is not None:
                    frame = dataclasses.replace(frame, motion=motion.analyse(frame.image, frame.timestamp_ms))
                yield frame


def open_source(cam: CameraConfig) -> Source:
    kind = source_kind(cam)
    if kind == "file":
        return VideoFileSource(cam)
    if kind == "images":
        return ImageFolderSource(cam)
    return LiveSource(cam)
