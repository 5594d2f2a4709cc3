"""End-to-end throughput: `python -m alprd.benchmarks.throughput [--seconds S] [--models DIR]`.

Renders realistic synthetic traffic (vehicles with gaps where nothing moves) at 1920x1080 and
1280x720, 30 fps, the same 1080p traffic seen from a moving (panning, zooming) camera, where the
whole frame changes every frame, plus the test suite's own clip, and runs on each, in the same process:

  plain      decode every frame, detector + OCR on every whole frame, one thread (the baseline)
  every      the unit's pipeline (`alprd bench`'s runner) with motion gating and track following
             (tracking.follow) off: the read events every frame gives
  default    the unit's pipeline with default settings (decode thread, motion gate, regions)

and prints frames/s, the ratio to plain, per-stage ms (p50/p95) and read-event parity: every plate
that `every` publishes must also be published by `default`. Figures, not pass/fail; the machine's
other load shows in them, so compare ratios from one run."""

from __future__ import annotations

import argparse
import dataclasses
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from alprd.bench.runner import run_bench
from alprd.config import INPUT_WIDTH_RULE, CameraConfig, Config, ModelsConfig, MotionConfig, TrackingConfig, is_input_width
from alprd.recognition.recognizer import Recognizer, Timings
from alprd.synth.video import Vehicle, vehicles_read, write_traffic_video


