"""The daemon: sources -> recognition workers -> spool -> MQTT, with status and stats.

Shape after OpenALPR's alprd: one capture thread per camera (live streams keep only the newest
frame), a pool of analysis workers (ONNX Runtime releases the GIL, so threads overlap decoding and
inference), and a local queue (the SQLite spool) between recognition and upload."""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections import Counter
from typing import Any

from alprd import __version__
from alprd.config import Config
from alprd.publish.mqtt import MqttCommunicator
from alprd.publish.payload import encode, read_payload, uuid7
from alprd.publish.spool import Spool
from alprd.recognition.preprocess import crop_plate
from alprd.recognition.recognizer import Recognizer
from alprd.sources.sources import Frame, Source, open_source

log = logging.getLogger(__name__)

_DONE = object()


class Stats:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counts: Counter[str] = Counter()
        self.frames: Counter[str] = Counter()
        self.reads: Counter[str] = Counter()

    def add(self, key: str, n: int = 1, camera: str | None = None) -> None:
        with self._lock:
            self.counts[key] += n
            if camera is not None and key == "frames":
                self.frames[camera] += n
            if camera is not None and key == "reads":
                self.reads[camera] += n

    def snapshot(self) -> tuple[dict[str, int], dict[str, int], int]:
        """Frames, reads and errors, copied under the lock: a worker adding a camera's first count while
        the stats loop iterates would raise "dictionary changed size during iteration" in the main loop."""
        with self._lock:
            return dict(self.frames), dict(self.reads), self.counts["errors"]


