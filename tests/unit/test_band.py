"""Band-aware framing (alprd/recognition/band.py) on plain drawn plates: a box that starts at or in a
European plate's blue band is grown to the band's outer edge; nothing else moves a box."""

from __future__ import annotations

import numpy as np

from alprd.recognition.band import band_framed, band_left_edge

BLUE, WHITE, INK = (160, 50, 20), (235, 235, 235), (20, 20, 20)  # BGR


def scene(body=(128, 128, 128), band=BLUE, band_w: int = 16, plate=WHITE, ink=INK, stroke: int = 4) -> np.ndarray:
    """A 200 x 44 plate at (100, 80) on a car's body: its band at x 100..100+band_w, characters after."""
    frame = np.full((200, 400, 3), body, np.uint8)
    frame[80:124, 100:300] = plate
    frame[80:124, 100:100 + band_w] = band
    for x in range(100 + band_w + 6, 290, 20):  # characters, 60 % of the plate's height
        frame[89:115, x:x + stroke] = ink
    return frame


def test_a_box_at_the_bands_inner_edge_is_grown_to_its_outer_edge():
    frame = scene()
    assert band_left_edge(frame, (116, 80, 300, 124)) == 100
    assert band_framed(frame, (116, 80, 300, 124)) == (100, 80, 300, 124)
    # Inside the band, or a little into the first character, with the top and bottom a little off.
    assert band_framed(frame, (108, 78, 301, 126)) == (100, 78, 301, 126)
    assert band_framed(frame, (124, 82, 299, 122)) == (100, 82, 299, 122)


def test_boxes_without_a_band_beside_them_are_left_as_they_are():
    box = (116, 80, 300, 124)
    assert band_framed(scene(), (96, 80, 300, 124)) == (96, 80, 300, 124)  # the whole band is in the box
    assert band_framed(scene(band=WHITE), box) == box  # no band (a US plate)
    grey = np.repeat(scene()[..., 1:2], 3, axis=2)
    assert band_framed(grey, box) == box  # night or infrared: no blue to see
    assert band_framed(scene(body=BLUE), box) == box  # a blue car: the band has no outer edge
    assert band_framed(scene(plate=BLUE), box) == box  # a blue plate: the band has no inner edge
    assert band_framed(scene(band_w=3), (103, 80, 300, 124)) == (103, 80, 300, 124)  # a blue stroke, not a band
    blue_ink = scene(band=WHITE, ink=BLUE, stroke=10)  # bold blue characters: the first one's stroke is band wide
    assert band_framed(blue_ink, (125, 80, 300, 124)) == (125, 80, 300, 124)
    assert band_framed(scene(), (116, 80, 130, 124)) == (116, 80, 130, 124)  # too small to tell
