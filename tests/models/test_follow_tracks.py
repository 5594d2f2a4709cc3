"""Detection and reading that follow the tracks (tracking.follow) on the moving-camera clip, where the
motion gate skips nothing: the same read events as with every frame detected whole and every plate
read, for less work. Real models, a real synthetic video, the bench's runner (read-ahead workers)."""

from __future__ import annotations

import pytest

from alprd.bench.runner import run_bench
from alprd.config import CameraConfig, Config, ModelsConfig, TrackingConfig
from alprd.recognition.recognizer import Recognizer
from alprd.synth.video import vehicles_read, write_traffic_video


@pytest.fixture(scope="module")
def moving_clip(tmp_path_factory):
    path = tmp_path_factory.mktemp("follow") / "moving.mp4"
    truth = write_traffic_video(path, vehicles=3, seconds=4, width=1280, height=720, fps=30, seed=3, noise=False, fast=1,
                                moving_camera=True)
    return path, truth  # four vehicles, a fast one among them, all moving across a panning, zooming view


def bench(path, rec: Recognizer, follow: bool):
    cam = CameraConfig(id="cam", source=str(path))
    cfg = Config(unit_id="t", cameras=(cam,), tracking=TrackingConfig(follow=follow))
    return run_bench(path, cfg, recognizer=rec, thumbnails=False, workers=2)


def test_following_tracks_keeps_every_read_event_and_saves_work(moving_clip, models_dir):
    path, truth = moving_clip
    rec = Recognizer.from_config(ModelsConfig(dir=str(models_dir)))
    every = bench(path, rec, follow=False)
    followed = bench(path, rec, follow=True)
    truth_plates = {v.text for v in truth}
    firsts = [p["plate"] for p in every.reads if p["event"] == "first"]
    got = [p["plate"] for p in followed.reads if p["event"] == "first"]
    assert sorted(t for t in firsts if t in truth_plates), "the reference run read nothing: the clip tests nothing"
    # Every vehicle read (or read exactly) with every frame is read so with less work, each once ...
    assert sorted(t for t in got if t in truth_plates) == sorted(t for t in firsts if t in truth_plates)
    e_seen, e_exact = vehicles_read(every.reads, truth)
    f_seen, f_exact = vehicles_read(followed.reads, truth)
    assert not (e_seen - f_seen) and not (e_exact - f_exact)
    # ... and no pass split into two events (a plate read short on one stretch, in full on the next).
    assert len(got) <= len(firsts), (got, firsts)
    st = followed.tracking
    # Less detection: most frames were looked at only around the tracks, or not at all.
    assert st.get("window_frames", 0) > st.get("full_frames", 0) > 0
    assert "window_frames" not in every.tracking
    # Less reading: settled plates skipped, fewer frame reads reached the vote.
    assert st.get("ocr_skipped", 0) > 0
    assert st["frame_reads"] < every.tracking["frame_reads"]
    assert st.get("plan_late", 0) == 0
