"""The synthetic plate engine's varied US plates: what the reader's training bank relies on."""

from __future__ import annotations

import re

import numpy as np
import pytest
from PIL import Image, ImageDraw

from alprd.synth.plates import _us_side_marks, _us_varied_serial, font_paths, render_plate


def test_varied_serials_hold_short_plates_vanity_words_and_runs():
    rng = np.random.default_rng(0)
    serials = [_us_varied_serial(rng) for _ in range(400)]
    assert all(re.fullmatch(r"[A-Z0-9]{2,10}", s) for s in serials), [s for s in serials if not re.fullmatch(r"[A-Z0-9]{2,10}", s)]
    assert sum(len(s) <= 4 for s in serials) > 60  # 2-4 character plates
    assert sum(bool(re.search(r"(.)\1\1", s)) for s in serials) > 60  # runs of one character
    assert sum(s.isalpha() and len(s) >= 5 for s in serials) > 30  # vanity words


def test_side_marks_stay_beside_the_serial_box():
    """Stacked letters and the access symbol are not part of the number: they must be drawn outside
    the box the serial is then drawn in, or the label would disagree with the picture."""
    drawn = 0
    for seed in range(40):
        rng = np.random.default_rng(seed)
        img = Image.new("RGB", (480, 240), (255, 255, 255))
        box = (30, 60, 450, 190)
        left, right = _us_side_marks(rng, ImageDraw.Draw(img), box, (0, 0, 0), font_paths()[0])
        assert box[0] <= left < right <= box[2]
        assert right - left >= box[3] - box[1]  # room left for the serial
        ink = np.asarray(img).min(axis=2) < 128
        assert not ink[:, left:right].any(), f"seed {seed}: a side mark reaches into the serial's box"
        drawn += bool(ink.any())
    assert drawn >= 15  # most draws add a mark


def test_varied_us_is_drawn_by_name_only():
    plate = render_plate(np.random.default_rng(1), "us_varied")
    assert plate.layout == "us" and re.fullmatch(r"[A-Z0-9]{2,10}", plate.text)
    with pytest.raises(ValueError, match="us_varied"):
        render_plate(np.random.default_rng(1), "xx")


def test_road_european_plates_are_white_with_bucharest_serials_and_drawn_by_name_only():
    from alprd.synth.plates import EU_PATTERNS, LAYOUTS

    rng = np.random.default_rng(4)
    plates = [render_plate(rng, "eu_road") for _ in range(300)]
    assert all(p.layout == "eu" and re.fullmatch(r"[A-Z0-9]{5,9}", p.text) for p in plates)
    # Bucharest's two-digit serials (B 68 SPK): seven characters, B, two digits, three letters.
    assert sum(bool(re.fullmatch(r"B[0-9]{2}[A-Z]{3}", p.text)) for p in plates) >= 15
    # The plate's middle is light (white, or yellow for Dutch and British rear plates), the ink dark.
    bright = [float(np.percentile(p.image[10:-10, p.image.shape[1] // 3:], 75)) for p in plates]
    assert min(bright) > 150
    assert "eu_road" not in LAYOUTS and "B DD LLL" not in EU_PATTERNS["RO"]  # seeded test videos unchanged
