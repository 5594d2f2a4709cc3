"""Hotlist hit latency, frame timestamp to PUBACK, on a synthetic traffic clip played like a live
camera (real-time pace, wall-clock timestamps, newest frame wins), through the real daemon, spool
and a real mosquitto on a loopback port.

    python3 -m alprd.benchmarks.hit_latency [--seconds 20 --vehicles 8 --parked 2 --fast 2 --seed 3]

Every plate of the clip is on the hotlist, so every read event is also a hit. The latency of a hit
is the time its PUBACK arrives minus the timestamp of the frame whose processing decided it
(`decided_ms`: the frame whose read made the track match, or the frame that ended the track). Needs the
`mosquitto` binary."""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import yaml

from alprd.benchmarks.tracking import add_scene_args
from alprd.config import CameraConfig, load_config
from alprd.daemon import Daemon
from alprd.sources.sources import LiveSource
from alprd.synth.video import write_traffic_video


class _PacedCapture:
    """cv2.VideoCapture look-alike that delivers a file's frames at its frame rate, like a camera."""

    def __init__(self, path: str, fps: float):
        self.cap = cv2.VideoCapture(path)
        self.period = 1.0 / fps
        self.next = time.monotonic()

    def isOpened(self) -> bool:  # noqa: N802 - cv2's name
        return self.cap.isOpened()

    def read(self) -> tuple[bool, np.ndarray | None]:
        delay = self.next - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        self.next += self.period
        return self.cap.read()

    def release(self) -> None:
        self.cap.release()


class PacedCamera(LiveSource):
    def __init__(self, cam: CameraConfig, fps: float):
        super().__init__(cam)
        self.fps = fps
        self.opened = 0

    def _open(self) -> Any:
        self.opened += 1
        if self.opened > 1:  # the clip plays once; afterwards the "camera" is down
            return _Closed()
        return _PacedCapture(self.cam.source, self.fps)


class _Closed:
    def isOpened(self) -> bool:  # noqa: N802
        return False

    def read(self):
        return False, None

    def release(self) -> None:
        pass


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.array(values), q)) if values else float("nan")


def measure(work: Path, seconds: float, vehicles: int, parked: int, fast: int, fps: float, seed: int,
            models: str = "", workers: int = 2) -> dict[str, Any]:
    if not shutil.which("mosquitto"):
        raise SystemExit("hit_latency: the mosquitto binary is needed (apt-get install mosquitto)")
    video = work / "traffic.mp4"
    truth = write_traffic_video(video, vehicles=vehicles, seconds=seconds, width=960, height=540, fps=fps,
                                seed=seed, parked=parked, fast=fast, layouts=("us", "br", "mercosur", "eu"))
    hotlist = work / "hotlist.csv"
    hotlist.write_text("plate,reason,priority\n" + "".join(f"{v.text},bench,{i % 3 + 1}\n" for i, v in enumerate(truth)))
    port = _free_port()
    conf = work / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\nlog_dest none\n")
    broker = subprocess.Popen(["mosquitto", "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        cfg_path = work / "alprd.yaml"
        cfg_path.write_text(yaml.safe_dump({
            "unit_id": "bench", "cameras": [{"id": "cam1", "source": str(video)}],
            "models": {"dir": models} if models else {},
            "mqtt": {"host": "127.0.0.1", "port": port}, "spool": {"path": str(work / "spool.db")},
            "hotlist": {"path": str(hotlist)}, "workers": workers, "stats_interval_s": 5,
            "logging": {"level": "WARNING"}}))
        cfg = load_config(cfg_path)
        cam = PacedCamera(cfg.cameras[0], fps)
        daemon = Daemon(cfg, sources=[cam])

        # PUBACK times: the spool row of a message is deleted when its PUBACK arrives.
        sent: dict[int, tuple[str, bytes]] = {}
        acked: list[tuple[float, str, dict[str, Any]]] = []
        spool = daemon.outlets.primary.spool
        pending, ack = spool.pending, spool.ack

        def spy_pending(limit, exclude=frozenset()):
            msgs = pending(limit, exclude)
            for m in msgs:
                sent[m.seq] = (m.topic, m.payload)
            return msgs

        def spy_ack(seq: int) -> None:
            now = time.time()
            ack(seq)
            if seq in sent:
                topic, payload = sent[seq]
                acked.append((now, topic, json.loads(payload)))

        spool.pending = spy_pending  # type: ignore[method-assign]
        spool.ack = spy_ack  # type: ignore[method-assign]
        runner = threading.Thread(target=daemon.run, name="daemon", daemon=True)
        runner.start()
        time.sleep(seconds + 2.0)  # the clip, then the last tracks' end (max_missed_s 1 s)
        daemon.shutdown.set()
        runner.join(60)
        stats = daemon.cameras["cam1"].pipeline.stats()
        skipped = cam.status.skipped
    finally:
        broker.terminate()
        broker.wait(10)
    hits = [(t, p) for t, topic, p in acked if topic.endswith("/hit")]
    firsts = [(t, p) for t, topic, p in acked if topic.endswith("/read") and p.get("event") == "first"]
    lat = [t * 1000 - p["decided_ms"] for t, p in hits]
    since_seen = [t * 1000 - p["read"]["track"]["first_seen_ms"] for t, p in hits]
    return {
        "vehicles": len(truth),
        "frames": int(seconds * fps),
        "frames_skipped": skipped,
        "hits": len(hits),
        "first_reads": len(firsts),
        "hit_latency_ms": {"p50": round(_percentile(lat, 50), 1), "p95": round(_percentile(lat, 95), 1),
                           "max": round(max(lat), 1) if lat else None},
        "first_read_latency_ms_p95": round(_percentile([t * 1000 - p["timestamp_ms"] for t, p in firsts], 95), 1),
        "hit_since_first_sighting_ms": {"p50": round(_percentile(since_seen, 50), 1),
                                        "p95": round(_percentile(since_seen, 95), 1)},
        "hits_by_plate": sorted(p["plate"] for _, p in hits),
        "per_hit": [{"plate": p["plate"], "listed": p["match"]["listed"], "latency_ms": round(t * 1000 - p["decided_ms"], 1),
                     "event": p["read"]["event"], "track_ended": p["read"]["track"]["ended"],
                     "reads": p["read"]["track"]["reads"], "frame_index": p["read"]["frame_index"]} for t, p in hits],
        "pipeline": stats,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_scene_args(ap)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--models", default="", help="models folder (default: the shipped models)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    with tempfile.TemporaryDirectory() as tmp:
        res = measure(Path(tmp), args.seconds, args.vehicles, args.parked, args.fast, args.fps, args.seed,
                      args.models, args.workers)
    print(json.dumps(res, indent=1))
    lat = res["hit_latency_ms"]
    print(f"hit latency, frame timestamp to PUBACK: p50 {lat['p50']} ms, p95 {lat['p95']} ms, max {lat['max']} ms "
          f"over {res['hits']} hits ({res['vehicles']} vehicles, {res['frames']} frames at {args.fps:g} fps, "
          f"{res['frames_skipped']} skipped as a live camera would)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
