"""The daemon: sources -> recognition workers -> spool -> MQTT, with status and stats.

Shape after OpenALPR's alprd: one capture thread per camera (live streams keep only the newest
frame), a pool of analysis workers (ONNX Runtime releases the GIL, so threads overlap decoding and
inference), and a local queue (the SQLite spool) between recognition and upload."""

from __future__ import annotations

import dataclasses
import json
import logging
import queue
import threading
import time
from collections import Counter
from collections.abc import Mapping
from typing import Any

from alprd import __version__
from alprd.camera import CameraWiring, build_camera
from alprd.config import Config, HotlistConfig
from alprd.geometry import Frame
from alprd.gps.provider import make_provider
from alprd.hotlist.hotlist import Hotlist
from alprd.ops.http import StatusServer
from alprd.ops.metrics import Metrics, TimedRecognizer
from alprd.ops.notify import Heartbeats, Notifier
from alprd.pipeline import Outbound
from alprd.privacy.audit import AuditLog, verify
from alprd.privacy.keys import audit_key, load_or_create_secret
from alprd.privacy.minimise import is_hit
from alprd.privacy.policy import enforce, privacy_paths
from alprd.publish.homeassistant import attach_discovery
from alprd.publish.outlets import Outlets
from alprd.recognition.recognizer import Recognizer
from alprd.sources.sources import Source, open_source, put_unless_stopped

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
    def __init__(self, cfg: Config, recognizer: Recognizer | None = None, sources: list[Source] | None = None):
        """`sources`: instead of the config's enabled cameras (a benchmark's paced camera)."""
        self.cfg = cfg
        # The policy first: a config that breaks it must not open a spool or a connection.
        self.policy = enforce(cfg)
        key_file, audit_file = privacy_paths(cfg)
        self._secret = load_or_create_secret(key_file)
        self.audit = AuditLog(audit_file, audit_key(self._secret), cfg.unit_id, hold_on_error=True)
        self.audit_chain = "new"  # what the start-up check of the existing log found (see audit_start)
        self.recognizer = recognizer or Recognizer.from_config(cfg.models)
        self.metrics = Metrics(self.health)
        self._timed = TimedRecognizer(self.recognizer, self.metrics)  # what the cameras call: detect/ocr timed
        self.outlets = Outlets(cfg, self.policy)
        self.discovery = attach_discovery(self.outlets, cfg, __version__)  # Home Assistant, where enabled
        self.purged: Counter[str] = Counter()
        self.sources: list[Source] = sources if sources is not None else [open_source(c) for c in cfg.cameras if c.enabled]
        self.location = make_provider(cfg)
        self.hotlists: dict[HotlistConfig, Hotlist] = {}  # one per distinct file and settings, shared by cameras
        self.cameras: dict[str, CameraWiring] = {s.cam.id: self._wire(s) for s in self.sources}
        self._reload_hotlists = threading.Event()
        self._hotlists_audited: dict[str, tuple[int, str]] = {}
        self.shutdown = threading.Event()
        self._stop_sources = threading.Event()
        # Bounded: recorded sources wait for the workers instead of piling frames up in memory.
        self.frames: queue.Queue[Any] = queue.Queue(maxsize=cfg.workers * 2)
        self.stats = Stats()
        self.started = time.time()
        self._broker = (False, self.started)  # the primary broker: connected, and since when (wall clock)
        self._fps: dict[str, float] = {}
        self.beats = Heartbeats()  # per feeder and worker thread, for the systemd watchdog (stalled())
        self._busy = 0
        self._busy_lock = threading.Lock()

    def _wire(self, source: Source) -> CameraWiring:
        return build_camera(self.cfg, source.cam, self._timed, include_crop=self.outlets.include_crop,
                            location=self.location, live=source.live, newest=lambda: source.status.frames - 1,
                            hotlists=self.hotlists)

    def request_reload(self) -> None:
        """SIGHUP: reload the hotlists (from the main loop, not the signal handler)."""
        self._reload_hotlists.set()

    # --- threads ------------------------------------------------------------------------------

    def _feed(self, source: Source) -> None:
        beat = f"feed-{source.cam.id}"
        self.beats.touch(beat)
        try:
            pipeline = self.cameras[source.cam.id].pipeline
            for frame in source.frames(self._stop_sources):
                self.beats.touch(beat)
                pipeline.admit(frame)  # tracking consumes this camera's frames in this order
                if not put_unless_stopped(self.frames, frame, self._stop_sources):
                    self._emit(pipeline.withdraw(frame))
                if self._stop_sources.is_set():
                    break
        except Exception as e:  # a broken camera must not take the others down
            source.status.set("error", f"{type(e).__name__}: {e}")
            log.exception("camera %s: source failed", source.cam.id)
        finally:
            self.beats.forget(beat)
            self._emit(self.cameras[source.cam.id].pipeline.source_ended())

    def _work(self) -> None:
        beat = threading.current_thread().name
        while True:
            self.beats.touch(beat)
            try:
                item = self.frames.get(timeout=1.0)  # an idle worker still beats
            except queue.Empty:
                continue
            if item is _DONE:
                self.beats.forget(beat)
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
        t0 = time.perf_counter()
        out = self.cameras[frame.camera].pipeline.process(frame)
        self.metrics.observe("analyse", time.perf_counter() - t0)
        self._emit(out)

    def _emit(self, messages: list[Outbound]) -> None:
        if not messages:
            return
        for m in messages:
            self.outlets.publish(m.kind, m.camera, m.payload, m.read_id, m.timestamp_ms, self._secret)
            if m.kind == "read" and m.payload.get("event") != "update":  # reads count vehicle passes
                self.stats.add("reads", camera=m.camera)
            if m.kind == "hit":
                self.stats.add("hits")
                self.outlets.send_now()  # an alert goes out now, not after the read stored behind it
            elif m.kind == "read" and is_hit(m.kind, m.payload):
                self.stats.add("reads_with_hit")
        self.outlets.send_now()

    # --- status and stats -------------------------------------------------------------------

    def status(self, online: bool = True) -> dict[str, Any]:
        return {
            "online": online,
            "unit": self.cfg.unit_id,
            "version": __version__,
            "models": self.recognizer.model_versions,
            "cameras": {s.cam.id: s.status.as_dict() for s in self.sources},
            **({"hotlists": [h.status() for h in self.hotlists.values()]} if self.hotlists else {}),
            "started": int(self.started * 1000),
            "timestamp_ms": int(time.time() * 1000),
            "policy": {"sha256": self.policy.sha256, "source": self.policy.source},
        }

    def health(self) -> dict[str, Any]:
        """The one view the ops layer (alprd/ops: /status, /metrics) gets: states and counts, no plate text."""
        frames, reads, errors = self.stats.snapshot()
        connected, since = self._broker
        p = self.outlets.primary
        return {
            "unit": self.cfg.unit_id, "version": __version__, "uptime_s": round(time.time() - self.started, 1),
            "cameras": {s.cam.id: {"state": s.status.state, "detail": s.status.detail, "fps": self._fps.get(s.cam.id, 0.0),
                                   "frames": frames.get(s.cam.id, 0), "captured": s.status.frames,
                                   "reads": reads.get(s.cam.id, 0)} for s in self.sources},
            "spool_depth": p.spool.depth(), "published": p.comm.published, "dropped": p.spool.dropped(),
            "errors": errors,
            "broker": {"connected": connected, "since_ms": int(since * 1000)},
        }

    def stalled(self) -> list[str]:
        """The threads the watchdog waits for: a worker that has not come back for stale_after_s, or
        a running camera that delivered no frame for that long. A camera reconnecting (its backoff
        is bounded) or a recorded file held back by a full queue (the workers' beats cover that) is
        not stalled; neither is a thread that ended as it should."""
        limit = self.cfg.watchdog.stale_after_s
        full = self.frames.full()
        names = [f"worker-{i}" for i in range(self.cfg.workers)]
        names += [f"feed-{s.cam.id}" for s in self.sources if s.status.state == "running" and (s.live or not full)]
        return [n for n in names if (self.beats.age(n) or 0.0) > limit]

    def _sample(self, interval_s: float, prev: dict[str, int]) -> dict[str, int]:
        """Each main-loop second: the broker's state change time, and each camera's analysed fps."""
        connected = self.outlets.connected
        if connected != self._broker[0]:
            self._broker = (connected, time.time())
        frames = self.stats.snapshot()[0]
        self._fps = _rates(frames, prev, interval_s)
        return frames

    def stats_payload(self, interval_s: float, prev_frames: Counter[str]) -> dict[str, Any]:
        frames, reads, errors = self.stats.snapshot()
        fps = _rates(frames, prev_frames, interval_s)
        return {
            "unit": self.cfg.unit_id,
            "timestamp_ms": int(time.time() * 1000),
            "fps": fps,
            "frames": frames,
            "reads": reads,
            "frames_skipped": {s.cam.id: s.status.skipped for s in self.sources},
            "queue_depth": self.frames.qsize(),
            **self.outlets.primary_counts(),
            "errors": errors,
            "mqtt_connected": self.outlets.connected,
            "privacy": self.transparency(),
            # analysed / static (motion gate) / late (live frames skipped when the unit fell behind)
            "gate": {cam: c.gate.snapshot() for cam, c in self.cameras.items()},
            **({"gps": self.location.stats()} if self.location is not None else {}),
            **self._track_stats(),
        }

    def _track_stats(self) -> dict[str, Any]:
        """Per camera: tracks, read events, format rejections and hotlist hits."""
        per = {cam: c.pipeline.stats() for cam, c in self.cameras.items()}
        out: dict[str, Any] = {key: {cam: c.get(key, 0) for cam, c in per.items()}
                               for key in ("tracks", "rejected_format", "hits")}
        out["tracking"] = per
        if self.hotlists:
            out["hotlists"] = [h.status() for h in self.hotlists.values()]
        return out

    # --- privacy: transparency, purge, audit ----------------------------------------------------

    def transparency(self) -> dict[str, Any]:
        """Counts only: what was read, what left the unit to whom and in what form, what was purged."""
        with self.stats._lock:
            reads, hits = sum(self.stats.reads.values()), self.stats.counts["hits"]
            reads_with_hit = self.stats.counts["reads_with_hit"]
        return {"policy_sha256": self.policy.sha256, "reads": reads, "hits": hits, "reads_with_hit": reads_with_hit,
                "destinations": self.outlets.stats(),
                "purged": dict(self.purged), "refused": self.outlets.refused,
                "audit_chain_at_start": self.audit_chain}

    def purge(self) -> dict[str, dict[str, int]]:
        """Retention: rows past their limit leave every spool; a receipt (counts only) goes to the audit log."""
        limits = self.policy.retention_ms()
        now_ms = int(time.time() * 1000)
        receipt = self.outlets.purge(now_ms, limits)
        total: Counter[str] = Counter()
        for counts in receipt.values():
            total.update(counts)
        self.purged.update(total)
        if any(total.values()):
            log.info("retention: purged %s", ", ".join(f"{n} {k}" for k, n in total.items() if n))
        return receipt

    def audit_start(self) -> None:
        """The start entry, preceded by change entries when the config or policy differ from the last start's."""
        self._audit_previous_run()
        e = self.policy
        # The chain is checked before this run adds to it: an edit made while the unit was off (or by
        # anyone with the file) is named now, in the log itself, not first at the next audit.
        if self.audit.path.exists():
            verdict = verify(self.audit.path, self.audit.key)
            self.audit_chain = "ok" if verdict.ok else verdict.message
            if not verdict.ok:
                log.error("audit log %s is damaged: %s", self.audit.path, verdict.message)
                self.audit.append("chain_broken", file=str(self.audit.path), found=verdict.message,
                                  intact_entries=verdict.entries)
        last = self.audit.last_entry("start")
        if last and last.get("config_sha256") != e.config_sha256:
            self.audit.append("config_change", file=self.cfg.source_file, old_sha256=last.get("config_sha256"),
                              new_sha256=e.config_sha256, old_destinations=last.get("destinations"),
                              new_destinations=self.outlets.describe())
        if last and last.get("policy_sha256") != e.sha256:
            self.audit.append("policy_change", file=e.source, old_sha256=last.get("policy_sha256"), new_sha256=e.sha256)
        self.audit.append("start", version=__version__, config=self.cfg.source_file, config_sha256=e.config_sha256,
                          policy=e.source, policy_sha256=e.sha256, destinations=self.outlets.describe(),
                          retention_h=dataclasses.asdict(e.retention),
                          cameras=[s.cam.id for s in self.sources])

    def _audit_previous_run(self) -> None:
        """What the last run could not say itself: that it ended without its stop entry, and the reads
        its brokers acknowledged that no audit entry named yet; and a corrupt spool moved aside."""
        ended = self.audit.unclean_end()
        if ended is not None:
            log.warning("the previous run (started %s) ended without stopping (killed, crashed or power lost); "
                        "its last audit entry: seq %s %s at %s", ended["run_started_ts"], ended["last_seq"],
                        ended["last_event"], ended["last_ts"])
            self.audit.append("unclean_end", **ended)
        for o in self.outlets:
            o.audit_opening(self.audit)

    def audit_hotlist_change(self, source: str, sha256: str, entries: int, **details: Any) -> None:
        """For the hotlist loader: every change of the list the unit matches against is audited."""
        self.audit.append("hotlist_change", source=source, sha256=sha256, entries=entries, **details)

    def _audit_hotlists(self) -> None:
        """A hotlist (re)loaded, or refused as broken, since the last look: one audit entry each time."""
        for h in self.hotlists.values():
            st = h.status()
            seen = (h.loads, st["error"])
            if self._hotlists_audited.get(h.path) == seen:
                continue
            self._hotlists_audited[h.path] = seen
            # The loader's digest of what it read: reading the path again could hang on a FIFO.
            self.audit_hotlist_change(h.path, h.sha256, st["entries"], loads=h.loads, error=st["error"] or None)

    def publish_checkpoint(self) -> dict[str, Any]:
        cp = self.audit.checkpoint()
        self.outlets.publish_checkpoint(cp)
        return cp

    def _flush_audit_batches(self, force: bool = False) -> None:
        self.outlets.flush_audit_batches(self.audit, self.cfg.privacy.audit_batch_n, self.cfg.privacy.audit_batch_s, force)

    # --- lifecycle ----------------------------------------------------------------------------

    def run(self, until_sources_end: bool = False) -> int:
        if self.policy.warning():
            log.warning("%s", self.policy.warning())
        log.info("alprd %s unit %s: %d camera(s), %d worker(s), models %s", __version__, self.cfg.unit_id,
                 len(self.sources), self.cfg.workers, self.recognizer.model_versions)
        self.audit_start()
        self._audit_hotlists()
        receipt = self.purge()
        self.audit.append("purge", at="start", counts=receipt, retention_h=dataclasses.asdict(self.policy.retention))
        self.publish_checkpoint()
        self.outlets.publish_status(self.status())
        server = StatusServer(self.cfg.http, self.health, self.metrics.render) if self.cfg.http.enabled else None
        if server is not None:
            server.start()
        self.outlets.start()
        last_sample, sampled = time.monotonic(), dict[str, int]()
        last_purge = last_checkpoint = last_batch = time.monotonic()
        if self.location is not None:
            self.location.start()
        workers = [threading.Thread(target=self._work, name=f"worker-{i}", daemon=True)
                   for i in range(self.cfg.workers)]
        feeders = [threading.Thread(target=self._feed, args=(s,), name=f"feed-{s.cam.id}", daemon=True)
                   for s in self.sources]
        for t in workers + feeders:
            t.start()
        notifier = Notifier(self.stalled)
        notifier.ready(f"{len(self.sources)} camera(s), {self.cfg.workers} worker(s)")
        # --until-sources-end waits for the recorded sources only: a live stream never ends by itself.
        recorded = [t for t, s in zip(feeders, self.sources) if not s.live] or feeders
        last_status = ""
        last_stats = time.monotonic()
        prev_frames: Counter[str] = Counter()
        while not self.shutdown.wait(0.25):
            now_ms = int(time.time() * 1000)
            if self._reload_hotlists.is_set():
                self._reload_hotlists.clear()
                for h in self.hotlists.values():
                    h.reload()
            for c in self.cameras.values():
                self._emit(c.pipeline.tick(now_ms))
            self._audit_hotlists()
            st = self.status()
            states = json.dumps({c: v["state"] for c, v in st["cameras"].items()})
            if states != last_status:
                last_status = states
                self.outlets.publish_status(st)
            now = time.monotonic()
            if now - last_sample >= 1.0:
                sampled, last_sample = self._sample(now - last_sample, sampled), now
            if now - last_stats >= self.cfg.stats_interval_s:
                payload = self.stats_payload(now - last_stats, prev_frames)
                self.outlets.publish_stats(payload)
                prev_frames = Counter(payload["frames"])
                last_stats = now
            if now - last_batch >= 1.0:
                self._flush_audit_batches()
                last_batch = now
            if now - last_purge >= self.cfg.privacy.purge_interval_s:
                receipt = self.purge()
                if any(n for counts in receipt.values() for n in counts.values()):
                    self.audit.append("purge", at="timer", counts=receipt)
                last_purge = now
            if now - last_checkpoint >= self.cfg.privacy.checkpoint_interval_s:
                self.publish_checkpoint()
                last_checkpoint = now
            if until_sources_end and not any(t.is_alive() for t in recorded) and self._idle():
                log.info("all sources finished")
                break
        log.info("shutting down: finishing frames in flight")
        notifier.stopping()
        self._stop_sources.set()
        for t in feeders:
            t.join(timeout=5)
        for _ in workers:
            self.frames.put(_DONE)
        for t in workers:
            t.join(timeout=30)
        for c in self.cameras.values():
            self._emit(c.pipeline.finish())
        if self.location is not None:
            self.location.stop()
        self.outlets.publish_status(self.status())
        self.outlets.drain(10.0 if until_sources_end else 5.0)
        self._flush_audit_batches(force=True)
        self.audit.append("stop", transparency=self.transparency())
        self.publish_checkpoint()
        # Final counts, so what a hits_only destination never saw is still counted there.
        self.outlets.publish_stats(self.stats_payload(max(time.monotonic() - last_stats, 1e-3), prev_frames))
        self.outlets.close(self.status(online=False))
        if server is not None:
            server.stop()
        notifier.close()
        log.info("stopped: %s", self._final_counts())
        ended = [s for s in self.sources if s.status.state == "error"]
        if until_sources_end and self.sources and len(ended) == len(self.sources):
            log.error("every camera ended in error: %s",
                      "; ".join(f"{s.cam.id} ({s.status.detail})" for s in ended))
            return 1
        return 0

    def _final_counts(self) -> str:
        """Where every message went, per destination: made = published + spooled + dropped."""
        parts = []
        for o in self.outlets:
            st = o.stats()
            d = st["dropped"]
            parts.append(f"{o.name}: {st['spooled']} made, {st['published']} published, {st['spool_depth']} left "
                         f"in the spool, dropped spool_full {d['spool_full']} spool_error {d['spool_error']}")
        held = self.audit.held()
        return "; ".join(parts) + (f"; {held} audit entr(ies) never written (disk)" if held else "")

    def _idle(self) -> bool:
        with self._busy_lock:
            return self.frames.empty() and self._busy == 0


def _rates(counts: Mapping[str, int], prev: Mapping[str, int], interval_s: float) -> dict[str, float]:
    """Per camera: frames analysed per second since `prev` (the stats message's fps, and /status's)."""
    return {cam: round((n - prev.get(cam, 0)) / interval_s, 2) for cam, n in counts.items()}