def peak_rss_mb() -> float:
    """This program's peak RSS. Not getrusage's ru_maxrss: Linux carries that over from the parent
    across fork and exec, so a small child of a big parent reports the parent's peak."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def pct(xs: list[float], q: float) -> float:
    return float(np.percentile(xs, q)) if xs else 0.0


def plain(video: Path, rec: Recognizer) -> tuple[float, dict[str, list[float]], list[dict], int]:
    """Decode every frame and run detector + OCR on the whole of it, in one thread."""
    cap = cv2.VideoCapture(str(video), cv2.CAP_FFMPEG)
    stages: dict[str, list[float]] = {"decode": [], "detect": [], "ocr": []}
    reads: list[dict] = []
    n = 0
    t_start = time.perf_counter()
    while True:
        t0 = time.perf_counter()
        ok, img = cap.read()
        t1 = time.perf_counter()
        if not ok:
            break
        tm = Timings()
        for r in rec.recognize(img, tm):
            reads.append({"plate": r.text, "frame_index": n, "box": list(r.box)})
        stages["decode"].append((t1 - t0) * 1000)
        stages["detect"].append(tm.detect_ms)
        stages["ocr"].append(tm.ocr_ms)
        n += 1
    cap.release()
    return n / (time.perf_counter() - t_start), stages, reads, n


def config(motion: bool, models: ModelsConfig, follow: bool = True) -> Config:
    cam = CameraConfig(id="bench", source="-", motion=MotionConfig(enabled=motion))
    return Config(unit_id="bench", cameras=(cam,), models=models, tracking=TrackingConfig(follow=follow))


def stage_line(name: str, xs: list[float], frames: int) -> str:
    if not xs:
        return f"    {name:<14} not run"
    return (f"    {name:<14} {sum(xs) / max(1, frames):7.2f} ms/frame   p50 {pct(xs, 50):7.2f}   p95 {pct(xs, 95):7.2f} ms"
            f"   ({len(xs)} of {frames} frames)")


def measure(name: str, video: Path, rec: Recognizer, models: ModelsConfig, truth: list[Vehicle]) -> dict:
    w, h = cv2.VideoCapture(str(video)).read()[1].shape[1::-1]
    print(f"\n== {name}: {w}x{h} {video.name}", flush=True)
    c0 = time.process_time()
    p_fps, p_stages, p_reads, n = plain(video, rec)
    p_cpu = (time.process_time() - c0) * 1000 / max(1, n)
    every = run_bench(video, config(False, models, follow=False), recognizer=rec, thumbnails=False)
    gated = run_bench(video, config(True, models), recognizer=rec, thumbnails=False)
    fps = gated.throughput_fps
    print(f"  plain   {p_fps:7.1f} frames/s  ({n} frames, {p_fps / gated.fps:4.2f}x real time)")
    for k, v in p_stages.items():
        print(stage_line(k, v, n))
    print(f"  every   {every.throughput_fps:7.1f} frames/s  ratio to plain {every.throughput_fps / p_fps:4.2f}")
    print(f"  default {fps:7.1f} frames/s  ratio to plain {fps / p_fps:4.2f}  ({fps / gated.fps:4.2f}x real time)")
    for k in ("decode", "gate", "detect", "ocr", "track_publish"):
        print(stage_line(k, gated.stages[k], gated.frames))
    g = gated.gate
    cpu = {k: sum(gated.stages[f"cpu_{k}"]) / max(1, gated.frames) for k in ("decode", "recognize", "pipeline")}
    total_cpu = gated.cpu_s * 1000 / max(1, gated.frames)
    print(f"    CPU per frame: decode+gate thread {cpu['decode']:.2f} ms, recognition {cpu['recognize']:.2f} ms, pipeline "
          f"{cpu['pipeline']:.2f} ms; whole process {total_cpu:.2f} ms (plain: {p_cpu:.2f} ms) = at most "
          f"{2000 / max(total_cpu, 1e-6):.0f} frames/s if both cores were ours")
    print(f"    gate: analysed {g.get('analysed', 0)} (in regions {g.get('regions', 0)}), static {g.get('static', 0)} of {gated.frames}")
    tr = gated.tracking
    print(f"    tracks followed: whole-frame detection {tr.get('full_frames', 0)}, windows only {tr.get('window_frames', 0)}; "
          f"plates not read (settled) {tr.get('ocr_skipped', 0)}, plans late {tr.get('plan_late', 0)}")
    p_seen, p_exact = vehicles_read(p_reads, truth)
    e_seen, e_exact = vehicles_read(every.reads, truth)
    g_seen, g_exact = vehicles_read(gated.reads, truth)
    lost = sorted((e_seen - g_seen) | (e_exact - g_exact))
    print(f"  read events ({len(truth)} vehicles): with a read / read exactly: plain {len(p_seen)}/{len(p_exact)}, "
          f"every {len(e_seen)}/{len(e_exact)}, default {len(g_seen)}/{len(g_exact)}; "
          f"lost against every-frame: {len(lost)}{' ' + str(lost) if lost else ''}")
    print(f"  published read events (first reads and updates): every {len(every.reads)}, default {len(gated.reads)}")
    return {"name": name, "plain_fps": p_fps, "fps": fps, "ratio": fps / p_fps, "lost": lost,
            "cpu_ratio": p_cpu / max(total_cpu, 1e-6)}


def live_latency(video: Path, rec: Recognizer, seconds: float, work: Path) -> None:
    """A live 1080p camera at 30 fps: a capture thread decodes the video in real time and hands the
    newest frame over (as LiveSource does); the pipeline analyses it and each read is written to a
    spool (as the daemon's _emit does). Frame-to-publish latency = capture to spooled, per analysed
    frame; RSS of this process = one camera with models loaded."""
    import threading

    from alprd.camera import build_camera
    from alprd.geometry import Frame
    from alprd.publish.payload import encode
    from alprd.publish.spool import Spool
    from alprd.sources.sources import motion_detector

    cam = CameraConfig(id="live", source="-")
    counts = {"captured": 0, "replaced": 0}
    wiring = build_camera(Config(unit_id="bench", cameras=(cam,)), cam, rec, include_crop=False, location=None,
                          live=True, newest=lambda: counts["captured"] - 1)
    gate, pipe = wiring.gate, wiring.pipeline
    spool = Spool(str(work / "live-spool.db"), 500_000)
    latest: list[Frame | None] = [None]
    cond = threading.Condition()
    stop = threading.Event()

    def camera() -> None:
        cap = cv2.VideoCapture(str(video), cv2.CAP_FFMPEG)
        i = 0
        t0 = time.perf_counter()
        while not stop.is_set():
            ok, img = cap.read()
            if not ok:
                cap.release()
                cap = cv2.VideoCapture(str(video), cv2.CAP_FFMPEG)
                continue
            time.sleep(max(0.0, t0 + i / 30 - time.perf_counter()))  # the camera's own pace
            f = Frame("live", i, int(time.time() * 1000), img)
            with cond:
                counts["replaced"] += latest[0] is not None
                latest[0] = f
                cond.notify()
            counts["captured"] += 1
            i += 1
        cap.release()

    threading.Thread(target=camera, daemon=True).start()
    motion = motion_detector(cam)
    assert motion is not None  # a camera's motion test is on unless its config turns it off
    lat: list[float] = []
    done = 0
    end = time.time() + seconds
    while time.time() < end:
        with cond:
            while latest[0] is None:
                cond.wait(0.1)
            f, latest[0] = latest[0], None
        f = dataclasses.replace(f, motion=motion.analyse(f.image, f.timestamp_ms))
        before = gate.counts["analysed"]
        for m in pipe.process(f):
            spool.put(f"alprd/bench/live/{m.kind}", encode(m.payload), m.read_id, m.timestamp_ms)
        done += 1
        if gate.counts["analysed"] > before:
            lat.append(time.time() * 1000 - f.timestamp_ms)
    stop.set()
    spool.close()
    rss = peak_rss_mb()
    print(f"\n== live camera, 1920x1080 at 30 fps for {seconds:.0f} s: {counts['captured']} frames captured, "
          f"{counts['replaced']} replaced before analysis (skipped), {done} handed to the pipeline; gate {gate.snapshot()}")
    print(f"  frame-to-publish (capture to spooled) of analysed frames: p50 {pct(lat, 50):.1f} ms, p95 {pct(lat, 95):.1f} ms, "
          f"max {max(lat) if lat else 0:.1f} ms; peak RSS {rss:.0f} MB (this process: one live camera, models loaded)")


def selected(name: str, only: list[str]) -> bool:
    """--only by name prefix, except that "1080p30" means the still camera's clip and not also the moving one."""
    return any(name == o or (name.startswith(o) and not name.endswith("-moving")) for o in only)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m alprd.benchmarks.throughput")
    ap.add_argument("--models", type=Path, default=None)
    ap.add_argument("--seconds", type=float, default=24.0, help="length of each synthetic video")
    ap.add_argument("--vehicles", type=int, default=6)
    ap.add_argument("--live-seconds", type=float, default=15.0)
    ap.add_argument("--live-only", type=Path, default=None, help=argparse.SUPPRESS)  # VIDEO: the live figure alone
    ap.add_argument("--only", default="", help="comma-separated: 1080p30,1080p30-moving,720p30,test")
    ap.add_argument("--keep", type=Path, default=None, help="render the videos here and keep them")
    ap.add_argument("--input-width", type=int, default=ModelsConfig.detector_input_width,
                    help="models.detector_input_width (config/pole.yaml: 800)")
    args = ap.parse_args(argv)
    if not is_input_width(args.input_width):
        ap.error(f"--input-width {args.input_width}: must be {INPUT_WIDTH_RULE}")
    models = ModelsConfig(dir=str(args.models) if args.models else "", detector_input_width=args.input_width)
    rec = Recognizer.from_config(models)
    if args.live_only:
        live_latency(args.live_only, rec, args.live_seconds, args.live_only.parent)
        return 0
    print(f"alprd throughput; {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at start; models "
          f"{rec.model_versions}; detector input width {models.detector_input_width}, intra_op_threads {models.intra_op_threads}")
    work = args.keep or Path(tempfile.mkdtemp(prefix="alprd-throughput-"))
    work.mkdir(parents=True, exist_ok=True)
    results = []
    for name, w, h, fps, secs, veh, seed, noise, moving_camera in (
        ("1080p30", 1920, 1080, 30.0, args.seconds, args.vehicles, 3, False, False),
        # a patrol car's camera: pans and zooms, so the whole frame changes and the motion gate skips little
        ("1080p30-moving", 1920, 1080, 30.0, args.seconds, args.vehicles, 3, False, True),
        ("720p30", 1280, 720, 30.0, args.seconds, args.vehicles, 4, False, False),
        ("test-suite clip", 960, 540, 10.0, 6.0, 4, 7, True, False),  # tests/conftest.py's traffic_video
    ):
        if args.only and not selected(name, args.only.split(",")):
            continue
        path = work / f"{name.split()[0]}.mp4"
        truth = write_traffic_video(path, vehicles=veh, seconds=secs, width=w, height=h, fps=fps, seed=seed, noise=noise,
                                    moving_camera=moving_camera)
        moving = len(set().union(*[range(v.start_frame, v.end_frame + 1) for v in truth]))
        print(f"\nrendered {path.name}: {int(secs * fps)} frames, vehicles on screen in {moving} of them", flush=True)
        results.append(measure(name, path, rec, models, truth))
    if args.live_seconds > 0 and (work / "1080p30.mp4").exists():
        # In a process of its own, so its memory figure is one camera's and not the offline runs'.
        import subprocess

        cmd = [sys.executable, "-m", "alprd.benchmarks.throughput", "--live-only", str(work / "1080p30.mp4"),
               "--live-seconds", str(args.live_seconds), "--input-width", str(args.input_width)] + (
                   ["--models", str(args.models)] if args.models else [])
        sys.stdout.flush()
        subprocess.run(cmd, check=False, stdout=None)
    print("\nsummary:")
    for r in results:
        print(f"  {r['name']:<16} plain {r['plain_fps']:6.1f} fps, default {r['fps']:6.1f} fps, "
              f"x{r['ratio']:.2f} (CPU per frame x{r['cpu_ratio']:.2f} less), read events lost {len(r['lost'])}")
    print(f"load average {os.getloadavg()[0]:.1f} at end")
    return 0


if __name__ == "__main__":
    sys.exit(main())
