"""The settled-track rule (alprd/tracking/settle.py) on constructed votes and tracks."""

from __future__ import annotations

import pytest

from alprd.config import TrackingConfig
from alprd.errors import ConfigError
from alprd.tracking.settle import SettleRule, is_settled, settled_track_of
from alprd.tracking.tracker import Track
from alprd.tracking.vote import Observation, vote

RULE = SettleRule(min_reads=3, min_confidence=0.9, min_share=0.8, growth=1.3)


def obs(text: str, conf: float = 0.97, i: int = 0) -> Observation:
    return Observation(text, tuple([conf] * len(text)), conf, 1.0, i, i * 33, (0, 0, 100, 30), 0.9)


def test_settled_needs_published_agreeing_confident_reads() -> None:
    three = vote([obs("ABC123", i=i) for i in range(3)])
    assert is_settled(three, True, RULE)
    assert not is_settled(three, False, RULE)  # no read event yet: every read may still matter
    assert not is_settled(vote([obs("ABC123", i=i) for i in range(2)]), True, RULE)
    assert not is_settled(vote([obs("ABC123", 0.3, i) for i in range(3)]), True, RULE)  # weak characters
    assert not is_settled(three, True, SettleRule(min_reads=0))  # off
    assert not is_settled(None, True, RULE)


def test_a_rival_text_keeps_the_track_unsettled() -> None:
    reads = [obs("ABC123", i=i) for i in range(4)] + [obs("ABC128", 0.9, 4)]
    v = vote(reads)
    assert v is not None and v.text == "ABC123" and v.agreeing == 4
    # The rival already weakens the contested character below 0.9; the share rule holds on its own.
    assert not is_settled(v, True, RULE)
    lenient = SettleRule(min_reads=3, min_confidence=0.5, min_share=0.8)
    assert is_settled(v, True, lenient)  # 4 of 5 agree: the share is 0.8
    v6 = vote(reads + [obs("ABC128", 0.9, 5)])
    assert v6 is not None and v6.text == "ABC123" and v6.confidence >= 0.5
    assert not is_settled(v6, True, lenient)  # 4 of 6


def track(box: tuple[int, int, int, int], settled: bool = True, read_width: int = 100, tid: int = 1) -> Track:
    t = Track(tid, box, 0, 0, 10, 330, frames=11)
    t.settled, t.read_width = settled, read_width
    return t


def test_skip_only_a_settled_track_whose_plate_has_not_grown() -> None:
    t = track((100, 100, 200, 130))
    assert settled_track_of((102, 101, 204, 131), [t], 363, RULE) is t
    assert settled_track_of((95, 98, 224, 136), [t], 363, RULE) is t  # 1.3x less a pixel: not yet
    assert settled_track_of((90, 95, 220, 135), [t], 363, RULE) is None  # 1.3x as wide: read again
    assert settled_track_of((102, 101, 204, 131), [track((100, 100, 200, 130), settled=False)], 363, RULE) is None
    assert settled_track_of((600, 100, 700, 130), [t], 363, RULE) is None  # another plate: a new vehicle


def test_skip_follows_the_predicted_position() -> None:
    t = track((100, 100, 200, 130))
    t.velocity = (1.0, 0.0, 1.0, 0.0)  # 1 px/ms to the right
    t.origin = (-230, 100, -130, 130)  # it came from the left: not a parked plate
    assert settled_track_of((400, 100, 500, 130), [t], 630, RULE) is t  # 300 ms later, 300 px on


def test_a_box_between_two_tracks_is_read() -> None:
    a, b = track((100, 100, 200, 130)), track((150, 100, 250, 130), tid=2)
    assert settled_track_of((125, 100, 225, 130), [a, b], 363, RULE) is None


@pytest.mark.parametrize("key,value", [("settle_reads", -1), ("reread_growth", 0.9),
                                       ("settle_min_confidence", 1.5), ("settle_min_share", -0.1)])
def test_settle_settings_are_validated(key: str, value: float) -> None:
    with pytest.raises(ConfigError, match=key):
        TrackingConfig(**{key: value}).validate("tracking")


def test_not_settled_while_reads_could_still_earn_an_update() -> None:
    on_change = SettleRule(min_reads=3, min_confidence=0.9, min_share=0.8, update_gain=0.1)
    v = vote([obs("ABC123", 0.6, i) for i in range(3)])
    assert v is not None and 0.93 < v.confidence < 0.94
    assert not is_settled(v, True, on_change, first_confidence=0.88)  # later reads may raise it past 0.98
    assert is_settled(v, True, on_change, first_confidence=0.75)  # the update is earned already
    assert is_settled(v, True, on_change, first_confidence=0.95)  # no read can raise it by 0.1


def test_a_settled_plate_cut_by_the_frame_edge_is_not_read_even_when_grown() -> None:
    t = track((1800, 1000, 1900, 1050))
    assert settled_track_of((1750, 990, 1920, 1060), [t], 363, RULE, (1920, 1080)) is t  # 1.7x, at the edge
    assert settled_track_of((1750, 990, 1910, 1060), [t], 363, RULE, (1920, 1080)) is None  # grown, inside