class Daemon:
    def __init__(self, cfg: Config, recognizer: Recognizer | None = None):
        self.cfg = cfg
        self.recognizer = recognizer or Recognizer.from_config(cfg.models)
        self.spool = Spool(cfg.spool.path, cfg.spool.max_rows)
        self.mqtt = MqttCommunicator(cfg.mqtt, cfg.unit_id, self.spool, cfg.mqtt_password(),
                                     reconnect_max_s=cfg.mqtt.reconnect_max_s)
        self.sources: list[Source] = [open_source(c) for c in cfg.cameras if c.enabled]
        self.shutdown = threading.Event()
        self._stop_sources = threading.Event()
        # Bounded: recorded sources wait for the workers instead of piling frames up in memory.
        self.frames: queue.Queue[Any] = queue.Queue(maxsize=cfg.workers * 2)
        self.stats = Stats()
        self.started = time.time()
        self._busy = 0
        self._busy_lock = threading.Lock()

    # --- threads ------------------------------------------------------------------------------

    def _feed(self, source: Source) -> None:
        try:
            for frame in source.frames(self._stop_sources):
                while not self._stop_sources.is_set():
                    try:
                        self.frames.put(frame, timeout=0.2)
                        break
                    except queue.Full:
                        continue
                if self._stop_sources.is_set():
                    break
        except Exception as e:  # a broken camera must not take the others down
            source.status.set("error", f"{type(e).__name__}: {e}")
            log.exception("camera %s: source failed", source.cam.id)

    def _work(self) -> None:
        while True:
            item = self.frames.get()
            if item is _DONE:
                return
            with self._busy_lock:
                self._busy += 1
            try:
                self._analyse(item)
            except Exception:
                self.stats.add("errors")
                log.exception("camera %s: analysis of frame %d failed", item.camera, item.index)
            finally:
                with self._busy_lock:
                    self._busy -= 1

    def _analyse(self, frame: Frame) -> None:
        self.stats.add("frames", camera=frame.camera)
        reads = self.recognizer.recognize(frame.image)
        if not reads:
            return
        topic = self.mqtt.topic(frame.camera, "read")
        for r in reads:
            read_id = uuid7(frame.timestamp_ms)
            crop = crop_plate(frame.image, r.box) if self.cfg.mqtt.include_crop else None
            payload = read_payload(r, read_id=read_id, unit=self.cfg.unit_id, camera=frame.camera,
                                   timestamp_ms=frame.timestamp_ms, frame_index=frame.index,
                                   frame_shape=frame.image.shape, models=self.recognizer.model_versions,
                                   crop=crop)
            self.spool.put(topic, encode(payload), read_id, frame.timestamp_ms)
            self.stats.add("reads", camera=frame.camera)
            log.debug("camera %s: read %s (%.2f) id %s", frame.camera, r.text, r.confidence, read_id)
        self.mqtt.notify()

    # --- status and stats -------------------------------------------------------------------

    def status(self, online: bool = True) -> dict[str, Any]:
        return {
            "online": online,
            "unit": self.cfg.unit_id,
            "version": __version__,
            "models": self.recognizer.model_versions,
            "cameras": {s.cam.id: s.status.as_dict() for s in self.sources},
            "started": int(self.started * 1000),
            "timestamp_ms": int(time.time() * 1000),
        }

    def stats_payload(self, interval_s: float, prev_frames: Counter[str]) -> dict[str, Any]:
        frames, reads, errors = self.stats.snapshot()
        fps = {cam: round((n - prev_frames.get(cam, 0)) / interval_s, 2) for cam, n in frames.items()}
        return {
            "unit": self.cfg.unit_id,
            "timestamp_ms": int(time.time() * 1000),
            "fps": fps,
            "frames": frames,
            "reads": reads,
            "frames_skipped": {s.cam.id: s.status.skipped for s in self.sources},
            "queue_depth": self.frames.qsize(),
            "spool_depth": self.spool.depth(),
            "inflight": self.mqtt.inflight(),
            "published": self.mqtt.published,
            "dropped": {"spool_full": self.spool.counter("dropped_spool_full")},
            "errors": errors,
            "mqtt_connected": self.mqtt.connected,
        }

    # --- lifecycle ----------------------------------------------------------------------------

    def run(self, until_sources_end: bool = False) -> int:
        log.info("alprd %s unit %s: %d camera(s), %d worker(s), models %s", __version__, self.cfg.unit_id,
                 len(self.sources), self.cfg.workers, self.recognizer.model_versions)
        self.mqtt.set_status(self.status())
        self.mqtt.start()
        workers = [threading.Thread(target=self._work, name=f"worker-{i}", daemon=True)
                   for i in range(self.cfg.workers)]
        feeders = [threading.Thread(target=self._feed, args=(s,), name=f"feed-{s.cam.id}", daemon=True)
                   for s in self.sources]
        for t in workers + feeders:
            t.start()
        # --until-sources-end waits for the recorded sources only: a live stream never ends by itself.
        recorded = [t for t, s in zip(feeders, self.sources) if not s.live] or feeders
        last_status = ""
        last_stats = time.monotonic()
        prev_frames: Counter[str] = Counter()
        while not self.shutdown.wait(0.25):
            st = self.status()
            states = json.dumps({c: v["state"] for c, v in st["cameras"].items()})
            if states != last_status:
                last_status = states
                self.mqtt.set_status(st)
            now = time.monotonic()
            if now - last_stats >= self.cfg.stats_interval_s:
                payload = self.stats_payload(now - last_stats, prev_frames)
                self.mqtt.publish_unspooled(self.mqtt.topic("stats"), json.dumps(payload).encode())
                prev_frames = Counter(payload["frames"])
                last_stats = now
            if until_sources_end and not any(t.is_alive() for t in recorded) and self._idle():
                log.info("all sources finished")
                break
        log.info("shutting down: finishing frames in flight")
        self._stop_sources.set()
        for t in feeders:
            t.join(timeout=5)
        for _ in workers:
            self.frames.put(_DONE)
        for t in workers:
            t.join(timeout=30)
        self.mqtt.set_status(self.status())
        self.mqtt.stop(self.status(online=False), drain_s=10.0 if until_sources_end else 5.0)
        left = self.spool.depth()
        if left:
            log.warning("%d message(s) stay in the spool and will be sent at the next start", left)
        self.spool.close()
        log.info("stopped")
        return 0

    def _idle(self) -> bool:
        with self._busy_lock:
            return self.frames.empty() and self._busy == 0
