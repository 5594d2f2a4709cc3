"""Detection and reading that follow the tracks (tracking.follow) on the moving-camera clip, where the
motion gate skips nothing: the same read events as with every frame detected whole and every plate
read, for less work. Real models, a real synthetic video, the bench's runner (read-ahead workers)."""

from __future__ import annotations

import pytest

from alprd.bench.runner import run_bench
from alprd.config import CameraConfig, Config, ModelsConfig, TrackingConfig
from alprd.recognition.recognizer import Recognizer
from alprd.synth.video import write_traffic_video


@pytest.fixture(scope="module")
def moving_clip(tmp_path_factory):
    path = tmp_path_factory.mktemp("follow") / "moving.mp4"
    truth = write_traffic_video(path, vehicles=2, seconds=4, width=1280, height=720, fps=30, seed=3, noise=False,
                                moving_camera=True)
    return path, truth


def bench(path, rec: Recognizer, follow: bool):
    cam = CameraConfig(id="cam", source=str(path))
    cfg = Config(unit_id="t", cameras=(cam,), tracking=TrackingConfig(follow=follow))
    return run_bench(path, cfg, recognizer=rec, thumbnails=False, workers=2)


def test_following_tracks_keeps_every_read_event_and_saves_work(moving_clip, models_dir):
    path, _truth = moving_clip
    rec = Recognizer.from_config(ModelsConfig(dir=str(models_dir)))
    every = bench(path, rec, follow=False)
    followed = bench(path, rec, follow=True)
    firsts = sorted(p["plate"] for p in every.reads if p["event"] == "first")
    assert firsts, "the reference run read nothing: the clip does not test anything"
    assert sorted(p["plate"] for p in followed.reads if p["event"] == "first") == firsts
    assert sorted({p["plate"] for p in followed.reads}) == sorted({p["plate"] for p in every.reads})
    st = followed.tracking
    # Less detection: most frames were looked at only around the tracks, or not at all.
    assert st.get("window_frames", 0) > st.get("full_frames", 0) > 0
    assert "window_frames" not in every.tracking
    # Less reading: settled plates skipped, fewer frame reads reached the vote.
    assert st.get("ocr_skipped", 0) > 0
    assert st["frame_reads"] < every.tracking["frame_reads"]
    assert st.get("plan_late", 0) == 0
