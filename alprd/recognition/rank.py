"""The order of a frame's reads: the one likeliest to be *the plate* first, as `alprd read` prints them
and as image-mode ALPR services return them.

The read's own confidence (its weakest character) says how legible a text is, not whether it is a
plate: a shop sign or a sticker in big clean letters reads as surely as a plate, often more surely
(issue 32: 4 of the 10 Brazilian photos it got wrong were a sign or badge ranked above the plate).
The detector's score says how plate-like the box is. Their product ranks by both, and is a
probability-like number in 0..1 that a user can read.

Measured on the dev scenes (`python -m alprd_train.rank_report`, docs/experiments/detector.md) and on 40
synthetic road frames with a shop sign: the product puts the labelled plate first in every dev scene
where some order can, and on 35 of the 40 sign frames against 27 by read confidence. Left out, as
measured there: the plate verifier (it takes the signs for plates too, and it would have to run on
every read, not only the detector's unsure boxes), and a bonus for text that fits a region's layout
(the presets' layouts are broad, PARKING and TAXI24 fit one, and plates of regions without a preset,
India's in the openlpr photos, fit none: the bonus put a sign above one of them).
"""

from __future__ import annotations

from alprd.recognition.base import PlateRead


def rank_score(read: PlateRead) -> float:
    """How likely the read is to be a plate read right: read confidence times detection score."""
    return read.confidence * read.detection_confidence


def ranked(reads: list[PlateRead]) -> list[PlateRead]:
    """The reads, likeliest plate first (equal scores keep their order)."""
    return sorted(reads, key=lambda r: -rank_score(r))
