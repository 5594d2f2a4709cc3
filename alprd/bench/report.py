"""What `alprd bench` writes: reads.jsonl, reads.csv, summary.json, report.html (one self-contained
file: thumbnails are embedded), and optionally annotated.mp4."""

from __future__ import annotations

import base64
import csv
import html
import json
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from alprd.bench.figures import conf_colour, confidence_chart, scene_svg
from alprd.bench.position import curve_scale, histogram_svg, verdict
from alprd.bench.runner import BenchResult

STAGES = (("decode", "decode (own thread)"), ("gate", "motion gate (decode thread)"), ("detect", "detect"),
          ("ocr", "OCR"), ("track_publish", "tracking / publish"), ("pipeline", "pipeline call, in frame order"))

MAX_CARDS = 1000  # a card per read; beyond this the page gets too heavy to open

CSV_FIELDS = ["read_id", "event", "plate", "confidence", "detection_confidence", "video_s", "frame_index", "timestamp",
              "x1", "y1", "x2", "y2", "plate_width_px", "hit", "gps_fix", "lat", "lon", "speed_kmh", "heading",
              "gps_age_ms", "gps_stale"]


def pct(xs: list[float], q: float) -> float:
    return float(np.percentile(xs, q)) if xs else 0.0


def vehicle_passes(reads: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One entry per read_id, in order of first read: an update replaces the first read it refines."""
    return list({p["read_id"]: p for p in reads}.values())


def summary(res: BenchResult) -> dict[str, Any]:
    stages = {}
    for key, _ in STAGES:
        xs = res.stages.get(key, [])
        stages[key] = {"runs": len(xs), "mean_ms_per_frame": round(sum(xs) / max(1, res.frames), 3),
                       "p50_ms": round(pct(xs, 50), 3), "p95_ms": round(pct(xs, 95), 3)}
    widths = [p["box"][2] - p["box"][0] for p in res.reads]
    cpu = {k: round(sum(res.stages.get(f"cpu_{k}", [])) / max(1, res.frames), 3) for k in ("decode", "recognize", "pipeline")}
    return {
        "video": res.video, "camera": res.camera, "width": res.width, "height": res.height, "fps": round(res.fps, 3),
        "frames": res.frames, "video_s": round(res.video_s, 3), "wall_s": round(res.wall_s, 3),
        "throughput_fps": round(res.throughput_fps, 2), "x_real_time": round(res.throughput_fps / res.fps, 2) if res.fps else None,
        "realtime_pace": res.realtime, "models": res.models, "reads": len(res.reads),
        "vehicle_passes": len(vehicle_passes(res.reads)),
        "distinct_plates": len({p["plate"] for p in res.reads}), "other_messages": len(res.others),
        "gate": res.gate, "tracking": res.tracking, "workers": res.workers, "stages": stages, "cpu_ms_per_frame": cpu, "gps": res.gps,
        "plate_width_px": {"min": min(widths), "median": float(np.median(widths)), "max": max(widths)} if widths else None,
        "position": _position(res),
    }


def pass_widths(res: BenchResult) -> list[float]:
    """One plate width per vehicle pass: its read's box, in video px."""
    return [float(p["box"][2] - p["box"][0]) for p in vehicle_passes(res.reads)]


def _scale(res: BenchResult) -> float:
    return curve_scale(res.width_curve, res.width, res.input_width) if res.width_curve else 1.0


def _position(res: BenchResult) -> dict[str, Any]:
    v = verdict(pass_widths(res), res.width_curve, _scale(res))
    c = res.width_curve
    return {"verdict": v.text, "level": v.level,
            "expected_detection_rate": None if v.rate is None else round(v.rate, 4),
            "curve": None if c is None else {"frame_width": c.frame_width, "input_width": c.input_width,
                                             "split": c.split, "scenes": c.scenes, "width_scale": round(_scale(res), 4)}}


def pass_confidences(res: BenchResult, read_id: str) -> list[tuple[float, float]]:
    """(video s, confidence) of every per-frame read of the tracks behind one vehicle pass."""
    tracks = {p["track"]["id"] for p in res.reads if p["read_id"] == read_id and p.get("track")}
    seen: dict[int, float] = {}
    for tid in tracks:
        for fi, (conf, _) in res.observations.get(tid, {}).items():
            seen[fi] = max(conf, seen.get(fi, 0.0))
    if not seen:  # tracking off, or a track the bench did not see: the read itself
        seen = {int(p["frame_index"]): float(p["confidence"]) for p in res.reads if p["read_id"] == read_id}
    fps = res.fps or 1.0
    return [(fi / fps, c) for fi, c in sorted(seen.items())]


def write_outputs(res: BenchResult, out: Path, annotate: bool = False) -> dict[str, Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = {"jsonl": out / "reads.jsonl", "csv": out / "reads.csv", "summary": out / "summary.json",
             "html": out / "report.html"}
    with open(paths["jsonl"], "w") as f:
        for p in res.reads:
            f.write(json.dumps(p, separators=(",", ":")) + "\n")
    if res.others:
        paths["others"] = out / "messages.jsonl"
        with open(paths["others"], "w") as f:
            for p in res.others:
                f.write(json.dumps(p, separators=(",", ":")) + "\n")
    with open(paths["csv"], "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=CSV_FIELDS)
        w.writeheader()
        for p in res.reads:
            w.writerow(csv_row(p))
    s = summary(res)
    paths["summary"].write_text(json.dumps(s, indent=2))
    paths["html"].write_text(render_html(res, s))
    if annotate:
        paths["video"] = out / "annotated.mp4"
        write_annotated(res, paths["video"])
    return paths


def csv_row(p: dict[str, Any]) -> dict[str, Any]:
    g = p.get("gps") or {}
    x1, y1, x2, y2 = p["box"]
    return {"read_id": p["read_id"], "event": p.get("event", ""), "plate": p["plate"], "confidence": p["confidence"],
            "detection_confidence": p["detection_confidence"], "video_s": p.get("video_s", ""),
            "frame_index": p["frame_index"], "timestamp": p["timestamp"], "x1": x1, "y1": y1, "x2": x2, "y2": y2,
            "plate_width_px": x2 - x1, "hit": "yes" if p.get("hit") else "", "gps_fix": g.get("fix", ""),
            "lat": g.get("lat", ""), "lon": g.get("lon", ""), "speed_kmh": g.get("speed_kmh", ""),
            "heading": g.get("heading", ""), "gps_age_ms": g.get("age_ms", ""),
            "gps_stale": "" if "stale" not in g else str(g["stale"]).lower()}


def _uri(jpeg: bytes) -> str:
    return "data:image/jpeg;base64," + base64.b64encode(jpeg).decode("ascii")


def _scene(res: BenchResult) -> str:
    """The first frame with each vehicle pass's box and label (plate, confidence) and the ROI."""
    if not res.scene:
        return ""
    img = cv2.imdecode(np.frombuffer(res.scene, np.uint8), cv2.IMREAD_COLOR)
    h, w = img.shape[:2]
    return scene_svg(_uri(res.scene), w, h, w / res.width, vehicle_passes(res.reads),
                     [tuple(pt) for pt in res.roi] if res.roi else None)  # type: ignore[misc]


def _timeline(res: BenchResult) -> str:
    """Video time across; a band where the detector ran (motion), a dot per read (height = confidence)."""
    W, H, pad = 1100, 150, 30
    dur = max(res.video_s, 1e-3)

    def x(t: float) -> float:
        return pad + (W - 2 * pad) * t / dur

    parts = [f'<svg class="timeline" width="{W}" height="{H}" viewBox="0 0 {W} {H}" xmlns="http://www.w3.org/2000/svg">',
             f'<rect x="{pad}" y="20" width="{W - 2 * pad}" height="{H - 50}" fill="#f3f3f3"/>']
    run_start = None
    recs = res.records + [None]
    for i, r in enumerate(recs):
        on = r is not None and r.analysed
        if on and run_start is None:
            run_start = r.video_ms / 1000
        if not on and run_start is not None:
            end = recs[i - 1].video_ms / 1000 + 1 / max(res.fps, 1e-3)  # type: ignore[union-attr]
            parts.append(f'<rect x="{x(run_start):.1f}" y="20" width="{max(1.0, x(end) - x(run_start)):.1f}" '
                         f'height="{H - 50}" fill="#cfe3f7"><title>detector ran {run_start:.1f}-{end:.1f} s</title></rect>')
            run_start = None
    for p in res.reads:
        t = p.get("video_s") or 0.0
        cy = 20 + (H - 50) * (1 - p["confidence"])
        parts.append(f'<circle cx="{x(t):.1f}" cy="{cy:.1f}" r="4" fill="{conf_colour(p["confidence"])}">'
                     f'<title>{html.escape(p["plate"])} {p["confidence"]:.2f} at {t:.2f} s</title></circle>')
    step = max(1, int(dur / 10) or 1)
    for s in range(0, int(dur) + 1, step):
        parts.append(f'<text x="{x(s):.1f}" y="{H - 12}" font-size="11" text-anchor="middle">{s}s</text>')
    parts.append(f'<text x="{pad}" y="13" font-size="11">confidence 1.0</text><text x="{pad}" y="{H - 32}" '
                 f'font-size="11" fill="#777">0</text></svg>')
    return "".join(parts)


def render_html(res: BenchResult, s: dict[str, Any]) -> str:
    e = html.escape
    gate = res.gate
    analysed = gate.get("analysed", 0)
    rows = "".join(
        f"<tr><td>{label}</td><td>{st['runs']}</td><td>{st['mean_ms_per_frame']:.2f}</td><td>{st['p50_ms']:.2f}</td>"
        f"<td>{st['p95_ms']:.2f}</td></tr>" for (key, label), st in ((k, s["stages"][k[0]]) for k in STAGES))
    cards = []
    floor = res.min_read_confidence
    passes = vehicle_passes(res.reads)
    for p in passes[:MAX_CARDS]:
        rid = p["read_id"]
        ctx = f'<img class="ctx" src="{_uri(res.context[rid])}" alt="vehicle">' if rid in res.context else ""
        crop = f'<img class="crop" src="{_uri(res.crops[rid])}" alt="plate">' if rid in res.crops else ""
        g = p.get("gps")
        gps = ""
        if g:
            if "lat" in g:
                gps = (f'{g["lat"]:.5f}, {g["lon"]:.5f}' + (f', {g["speed_kmh"]:.0f} km/h' if "speed_kmh" in g else "")
                       + (f', fix {e(g["fix"])}' if g.get("fix") else "") + (" <b>stale</b>" if g.get("stale") else ""))
            else:
                gps = "no GPS fix"
        ev = f' <span class="ev">{e(p["event"])}</span>' if p.get("event") else ""
        hit = ' <span class="hit">HIT</span>' if p.get("hit") else ""
        cards.append(
            f'<div class="read">{ctx}<div class="meta"><span class="plate">{e(p["plate"])}</span>{ev}{hit}<br>'
            f'<span style="color:{conf_colour(p["confidence"])}">{p["confidence"]:.2f}</span> · {p.get("video_s", 0):.2f} s · '
            f'frame {p["frame_index"]} · {p["box"][2] - p["box"][0]} px<br>{crop}<br>'
            f'{confidence_chart(pass_confidences(res, rid), floor)}<br><small>{gps}</small></div></div>')
    more = (f"<p>{len(passes) - MAX_CARDS} more vehicle passes in reads.csv and reads.jsonl</p>"
            if len(passes) > MAX_CARDS else "")
    pw = s["plate_width_px"]
    width_line = (f'plate width in the frame: min {pw["min"]} px, median {pw["median"]:.0f} px, max {pw["max"]} px; '
                  'box and label colour is confidence (green 0.9 and up, amber 0.7 and up, red below)') if pw else "no reads"
    tr = res.tracking
    dropped = (f'<p class="dropped">Not published: <b>{tr.get("rejected_format", 0)}</b> reads rejected by the plate '
               f'formats, <b>{tr.get("rejected_low_confidence", 0)}</b> under the confidence floor, '
               f'<b>{tr.get("rejected_short", 0)}</b> too short; <b>{tr.get("tracks_unread", 0)}</b> of '
               f'{tr.get("tracks", 0)} tracks (plates the detector followed) never read. '
               f'{tr.get("frame_reads", 0)} per-frame reads in all.</p>')
    pos = s["position"]
    v_scale = ""
    if res.width_curve is not None and abs(pos["curve"]["width_scale"] - 1) > 0.01:
        c = pos["curve"]
        v_scale = (f' This video is {res.width} px wide with the detector at input width {res.input_width}: its plate '
                   f'widths count ×{c["width_scale"]:.2f} against the rate measured in {c["frame_width"]} px frames '
                   f'at input width {c["input_width"]}.')
    curve_line = ("" if res.width_curve is None else
                  f'<p><small>Detection rate: the shipped detector on {res.width_curve.scenes} real '
                  f'{e(res.width_curve.split)} scenes (models/manifest.json, python -m alprd_train.width_report). '
                  f'Widths are those of the plates read, one per vehicle pass: plates never read are not in the '
                  f'bars.{v_scale}</small></p>')
    position = (f'<h2>Is the camera close enough?</h2><p id="verdict" class="verdict {pos["level"]}">{e(pos["verdict"])}'
                f'</p>{histogram_svg(pass_widths(res), res.width_curve, _scale(res))}{curve_line}')
    gps_line = ""
    if res.gps:
        gps_line = "<p>GPS: " + e(", ".join(f"{k} {v}" for k, v in res.gps.items())) + "</p>"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>alprd bench: {e(Path(res.video).name)}</title>
<style>
body {{ font-family: sans-serif; margin: 16px; background: #ffffff; color: #222; }}
h1 {{ font-size: 20px; margin: 0 0 4px 0; }} h2 {{ font-size: 16px; margin: 18px 0 6px 0; }}
.figs span {{ display: inline-block; margin: 0 18px 6px 0; }} .figs b {{ font-size: 18px; }}
table {{ border-collapse: collapse; }} td, th {{ border: 1px solid #ccc; padding: 3px 8px; text-align: right; }}
td:first-child, th:first-child {{ text-align: left; }}
.reads {{ display: flex; flex-wrap: wrap; gap: 8px; }}
.read {{ border: 1px solid #bbb; padding: 4px; width: 324px; background: #fafafa; }}
.read img.ctx {{ display: block; width: auto; height: auto; }}
.read img.crop {{ max-width: 320px; height: auto; margin-top: 3px; }}
.plate {{ font-family: monospace; font-size: 18px; font-weight: bold; }} .ev {{ color: #555; }}
.hit {{ background: #d73027; color: #fff; padding: 0 4px; }}
svg.scene {{ max-width: 960px; height: auto; border: 1px solid #999; }}
.verdict {{ font-size: 17px; font-weight: bold; padding: 6px 10px; display: inline-block; }}
.verdict.ok {{ background: #e3f4e6; }} .verdict.marginal {{ background: #fff2cc; }}
.verdict.bad {{ background: #fbe0dd; }} .verdict.unknown {{ background: #eee; }}
svg.conf-chart {{ display: block; margin-top: 3px; }}
</style></head><body>
<h1>alprd bench: {e(Path(res.video).name)}</h1>
<p>camera <b>{e(res.camera)}</b> · {res.width}×{res.height} at {res.fps:.2f} fps · {res.frames} frames ({res.video_s:.1f} s of video)
 · models {e(", ".join(f"{k} {v}" for k, v in res.models.items()))} · {time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}</p>
<div class="figs"><span><b>{len(passes)}</b> vehicle passes ({len(res.reads)} read events)</span>
<span><b>{s["distinct_plates"]}</b> distinct plates</span>
<span><b>{res.throughput_fps:.1f}</b> frames/s end to end</span>
<span><b>{s["x_real_time"]}×</b> real time{" (paced)" if res.realtime else ""}</span>
<span>detector ran on <b>{analysed}</b> of {res.frames} frames ({100 * analysed / max(1, res.frames):.0f} %),
{gate.get("regions", 0)} of them in moving regions only</span></div>
{dropped}
{position}
<h2>Reads over video time</h2>{_timeline(res)}
<h2>Reads</h2><div class="reads">{"".join(cards) or "<p>no reads</p>"}</div>{more}
<h2>Where plates are read</h2><p>{width_line}</p>{_scene(res)}
<h2>Throughput and latency per stage</h2>
<table><tr><th>stage</th><th>runs</th><th>mean ms per video frame</th><th>p50 ms</th><th>p95 ms</th></tr>{rows}</table>
<p>Wall time {res.wall_s:.2f} s for {res.frames} frames. Decoding and the motion test run in their own thread, recognition on
{res.workers} worker thread(s) ahead of the pipeline, which sees frames in order; stage times are wall times per run.
CPU time per video frame: decoding and motion test {s["cpu_ms_per_frame"]["decode"]:.2f} ms,
recognition {s["cpu_ms_per_frame"]["recognize"]:.2f} ms,
pipeline {s["cpu_ms_per_frame"]["pipeline"]:.2f} ms.</p>
{gps_line}
</body></html>
"""


def write_annotated(res: BenchResult, path: Path) -> None:
    """A second pass over the video: each read's box and text from its frame on for one second, the
    regions the detector looked at, and whether the frame was analysed."""
    cap = cv2.VideoCapture(res.video, cv2.CAP_FFMPEG)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), res.fps, (res.width, res.height))
    by_frame: dict[int, list[dict[str, Any]]] = {}
    for p in res.reads:
        by_frame.setdefault(int(p["frame_index"]), []).append(p)
    hold = max(1, int(res.fps))
    active: list[tuple[int, dict[str, Any]]] = []
    recs = {r.index: r for r in res.records}
    i = 0
    try:
        while True:
            ok, img = cap.read()
            if not ok:
                break
            active = [(t, p) for t, p in active if i - t < hold] + [(i, p) for p in by_frame.get(i, [])]
            r = recs.get(i)
            if r is not None and r.regions:
                for x1, y1, x2, y2 in r.regions:
                    cv2.rectangle(img, (x1, y1), (x2, y2), (200, 120, 0), 1)
            for _, p in active:
                x1, y1, x2, y2 = p["box"]
                cv2.rectangle(img, (x1, y1), (x2, y2), (0, 220, 255), 2)
                cv2.putText(img, f'{p["plate"]} {p["confidence"]:.2f}', (x1, max(20, y1 - 8)), cv2.FONT_HERSHEY_SIMPLEX,
                            0.8, (0, 220, 255), 2)
            state = "no frame record" if r is None else f"{r.reason}{' - analysed' if r.analysed else ''}"
            cv2.putText(img, f"frame {i}  {i / res.fps:.2f}s  {state}", (10, 30), cv2.FONT_HERSHEY_SIMPLEX, 0.8,
                        (255, 255, 255), 2)
            writer.write(img)
            i += 1
    finally:
        cap.release()
        writer.release()
