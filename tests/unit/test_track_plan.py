"""Work that follows the tracks (alprd/tracking/plan.py): when a track counts as settled, when a
settled plate is read again, which frames get whole-frame detection and where the windows go."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from alprd.config import TrackingConfig
from alprd.errors import ConfigError
from alprd.geometry import Frame, merge_rects
from alprd.tracking.plan import FULL, TrackView, WorkPlanner, full_frame_interval, is_settled, plan, skip_read, window
from alprd.tracking.vote import Observation, vote


def obs(text: str, conf: float = 0.97, frame: int = 0, box=(100, 100, 200, 140)) -> Observation:
    return Observation(text, (conf,) * len(text), conf, 0.8, frame, frame * 33, box, 0.9)


def view(box=(100, 100, 200, 140), settled: bool = True, velocity=(0.0, 0.0, 0.0, 0.0), last_ms: int = 0,
         read_width: int = 100) -> TrackView:
    return TrackView(box, velocity, last_ms, False, settled, read_width)


def test_settled_needs_published_agreeing_sure_reads():
    three = [obs("ABC1234", frame=i) for i in range(3)]
    assert is_settled(three, True, 3, 0.9, 0.8)
    assert not is_settled(three, False, 3, 0.9, 0.8)  # the first read is not out yet
    assert not is_settled(three[:2], True, 3, 0.9, 0.8)  # too few reads
    mixed = three + [obs("ABC1284", frame=3), obs("ABC1284", frame=4)]
    v = vote(mixed)
    assert v is not None and v.agreeing == 3 and v.reads == 5
    assert not is_settled(mixed, True, 3, 0.9, 0.8)  # 3 of 5 agree: the vote is not clear
    unsure = [obs("ABC1234", conf=0.6, frame=i) for i in range(4)]
    assert not is_settled(unsure, True, 3, 0.9, 0.8)
    assert not is_settled([], True, 3, 0.9, 0.8)


def test_settled_plate_is_read_again_once_grown():
    settled = (((100, 100, 200, 140), 100),)
    assert skip_read((102, 101, 202, 141), settled, 1.3)  # same place, same size
    assert skip_read((95, 98, 220, 145), settled, 1.3)  # 125 px: not yet 1.3x
    assert not skip_read((90, 95, 225, 150), settled, 1.3)  # 135 px: grown, read it
    assert not skip_read((400, 100, 500, 140), settled, 1.3)  # another plate: read it
    assert not skip_read((102, 101, 202, 141), (), 1.3)


def test_full_frame_rate_adapts_to_the_tracks():
    assert full_frame_interval([], 3, 12) == 3  # nothing open: look for arrivals often
    assert full_frame_interval([view(settled=True), view(settled=False)], 3, 12) == 3
    assert full_frame_interval([view(settled=True), view(settled=True)], 3, 12) == 12


def test_plan_whole_frames_and_windows():
    kw = dict(every=3, every_settled=12, margin=1.0)
    assert plan(7, 0, None, 1920, 1080, **kw) is FULL  # tracks not known
    assert plan(9, 0, [], 1920, 1080, **kw) is FULL  # a multiple of 3
    empty = plan(7, 0, [], 1920, 1080, **kw)
    assert not empty.full and empty.windows == ()  # nothing open: no detection until the next whole frame
    unsure = [view(settled=False)]
    p = plan(7, 0, unsure, 1920, 1080, **kw)
    assert not p.full and p.windows == ((0, 0, 301, 241),) and p.settled == ()
    assert plan(12, 0, [view()], 1920, 1080, **kw) is FULL
    assert not plan(9, 0, [view()], 1920, 1080, **kw).full  # all settled: every 12th frame only


def test_windows_follow_the_prediction_and_merge():
    moving = view((1000, 500, 1100, 540), settled=True, velocity=(0.5, 0.0, 0.6, 0.05), last_ms=0)
    p = plan(1, 100, [moving], 1920, 1080, every=3, every_settled=12, margin=1.0)
    # Predicted 100 ms on: x1 1050, x2 1160 (110 px wide), y2 545; the window adds a width each side.
    assert p.windows == ((940, 390, 1271, 656),)
    assert p.settled == (((1050, 500, 1160, 545), 100),)
    assert merge_rects([(0, 0, 10, 10), (5, 5, 20, 20), (30, 30, 40, 40)]) == [(0, 0, 20, 20), (30, 30, 40, 40)]
    assert window((0.0, 0.0, 100.0, 40.0), 1.0, 150, 100) == (0, 0, 150, 100)  # clipped to the frame


def test_a_young_track_gets_a_wider_window():
    young = TrackView((1000, 500, 1100, 540), (0.0, 0.0, 0.0, 0.0), 0, False, False, 100, young=True)
    p = plan(1, 33, [young], 1920, 1080, every=3, every_settled=12, margin=1.0)
    assert p.windows == ((800, 300, 1301, 741),)  # two plate widths each side: its velocity is a guess


def test_windows_covering_most_of_the_frame_mean_the_whole_frame():
    big = [view((0, 0, 500, 300), settled=False), view((600, 500, 1100, 800), settled=False)]
    assert plan(1, 0, big, 1280, 720, every=3, every_settled=12, margin=1.0) is FULL


def test_planner_plans_from_the_tracks_lag_frames_earlier():
    pl = WorkPlanner(lag=2, every=3, every_settled=12, margin=1.0, growth=1.3)
    img = np.zeros((1080, 1920, 3), np.uint8)
    assert pl.plan_for(Frame("c", 1, 33, img)) is FULL  # nothing before it
    pl.consumed(0, [view(settled=False)])
    pl.consumed(1, [])
    p = pl.plan_for(Frame("c", 2, 66, img))  # from frame 0: one track open
    assert not p.full and len(p.windows) == 1
    got: list = []  # frame 4 comes from frame 2, not consumed yet: it waits for it
    t = threading.Thread(target=lambda: got.append(pl.plan_for(Frame("c", 4, 132, img))))
    t.start()
    pl.consumed(2, [])
    t.join(3)
    assert got and not got[0].full and got[0].windows == ()  # frame 2 had no track open


def test_live_frames_in_a_stride_that_misses_the_interval_still_get_whole_frame_passes():
    # A live camera keeps only its newest frame: analysed frames 1, 4, 7, ... never land on a
    # multiple of 3. With no track open, the index rule alone would never detect anything.
    img = np.zeros((1080, 1920, 3), np.uint8)
    for live, want_full in ((True, True), (False, False)):
        pl = WorkPlanner(lag=1, every=3, every_settled=12, margin=1.0, growth=1.3, live=live)
        fulls = 0
        for n in range(1, 60, 3):
            pl.consumed(n - 1, [])
            fulls += pl.plan_for(Frame("c", n, n * 33, img)).full
        # live: a whole frame at least once every 3 frame numbers after the first; recorded: only
        # frame 1 (nothing consumed before the lag), the index rule, the same on every run
        assert (fulls >= 6) is want_full, (live, fulls)


def test_follow_settings_validated():
    TrackingConfig().validate("tracking")
    with pytest.raises(ConfigError, match="full_frame_every_settled"):
        TrackingConfig(full_frame_every=3, full_frame_every_settled=10).validate("tracking")
    with pytest.raises(ConfigError, match="follow_lag_frames"):
        TrackingConfig(follow_lag_frames=0).validate("tracking")
    with pytest.raises(ConfigError, match="reread_growth"):
        TrackingConfig(reread_growth=0.9).validate("tracking")
