"""From the reader's output to text: its per-slot (or per-column) probabilities and their decoding.

The slot reader (manifest `decoder: slots`) gives each of its ten slots a probability for every
character and for the pad that ends the plate, characters from the left: `ABC123____`. Its commonest
invented character is an echo of the last one: where the plate ends, the slot after the last glyph
still attends to it, and reads it again instead of the pad (LJK920 read LJK9200, UBUNTU read UBUNTUU).
"""

from __future__ import annotations

import numpy as np

from alprd.recognition.base import PlateText, SlotEvidence

# The last slot is an echo of the one before it when both read the same character and the last one
# gives the pad at least this probability: the plate ends there, one slot late. Measured with reader
# 0.5.2 (int8) on the US and Brazilian dev crops, each read tight and from 12 boxes with detector
# 0.4.1's box errors and the second look's four boxes around each (61 reads a crop): of the US reads
# ending in a repeated character with the pad at >= 0.2 in the last slot, 35 were echoes (the plate
# is one character shorter) and 4 real doubles (GLF288, 200000, BRRRR twice); at 0.1, 45 and 11; at
# 0.3, 21 and 1. No right Brazilian read crosses 0.15.
END_ECHO_PAD = 0.2


def end_echo(probs: np.ndarray, pad_index: int) -> int | None:
    """The slot that echoes the last character (see END_ECHO_PAD), or None."""
    idx = probs.argmax(-1)
    chars = [i for i, k in enumerate(idx) if k != pad_index]
    if len(chars) < 2:
        return None
    before, last = chars[-2], chars[-1]
    if last != before + 1 or idx[last] != idx[before] or probs[last, pad_index] < END_ECHO_PAD:
        return None
    return last


def without_end_echo(probs: np.ndarray, pad_index: int) -> np.ndarray | None:
    """The probabilities with the echoing slot's belief in the repeated character given to the pad
    (the plate ends there), or None when no slot echoes."""
    slot = end_echo(probs, pad_index)
    if slot is None:
        return None
    out = probs.copy()
    k = int(probs[slot].argmax())
    out[slot, pad_index] += out[slot, k]
    out[slot, k] = 0.0
    return out


def decode_slots(probs: np.ndarray, chars: str, pad: str) -> PlateText:
    """The most probable character of each slot, pads dropped, the end echo removed. Each character is
    as sure as its slot's probability, and the last one, where an echo was removed, only as sure as the
    echo is not a character of its own; the weakest bounds the whole plate."""
    pad_index = chars.index(pad)
    echo = end_echo(probs, pad_index)
    idx, conf = probs.argmax(-1), probs.max(-1)
    kept: list[tuple[str, float]] = []
    for slot, (i, c) in enumerate(zip(idx, conf)):
        if slot == echo:
            kept[-1] = (kept[-1][0], min(kept[-1][1], 1.0 - float(c)))
        elif chars[i] != pad:
            kept.append((chars[i], float(c)))
    total = min((c for _, c in kept), default=0.0)
    return PlateText("".join(ch for ch, _ in kept), total, tuple(round(c, 4) for _, c in kept),
                     SlotEvidence(probs, chars, pad))


def decode_ctc(probs: np.ndarray, chars: str, pad: str) -> PlateText:
    """Greedy CTC: the same character over adjacent columns is one character, as sure as its best
    column; the pad is the blank between characters."""
    out: list[str] = []
    confs: list[float] = []
    prev = -1
    for i, c in zip(probs.argmax(-1), probs.max(-1)):
        ch = chars[i]
        if i == prev:
            if ch != pad:
                confs[-1] = max(confs[-1], float(c))
        elif ch != pad:
            out.append(ch)
            confs.append(float(c))
        prev = i
    return PlateText("".join(out), min(confs, default=0.0), tuple(round(c, 4) for c in confs))
