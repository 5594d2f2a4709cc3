"""Per-frame reads vs per-vehicle read events on a synthetic traffic clip with known plates.

    python3 -m alprd.benchmarks.tracking [--vehicles 8 --parked 2 --fast 2 --seconds 20 --seed 3]

Drives a camera wired by alprd.camera.build_camera, as the bench and the daemon do (frames in
order, then finish()), and maps every per-frame read and every read event to the vehicle whose
ground-truth plate box it overlaps. Prints per-frame accuracy (share of frame reads with the
vehicle's exact plate) and per-event accuracy (share of vehicles whose one first read is exactly
right), duplicates included."""

from __future__ import annotations

import argparse
import dataclasses
import json
import random
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import cv2

from alprd.camera import build_camera
from alprd.config import CameraConfig, Config, FormatsConfig, ModelsConfig, TrackingConfig
from alprd.geometry import Frame
from alprd.pipeline import Outbound
from alprd.recognition.recognizer import Recognizer
from alprd.synth.plates import LAYOUT_NAMES
from alprd.synth.video import Vehicle, vehicle_at, write_traffic_video


def run(video: Path, truth: list[Vehicle], recognizer: Recognizer, tracking: TrackingConfig | None = None,
        formats: FormatsConfig | None = None, fps: float = 15.0, drop: float = 0.0, drop_seed: int = 0) -> dict[str, Any]:
    """`drop`: the share of frames a live camera on a busy unit would skip (frames keep their index
    and timestamp, as a live source's do)."""
    cam = CameraConfig(id="cam", source=str(video), tracking=tracking, formats=formats)
    pipe = build_camera(Config(unit_id="bench", cameras=(cam,)), cam, recognizer, include_crop=False, location=None).pipeline
    frame_reads: list[tuple[int, str, tuple[int, ...]]] = []
    analyse = pipe._analyse

    def spy(frame: Frame):  # the same analyses the pipeline tracks, also counted per frame
        a = analyse(frame)
        frame_reads.extend((frame.index, r.text, r.box) for r, _, _ in a.reads)
        return a

    pipe._analyse = spy  # type: ignore[method-assign]
    out: list[Outbound] = []
    cap = cv2.VideoCapture(str(video))
    rng = random.Random(drop_seed)
    i = 0
    while True:
        ok, img = cap.read()
        if not ok:
            break
        if not (drop and rng.random() < drop):
            out += pipe.process(Frame("cam", i, int(i * 1000 / fps), img))
        i += 1
    cap.release()
    out += pipe.finish()

    per_frame = Counter()
    reads_per_vehicle: Counter[str] = Counter()
    texts_per_vehicle: dict[str, Counter[str]] = {v.text: Counter() for v in truth}
    for idx, text, box in frame_reads:
        v = vehicle_at(truth, idx, box)
        per_frame["reads"] += 1
        if v is None:
            per_frame["unmatched"] += 1
            continue
        reads_per_vehicle[v.text] += 1
        texts_per_vehicle[v.text][text] += 1
        per_frame["correct" if text == v.text else "wrong"] += 1
    firsts = [m.payload for m in out if m.kind == "read" and m.payload["event"] == "first"]
    updates = [m.payload for m in out if m.kind == "read" and m.payload["event"] == "update"]
    events: dict[str, list[dict[str, Any]]] = {}
    stray = []
    for p in firsts:
        v = vehicle_at(truth, p["frame_index"], p["box"])
        if v is None:
            stray.append(p["plate"])
        else:
            events.setdefault(v.text, []).append(p)
    final = {p["read_id"]: p["plate"] for p in firsts}
    final.update({p["read_id"]: p["plate"] for p in updates})
    rows = []
    for v in truth:
        ev = events.get(v.text, [])
        texts = texts_per_vehicle[v.text]
        rows.append({"plate": v.text, "layout": v.layout, "parked": v.parked,
                     "frames": v.end_frame - v.start_frame + 1, "frame_reads": reads_per_vehicle[v.text],
                     "majority": texts.most_common(1)[0][0] if texts else "",
                     "events": len(ev), "first": [e["plate"] for e in ev],
                     "final": [final[e["read_id"]] for e in ev]})
    n = len(truth)
    n_reads = per_frame["reads"]
    return {
        "vehicles": n,
        "frames": i,
        "frame_reads": n_reads,
        "frame_reads_correct": per_frame["correct"],
        "frame_reads_wrong": per_frame["wrong"] + per_frame["unmatched"],
        "per_frame_accuracy": round(per_frame["correct"] / n_reads, 3) if n_reads else 0.0,
        # Each vehicle counts once: a parked car read on every frame would otherwise dominate.
        "per_frame_accuracy_vehicle_mean": round(sum(
            texts_per_vehicle[v.text][v.text] / reads_per_vehicle[v.text] if reads_per_vehicle[v.text] else 0.0
            for v in truth) / n, 3),
        "read_events": len(firsts),
        "updates": len(updates),
        "stray_events": stray,
        "vehicles_with_one_event": sum(1 for r in rows if r["events"] == 1),
        "events_correct_first": sum(1 for r in rows if r["events"] == 1 and r["first"] == [r["plate"]]),
        "events_correct_final": sum(1 for r in rows if r["events"] == 1 and r["final"] == [r["plate"]]),
        "per_event_accuracy": round(sum(1 for r in rows if r["events"] == 1 and r["final"] == [r["plate"]]) / n, 3),
        "pipeline": pipe.stats(),
        "per_vehicle": rows,
    }


