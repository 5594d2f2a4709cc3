"""The order of a frame's reads (alprd/recognition/rank.py): the likeliest plate first."""

from __future__ import annotations

from alprd.recognition.base import PlateRead
from alprd.recognition.rank import rank_score, ranked


def read(text: str, confidence: float, detection: float) -> PlateRead:
    return PlateRead(text, confidence, (confidence,) * len(text), (0, 0, 10, 5), detection)


def test_the_score_is_read_confidence_times_detection_score():
    assert rank_score(read("ABC123", 0.9, 0.8)) == 0.9 * 0.8


def test_a_sign_read_more_surely_than_the_plate_but_boxed_less_surely_comes_after_it():
    """Issue 32's 'another box outranks the plate': a sign's clean lettering reads surer than a worn
    plate, but the detector is surer of the plate. Ranked by read confidence the sign came first."""
    sign, plate = read("HOTEL", 0.96, 0.55), read("ABC1234", 0.90, 0.85)
    assert ranked([sign, plate]) == [plate, sign]
    assert sorted([sign, plate], key=lambda r: -r.confidence)[0] is sign  # the order before


def test_ranking_only_orders_it_keeps_every_read_and_equal_scores_in_their_order():
    a, b, c = read("AAA111", 0.8, 0.5), read("BBB222", 0.5, 0.8), read("CCC333", 0.99, 0.99)
    out = ranked([a, b, c])
    assert out == [c, a, b] and out[1] is a and out[2] is b  # 0.4 == 0.4: a was first, stays first
    assert ranked([]) == []
