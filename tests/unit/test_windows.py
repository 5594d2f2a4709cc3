"""Window planning between full-frame detections (alprd/tracking/windows.py), on constructed tracks."""

from __future__ import annotations

import pytest

from alprd.config import TrackingConfig
from alprd.errors import ConfigError
from alprd.tracking.tracker import Track
from alprd.tracking.windows import cut_by_window, full_frame, plan_windows


def track(box: tuple[int, int, int, int], frames: int = 10, velocity=(0.0, 0.0, 0.0, 0.0), tid: int = 1) -> Track:
    t = Track(tid, box, 0, 0, 9, 300, frames=frames, velocity=velocity)
    t.origin = (box[0] - 400, box[1], box[2] - 400, box[3])  # it came from the left: not parked
    return t


def test_full_frame_every_kth_frame() -> None:
    assert [i for i in range(10) if full_frame(i, 3)] == [0, 3, 6, 9]
    assert all(full_frame(i, 1) for i in range(5))


def test_a_window_around_the_predicted_box_with_a_plate_width_of_margin() -> None:
    t = track((900, 500, 1000, 530), velocity=(0.5, 0.0, 0.5, 0.0))  # 0.5 px/ms right
    (w,) = plan_windows([t], 400, 1920, 1080)  # 100 ms on: predicted (950, 500, 1050, 530)
    assert w == (850, 440, 1150, 590)  # 100 px (a plate width) left and right, 60 px (two heights) up and down


def test_a_young_track_gets_a_wider_reach() -> None:
    (w,) = plan_windows([track((900, 500, 1000, 530), frames=1)], 300, 1920, 1080)
    assert w[0] == 700 and w[2] == 1200


def test_windows_clip_merge_and_fall_back_to_the_frame() -> None:
    assert plan_windows([], 300, 1920, 1080) == ()  # no track: nothing to look for
    (w,) = plan_windows([track((0, 1050, 100, 1080))], 300, 1920, 1080)
    assert w[0] == 0 and w[3] == 1080
    two = plan_windows([track((900, 500, 1000, 530)), track((1050, 505, 1150, 535), tid=2)], 300, 1920, 1080)
    assert two == ((800, 440, 1250, 595),)
    apart = plan_windows([track((100, 100, 200, 130)), track((1500, 900, 1600, 930), tid=2)], 300, 1920, 1080)
    assert apart is not None and len(apart) == 2
    huge = plan_windows([track((200, 200, 1000, 500))], 300, 1920, 1080)
    assert huge is None  # most of the frame: detect on all of it


def test_a_box_on_a_window_edge_inside_the_frame_is_a_piece_of_a_plate() -> None:
    windows = ((800, 440, 1150, 590),)
    assert not cut_by_window((900, 500, 1000, 530), windows, 1920, 1080)
    assert cut_by_window((1080, 500, 1150, 530), windows, 1920, 1080)  # runs into the right edge
    assert not cut_by_window((0, 500, 60, 530), ((0, 440, 300, 590),), 1920, 1080)  # the frame's own edge


def test_full_frame_every_is_validated() -> None:
    with pytest.raises(ConfigError, match="full_frame_every"):
        TrackingConfig(full_frame_every=0).validate("tracking")