def add_scene_args(ap: argparse.ArgumentParser) -> None:
    """The synthetic traffic scene the tracking and hit-latency benchmarks share."""
    ap.add_argument("--vehicles", type=int, default=8)
    ap.add_argument("--parked", type=int, default=2)
    ap.add_argument("--fast", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--fps", type=float, default=15.0)
    ap.add_argument("--seed", type=int, default=3)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_scene_args(ap)
    ap.add_argument("--layouts", default="", help="comma-separated plate layouts of the passing vehicles "
                    "(us, eu, br, mercosur, us2, eu2, us_varied; default: all but us_varied in turn)")
    ap.add_argument("--models", default="", help="models folder (default: the shipped models)")
    ap.add_argument("--drop", default="0", help="share of frames skipped at random (a live camera on a busy unit)")
    ap.add_argument("--repeat-window", type=float, default=TrackingConfig.repeat_window_s,
                    help="tracking.repeat_window_s (0: every track is a pass of its own)")
    ap.add_argument("--no-follow", action="store_true",
                    help="tracking.follow off: every frame detected whole, every plate read (the reference)")
    ap.add_argument("--json", action="store_true", help="print the full result as JSON")
    ap.add_argument("--sweep", default="", help="comma-separated seeds: one summary line per seed and "
                    "--drop value (comma-separated too), then totals")
    args = ap.parse_args(argv)
    for name in filter(None, args.layouts.split(",")):
        if name not in LAYOUT_NAMES:
            print(f"--layouts: unknown plate layout {name!r}; valid: {', '.join(LAYOUT_NAMES)}", file=sys.stderr)
            return 2
    if args.sweep:
        return sweep(args)
    with tempfile.TemporaryDirectory() as tmp:
        video = Path(tmp) / "traffic.mp4"
        truth = write_traffic_video(video, vehicles=args.vehicles, seconds=args.seconds, width=960, height=540,
                                    fps=args.fps, seed=args.seed, parked=args.parked, fast=args.fast,
                                    layouts=tuple(args.layouts.split(",")) if args.layouts else None)
        rec = Recognizer.from_config(dataclasses.replace(ModelsConfig(), dir=args.models))
        res = run(video, truth, rec, tracking=TrackingConfig(repeat_window_s=args.repeat_window, follow=not args.no_follow), fps=args.fps,
                  drop=float(args.drop), drop_seed=args.seed)
    if args.json:
        print(json.dumps(res, indent=1))
        return 0
    for r in res["per_vehicle"]:
        kind = "parked" if r["parked"] else f"{r['frames']} frames"
        print(f"  {r['plate']:<9} {r['layout']:<9} {kind:<10} frame reads {r['frame_reads']:>3}  events {r['events']}"
              f"  first {','.join(r['first']) or '-':<9} final {','.join(r['final']) or '-'}")
    print(f"vehicles {res['vehicles']}  frames {res['frames']}")
    print(f"per-frame: {res['frame_reads']} reads, {res['frame_reads_correct']} exactly right, "
          f"{res['frame_reads_wrong']} wrong -> accuracy {res['per_frame_accuracy']:.1%} "
          f"(mean over vehicles {res['per_frame_accuracy_vehicle_mean']:.1%})")
    print(f"per-event: {res['read_events']} read events (+{res['updates']} updates), "
          f"{res['vehicles_with_one_event']} vehicles with exactly one, {res['events_correct_final']} right "
          f"-> accuracy {res['per_event_accuracy']:.1%}; stray events {res['stray_events']}")
    print("pipeline counts", res["pipeline"])
    return 0


def sweep(args: argparse.Namespace) -> int:
    """Many clips: how often a vehicle pass gives two events (duplicates), or none although read twice."""
    rec = Recognizer.from_config(dataclasses.replace(ModelsConfig(), dir=args.models))
    total: Counter[str] = Counter()
    for seed in (int(x) for x in args.sweep.split(",")):
        with tempfile.TemporaryDirectory() as tmp:
            video = Path(tmp) / "traffic.mp4"
            truth = write_traffic_video(video, vehicles=args.vehicles, seconds=args.seconds, width=960, height=540,
                                        fps=args.fps, seed=seed, parked=args.parked, fast=args.fast,
                                        layouts=tuple(args.layouts.split(",")) if args.layouts else None)
            for drop in (float(x) for x in str(args.drop).split(",")):
                tracking = TrackingConfig(repeat_window_s=args.repeat_window, follow=not args.no_follow)
                r = run(video, truth, rec, tracking=tracking, fps=args.fps,
                        drop=drop, drop_seed=seed)
                dups = [v["plate"] for v in r["per_vehicle"] if v["events"] > 1]
                missed = [v["plate"] for v in r["per_vehicle"] if v["events"] == 0 and v["frame_reads"] >= 2]
                total.update(vehicles=r["vehicles"], events=r["read_events"], duplicated=len(dups),
                             missed=len(missed), right=r["events_correct_final"], stray=len(r["stray_events"]),
                             frame_reads=r["frame_reads"], frame_right=r["frame_reads_correct"])
                print(f"seed {seed} drop {drop:g}: {r['vehicles']} vehicles, {r['read_events']} events, "
                      f"{r['events_correct_final']} right; two events: {dups or '-'}; none although read twice: "
                      f"{missed or '-'}; stray {len(r['stray_events'])}", flush=True)
    print(f"total: {total['vehicles']} vehicle passes, {total['events']} read events ({total['right']} right, "
          f"{total['right'] / max(1, total['events']):.1%}), {total['duplicated']} passes with two events, "
          f"{total['missed']} read twice but no event, {total['stray']} stray; per-frame: {total['frame_reads']} reads, "
          f"{total['frame_right'] / max(1, total['frame_reads']):.1%} right")
    return 0


if __name__ == "__main__":
    sys.exit(main())
