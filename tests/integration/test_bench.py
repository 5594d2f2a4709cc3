"""`alprd bench`: the unit's pipeline on a recorded video, through the real CLI; the HTML report is
opened in headless Chromium and the screenshot must show the read thumbnails."""

from __future__ import annotations

import base64
import csv
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import jsonschema
import numpy as np
import pytest
import yaml
from conftest import write_config

from alprd.gps.nmea import drive, drive_log

REPO = Path(__file__).resolve().parents[2]
READ_SCHEMA = json.loads((REPO / "alprd" / "publish" / "schema" / "read-v1.schema.json").read_text())
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def alprd(*args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH", "")]))}
    return subprocess.run([sys.executable, "-m", "alprd", *args], capture_output=True, text=True, cwd=cwd, env=env,
                          timeout=timeout)


@pytest.fixture(scope="module")
def bench_run(tmp_path_factory, traffic_video, models_dir):
    """One bench run of the test clip with a vehicle config (replayed GPS), annotated video included."""
    work = tmp_path_factory.mktemp("bench")
    video, truth = traffic_video
    (work / "drive.nmea").write_text(drive_log(drive(1_795_000_000_000, 10, rate_hz=5)))
    data = yaml.safe_load(write_config(work / "vehicle.yaml", cameras=[{"id": "rear", "source": str(video)}],
                                       models={"dir": str(models_dir)}).read_text())
    data["gps"] = {"source": "replay", "log": "drive.nmea"}
    (work / "vehicle.yaml").write_text(yaml.safe_dump(data))
    res = alprd("bench", str(video), "-c", "vehicle.yaml", "--out", "out", "--annotate", cwd=work)
    assert res.returncode == 0, res.stderr[-3000:]
    return work / "out", res, truth


def test_bench_writes_reads_as_jsonl_and_csv(bench_run):
    out, res, truth = bench_run
    reads = [json.loads(line) for line in (out / "reads.jsonl").read_text().splitlines()]
    assert reads, "models produce no reads on the synthetic video"
    validator = jsonschema.Draft202012Validator(READ_SCHEMA)
    for p in reads:
        validator.validate(p)
        assert p["camera"] == "rear" and p["gps"]["source"] == "replay" and "crop_jpeg" not in p
        assert p["video_s"] == pytest.approx(p["frame_index"] / 10, abs=0.002)
    with open(out / "reads.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["read_id"] for r in rows] == [p["read_id"] for p in reads]
    assert [r["plate"] for r in rows] == [p["plate"] for p in reads]
    assert all(r["lat"] and r["gps_fix"] == "gps" for r in rows)
    s = json.loads((out / "summary.json").read_text())
    assert s["frames"] == 60 and s["reads"] == len(reads) and s["width"] == 960
    # What the unit would have dropped is reported next to what it published.
    events = s["tracking"]["events_first"] + s["tracking"].get("events_update", 0)
    assert events == len(reads) and s["tracking"]["frame_reads"] >= len(reads)
    for stage in ("decode", "gate", "detect", "ocr", "track_publish"):
        st = s["stages"][stage]
        assert st["runs"] > 0 and 0 <= st["p50_ms"] <= st["p95_ms"], (stage, st)
    # Progress bar on stderr (a line per new 10 % when stderr is not a terminal) and a summary on stdout.
    bars = [ln for ln in res.stderr.splitlines() if ln.startswith("[")]
    # (at most 4 redraws a second: a fast run of this short clip may print only a few)
    assert len(bars) >= 2 and "100.0% 60/60 frames" in bars[-1], res.stderr[-2000:]
    assert re.search(r"60 frames in [\d.]+ s: [\d.]+ frames/s", res.stdout)
    # The annotated video: every frame, the video's size.
    cap = cv2.VideoCapture(str(out / "annotated.mp4"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 60 and int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)) == 960


def _thumbnails(html: str) -> list[np.ndarray]:
    out = []
    for b64 in re.findall(r'<img class="ctx" src="data:image/jpeg;base64,([^"]+)"', html):
        out.append(cv2.imdecode(np.frombuffer(base64.b64decode(b64), np.uint8), cv2.IMREAD_COLOR))
    return out


def test_report_renders_in_headless_chromium_with_the_thumbnails(bench_run, tmp_path):
    out, _, _ = bench_run
    html = (out / "report.html").read_text()
    # One card per vehicle pass: an update shares its first read's read_id and replaces it.
    n_reads = len({json.loads(ln)["read_id"] for ln in (out / "reads.jsonl").read_text().splitlines()})
    thumbs = _thumbnails(html)
    assert len(thumbs) == n_reads and html.count('class="read"') == n_reads
    assert "<svg" in html and "p95" in html and "Where plates are read" in html
    if not Path(CHROMIUM).exists():
        pytest.fail("chromium is not installed (apt-get install chromium)")
    shot = tmp_path / "report.png"
    res = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                          "--force-device-scale-factor=1", f"--screenshot={shot}", "--window-size=1280,1400",
                          (out / "report.html").as_uri()], capture_output=True, text=True, timeout=120)
    assert shot.is_file(), res.stderr[-2000:]
    page = cv2.imread(str(shot), cv2.IMREAD_COLOR)
    assert page is not None and page.shape[:2] == (1400, 1280)
    # The thumbnails are drawn at their own size: find each of the first ones in the screenshot.
    found = []
    for t in thumbs[:3]:
        score = cv2.matchTemplate(page, t, cv2.TM_CCOEFF_NORMED)
        _, best, _, at = cv2.minMaxLoc(score)
        assert best > 0.9, f"thumbnail not visible in the rendered report (best match {best:.2f})"
        found.append(at)
        x, y = at
        patch = page[y:y + t.shape[0], x:x + t.shape[1]]
        assert patch.std() > 20, "a real picture, not the page background"
    assert len(set(found)) == len(found), "each thumbnail has its own place on the page"
    white = (page > 245).all(axis=2).mean()
    assert 0.2 < white < 0.95, f"{white:.0%} of the page is background: not a real rendering"


