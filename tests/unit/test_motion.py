"""Motion gating and ROI: static frames are skipped, moving ones analysed (in the regions that
moved), lighting changes and keyframes analyse the whole frame, and no read event is lost against
analysing every frame."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from alprd.config import CameraConfig, MotionConfig
from alprd.geometry import Frame, Motion, iou
from alprd.motion import MotionDetector, MotionGate, RegionRecognizer
from alprd.sources.sources import VideoFileSource

W, H = 1280, 720


def scene(rng: np.random.Generator) -> np.ndarray:
    img = np.full((H, W, 3), 90, np.uint8)
    img[: H // 4] = (200, 170, 140)
    return np.clip(img + rng.normal(0, 6, img.shape), 0, 255).astype(np.uint8)


def with_box(img: np.ndarray, x: int, y: int, w: int = 220, h: int = 140) -> np.ndarray:
    out = img.copy()
    out[y:y + h, x:x + w] = (40, 60, 200)
    out[y + 90:y + 120, x + 60:x + 160] = (240, 240, 240)  # a plate-like patch
    return out


def noisy(rng: np.random.Generator, img: np.ndarray, sigma: float = 3.0) -> np.ndarray:
    return np.clip(img + rng.normal(0, sigma, img.shape), 0, 255).astype(np.uint8)


def test_static_frames_are_skipped_and_moving_ones_analysed_in_their_region():
    rng = np.random.default_rng(0)
    bg = scene(rng)
    md = MotionDetector.from_settings(MotionConfig(hold_frames=2, keyframe_s=0))
    frames = [noisy(rng, bg) for _ in range(8)]  # sensor noise only
    frames += [noisy(rng, with_box(bg, 200 + 25 * i, 300 + 8 * i)) for i in range(6)]  # a vehicle drives through
    frames += [noisy(rng, bg) for _ in range(6)]  # gone: the road is empty again
    verdicts = [md.analyse(f, i * 33) for i, f in enumerate(frames)]
    reasons = [v.reason for v in verdicts]
    assert reasons[0] == "first" and verdicts[0].run and verdicts[0].regions is None
    assert reasons[1:8] == ["static"] * 7, reasons
    assert reasons[8:14] == ["moving"] * 6, reasons
    assert reasons[14] == "moving", "the vehicle leaving is motion too"
    assert reasons[15:17] == ["hold"] * 2 and reasons[17:] == ["static"] * 3, reasons
    assert not any(v.run for v in verdicts if v.reason == "static")
    for i in range(9, 14):  # each region holds the vehicle's box and is much smaller than the frame
        box = (200 + 25 * i - 200, 300 + 8 * (i - 8), 200 + 25 * (i - 8) + 220, 300 + 8 * (i - 8) + 140)
        regions = verdicts[i].regions
        assert regions is not None and len(regions) == 1, regions
        r = regions[0]
        assert r[0] <= box[0] and r[1] <= box[1] and r[2] >= box[2] and r[3] >= box[3], (r, box)
        assert (r[2] - r[0]) * (r[3] - r[1]) < 0.3 * W * H


def test_lighting_change_and_keyframes_analyse_the_whole_frame():
    rng = np.random.default_rng(1)
    bg = scene(rng)
    md = MotionDetector.from_settings(MotionConfig(hold_frames=0, keyframe_s=1.0))
    md.analyse(bg, 0)
    assert md.analyse(noisy(rng, bg), 100).reason == "static"
    v = md.analyse(np.clip(bg.astype(int) + 60, 0, 255).astype(np.uint8), 200)  # exposure jump / headlights
    assert v.reason == "global" and v.run and v.regions is None
    times = range(300, 3300, 100)
    reasons = [md.analyse(noisy(rng, np.clip(bg.astype(int) + 60, 0, 255).astype(np.uint8)), t).reason for t in times]
    # Never more than keyframe_s without a look at the whole frame: at 1.2, 2.2 and 3.2 s.
    assert [t for t, r in zip(times, reasons) if r == "keyframe"] == [1200, 2200, 3200], reasons
    assert reasons.count("static") == len(reasons) - 3


def test_roi_ignores_motion_outside_it():
    rng = np.random.default_rng(2)
    bg = scene(rng)
    roi = ((0.5, 0.0), (1.0, 0.0), (1.0, 1.0), (0.5, 1.0))  # right half only
    md = MotionDetector.from_settings(MotionConfig(hold_frames=0, keyframe_s=0), roi)
    md.analyse(bg, 0)
    assert md.analyse(with_box(bg, 100, 300), 33).reason == "static", "motion on the left half is outside the ROI"
    v = md.analyse(with_box(bg, 900, 300), 66)
    assert v.reason == "moving" and v.regions and v.regions[0][2] > 900


def test_gate_counts_static_and_late_frames_and_passes_regions():
    img = np.zeros((H, W, 3), np.uint8)

    newest = [5]
    gate = MotionGate(live=True, max_lag_ms=500, clock=lambda: 1000.0, newest=lambda: newest[0])
    fresh = Frame("c", 0, 999_900, img, motion=Motion(True, "moving", 0.1, ((10, 10, 300, 200),)))
    assert gate.admit(fresh)
    assert gate.regions_for(img) == ((10, 10, 300, 200),)
    assert gate.regions_for(img) is None, "a hint is used once"
    assert not gate.admit(Frame("c", 1, 999_000, img)), "600 ms old on a live camera, newer ones waiting: skipped"
    newest[0] = 1
    assert gate.admit(Frame("c", 1, 999_000, img)), "the newest frame is analysed however late: a slow unit still reads"
    assert not gate.admit(Frame("c", 2, 999_950, img, motion=Motion(False, "static", 0.0, ())))
    assert gate.snapshot() == {"analysed": 2, "regions": 1, "late": 1, "static": 1}
    recorded = MotionGate(live=False, max_lag_ms=500, clock=lambda: 1000.0)
    assert recorded.admit(Frame("c", 0, 0, img)), "recorded video is never skipped for lateness"


def test_region_detection_finds_the_plate_the_whole_frame_finds(models_dir):
    from alprd.config import ModelsConfig
    from alprd.recognition.recognizer import Recognizer
    from alprd.synth.video import render_still

    rec = Recognizer.from_config(ModelsConfig(dir=str(models_dir)))
    rng = np.random.default_rng(5)
    found = 0
    for _ in range(4):
        frame, _text, box = render_still(rng, 1920, 1080)
        full = rec.detector.detect(frame)
        match = [d for d in full if iou(d.box, box) > 0.5]
        if not match:
            continue
        found += 1
        cx, cy = (box[0] + box[2]) // 2, (box[1] + box[3]) // 2
        region = (max(0, cx - 400), max(0, cy - 250), min(1920, cx + 400), min(1080, cy + 250))
        part = rec.detector.detect(frame, region)
        best = max(part, key=lambda d: iou(d.box, match[0].box))
        # The same plate, boxed about alike (context outside the region moves a box by a few px).
        assert iou(best.box, box) > 0.5 and iou(best.box, match[0].box) > 0.6, (best, match[0], box)
        # The ROI filter: a plate whose centre is outside the camera's ROI is not read.
        left = ((0.0, 0.0), (0.2, 0.0), (0.2, 1.0), (0.0, 1.0)) if cx > 0.3 * 1920 else ((0.8, 0.0), (1.0, 0.0), (1.0, 1.0), (0.8, 1.0))
        dets, _ = RegionRecognizer(rec, None, left).analyse(frame)
        assert not any(iou(d.box, box) > 0.5 for d in dets)
    assert found >= 2, "the detector should find most rendered plates"


def test_gating_on_video_with_gaps_skips_static_frames_and_keeps_every_moving_one(tmp_path):
    """A recorded clip where the road is empty between vehicles: the empty stretches are not
    analysed, and every frame where a plate is on screen is."""
    from alprd.synth.video import write_traffic_video

    path = tmp_path / "gaps.mp4"
    truth = write_traffic_video(path, vehicles=2, seconds=10, width=960, height=540, fps=10, seed=11, noise=False)
    cam = CameraConfig(id="c", source=str(path), motion=MotionConfig(keyframe_s=0))
    frames = list(VideoFileSource(cam).frames(threading.Event()))
    on_screen = {f for v in truth for f in v.boxes}
    assert len(frames) == 100 and len(on_screen) < 80
    skipped = [f.index for f in frames if not f.motion.run]
    assert len(skipped) >= 15, f"only {len(skipped)} static frames skipped"
    assert not on_screen & set(skipped), "a frame with a plate on screen was skipped"
    assert all(f.video_ms == f.index * 100 for f in frames)


def test_no_read_event_is_lost_against_every_frame(traffic_video, models_dir):
    """The test clip through the unit's pipeline with default gating and with every frame analysed:
    each vehicle read (and read exactly) with every frame is read with the gate too."""
    from alprd.bench.runner import run_bench
    from alprd.config import Config, ModelsConfig
    from alprd.synth.video import vehicles_read

    video, truth = traffic_video

    def cfg(enabled: bool) -> Config:
        return Config(unit_id="t", cameras=(CameraConfig(id="c", source="-", motion=MotionConfig(enabled=enabled)),),
                      models=ModelsConfig(dir=str(models_dir)))

    from alprd.recognition.recognizer import Recognizer

    rec = Recognizer.from_config(ModelsConfig(dir=str(models_dir)))
    every = run_bench(video, cfg(False), recognizer=rec, thumbnails=False)
    gated = run_bench(video, cfg(True), recognizer=rec, thumbnails=False)
    e_seen, e_exact = vehicles_read(every.reads, truth)
    g_seen, g_exact = vehicles_read(gated.reads, truth)
    if not e_seen:
        pytest.fail("models produce no reads on the synthetic video")
    assert e_seen <= g_seen and e_exact <= g_exact, (e_seen, g_seen, e_exact, g_exact)
    assert every.gate == {"analysed": every.frames}
    assert gated.gate["regions"] > 0, "moving vehicles are detected in their regions"