def test_bench_realtime_paces_frames_at_the_videos_rate(tmp_path, models_dir):
    from alprd.bench.runner import run_bench
    from alprd.config import CameraConfig, Config, ModelsConfig
    from alprd.synth.video import write_traffic_video

    video = tmp_path / "short.mp4"
    write_traffic_video(video, vehicles=1, seconds=2, width=480, height=270, fps=10, seed=3)
    cfg = Config(unit_id="t", cameras=(CameraConfig(id="c", source="-"),), models=ModelsConfig(dir=str(models_dir)))
    res = run_bench(video, cfg, realtime=True, thumbnails=False)
    assert res.frames == 20 and res.wall_s >= 1.85, res.wall_s  # the last frame is due at 1.9 s


def test_bench_bad_input_is_one_line(tmp_path):
    res = alprd("bench", "missing.mp4", cwd=tmp_path)
    assert res.returncode == 2 and res.stderr.strip() == "alprd: error: missing.mp4: video file not found"
    (tmp_path / "notes.mp4").write_text("not a video")
    res = alprd("bench", "notes.mp4", cwd=tmp_path)
    assert res.returncode == 2 and "cannot decode" in res.stderr and len(res.stderr.strip().splitlines()) == 1
    cfg = write_config(tmp_path / "unit.yaml")
    (tmp_path / "v.mp4").write_bytes(b"")
    res = alprd("bench", "v.mp4", "-c", str(cfg), "--camera", "nope", cwd=tmp_path)
    assert res.returncode == 2 and "--camera: no camera 'nope'" in res.stderr and "Traceback" not in res.stderr


def _chromium(*args: str) -> subprocess.CompletedProcess:
    if not Path(CHROMIUM).exists():
        pytest.fail("chromium is not installed (apt-get install chromium)")
    return subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                           "--force-device-scale-factor=1", *args], capture_output=True, text=True, timeout=120)


HIST_BAR_BGR = (193, 127, 74)  # the histogram's bar colour, #4a7fc1


def test_report_judges_the_camera_position_in_headless_chromium(bench_run, tmp_path):
    """The page as Chromium renders it: the width histogram with its bars and the verdict, the
    per-frame confidence chart on every card, what was not published, labelled boxes on the scene."""
    out, _, _ = bench_run
    s = json.loads((out / "summary.json").read_text())
    reads = [json.loads(ln) for ln in (out / "reads.jsonl").read_text().splitlines()]
    passes = {p["read_id"]: p for p in reads}
    dom = _chromium("--dump-dom", (out / "report.html").as_uri()).stdout
    hist = re.search(r'<svg id="width-histogram".*?</svg>', dom, re.S)
    assert hist, "no histogram in the rendered DOM"
    bars = re.findall(r'<rect class="bar"[^>]*height="([\d.]+)"[^>]*><title>(\d+) plates', hist.group(0))
    assert len(bars) == 7, "a bar per width bin of the measured curve"
    assert sum(int(n) for _, n in bars) == len(passes), "every vehicle pass counted once"
    assert any(float(h) > 0 for h, _ in bars) and 'class="rate"' in hist.group(0)
    pos = s["position"]
    assert pos["level"] in ("ok", "marginal", "bad") and pos["curve"]["width_scale"] == pytest.approx(2.0)
    assert re.search(r"Most plates are \d+(-\d+)? px wide, where the detector finds \d+ % of plates: ", pos["verdict"])
    assert f'<p id="verdict" class="verdict {pos["level"]}">{pos["verdict"]}</p>' in dom
    # A confidence chart per card, a point per frame read of the pass.
    charts = re.findall(r'<svg class="conf-chart".*?</svg>', dom, re.S)
    assert len(charts) == len(passes)
    points = [c.count("<circle") for c in charts]
    assert sum(points) <= s["tracking"]["frame_reads"] and max(points) > 1, points
    t = {k: s["tracking"].get(k, 0) for k in ("rejected_format", "rejected_low_confidence", "tracks_unread", "tracks")}
    assert t["tracks"] >= len(passes)
    assert (f'<b>{t["rejected_format"]}</b> reads rejected by the plate formats, '
            f'<b>{t["rejected_low_confidence"]}</b> under the confidence floor') in dom
    assert f'<b>{t["tracks_unread"]}</b> of {t["tracks"]} tracks' in dom
    labels = re.findall(r'<g class="label">.*?<text[^>]*font-size="(\d+)"[^>]*>([^<]+)</text></g>', dom)
    assert {text.split()[0] for _, text in labels} == {p["plate"] for p in passes.values()}
    assert all(int(size) >= 12 for size, _ in labels)
    # The screenshot: not blank, and the histogram's bars are drawn (their colour, in a region that varies).
    shot = tmp_path / "report.png"
    res = _chromium(f"--screenshot={shot}", "--window-size=1280,4000", (out / "report.html").as_uri())
    page = cv2.imread(str(shot), cv2.IMREAD_COLOR)
    assert page is not None and page.shape[:2] == (4000, 1280), res.stderr[-2000:]
    assert page.std() > 20, "a blank page"
    ys, xs = np.nonzero((np.abs(page.astype(int) - HIST_BAR_BGR) <= 3).all(axis=2))
    assert len(ys) > 500, "no histogram bars on the rendered page"
    region = page[max(0, ys.min() - 40):ys.max() + 40, max(0, xs.min() - 60):xs.max() + 60]
    assert region.std() > 20 and len(np.unique(region.reshape(-1, 3), axis=0)) > 10
