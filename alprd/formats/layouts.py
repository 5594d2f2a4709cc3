"""Layout-aware decoding: the most probable text that fits one of a camera's plate formats, from the
slot reader's per-slot probabilities, not from its best guess alone.

A format is a regex over the compact plate; those made of character classes with bounded repeats
(every preset: `LLLDLDD`, `[A-Z]{1,3}[0-9]{1,4}[EH]?`, ...) are expanded into layouts, one allowed
set of characters per place. A layout's text takes the most probable allowed character in each of its
slots and the pad in every slot after it; its probability is the product of those. The best layout's
text replaces the reader's own (free) text where it is at least LAYOUT_MIN_RATIO as probable: a letter
O in a place of digits is read 0 when the reader gave the 0 some belief, and a plate the reader
is sure of is never forced into a layout it does not have. Free text, and formats outside that
subset of regexes, are left to FormatChecker.check as before. The echo of a last character
(alprd.recognition.decoding) is one more reading of the slots: a layout may fit the plate either way.
"""

from __future__ import annotations

import itertools
import math
import re
from dataclasses import dataclass

import numpy as np

from alprd.recognition.base import ALPHABET, MAX_PLATE_CHARS, SlotEvidence
from alprd.recognition.decoding import without_end_echo

# The layout's text is taken where it is at least this share as probable as the free text. Measured
# with reader 0.5.2 (int8), against fitting nothing: on the 1,144 Brazilian crops, framed 12 ways each
# and read with the second look, 0.05 publishes 6 more plates right of 13,728 (0.005: 8); on 600
# synthetic plates dense with O and 0 (Brazilian, British, Romanian) 4 more (0.005: 10); but of the
# 657 US plates of no Brazilian shape that the reader reads confidently, a camera with the `br` format
# publishes 6 at 0.05 or 0.02, 19 at 0.005 and 110 at 0.001, against 1 without fitting: a ratio that
# low forces plates of other countries into the layouts.
LAYOUT_MIN_RATIO = 0.05
# A regex whose expansion exceeds this many layouts is left to the regex checks (never a preset).
MAX_LAYOUTS = 4096
_TINY = 1e-12

Layout = tuple[frozenset[str], ...]


@dataclass(frozen=True)
class LayoutRead:
    text: str
    char_confidences: tuple[float, ...]  # each character's probability among those its place allows
    layout: str  # the format it was fitted to


def _char_class(body: str) -> frozenset[str] | None:
    negate = body.startswith("^")
    body = body[1:] if negate else body
    out: set[str] = set()
    i = 0
    while i < len(body):
        if i + 2 < len(body) and body[i + 1] == "-":
            lo, hi = body[i], body[i + 2]
            if lo > hi:
                return None
            out.update(chr(c) for c in range(ord(lo), ord(hi) + 1))
            i += 3
        elif body[i] in "\\[]":
            return None
        else:
            out.add(body[i])
            i += 1
    allowed = set(ALPHABET) - out if negate else out & set(ALPHABET)
    return frozenset(allowed)


_ATOM = re.compile(r"\[(?P<cls>[^\]]*)\]|(?P<lit>[A-Z0-9])|(?P<any>\.)")
_REPEAT = re.compile(r"\{(\d+)(?:,(\d+))?\}|\?")
_LENGTH = re.compile(r"\(\?=\.\{(\d+)(?:,(\d+))?\}\$\)")


def expand(regex: str, max_chars: int = MAX_PLATE_CHARS) -> list[Layout] | None:
    """Every layout (one allowed character set per place) that `regex` matches, shortest first, or
    None where the regex is not a sequence of character classes with bounded repeats (optionally after
    a `(?=.{m,n}$)` length bound) or expands into more than MAX_LAYOUTS."""
    lo, hi = 1, max_chars
    pos = 0
    m = _LENGTH.match(regex)
    if m:
        lo, hi = int(m.group(1)), min(hi, int(m.group(2) or m.group(1)))
        pos = m.end()
    parts: list[tuple[frozenset[str], int, int]] = []
    while pos < len(regex):
        a = _ATOM.match(regex, pos)
        if a is None:
            return None
        if a.group("cls") is not None:
            allowed = _char_class(a.group("cls"))
            if allowed is None:
                return None
        elif a.group("lit"):
            allowed = frozenset(a.group("lit"))
        else:
            allowed = frozenset(ALPHABET)
        pos = a.end()
        r = _REPEAT.match(regex, pos)
        if r is None:
            least = most = 1
        elif r.group(0) == "?":
            least, most = 0, 1
        else:
            least = int(r.group(1))
            most = int(r.group(2)) if r.group(2) is not None else least
        if r is not None:
            pos = r.end()
        if not allowed or most < least:
            return None
        parts.append((allowed, least, most))
    counts = 1
    for _, least, most in parts:
        counts *= most - least + 1
        if counts > MAX_LAYOUTS:
            return None
    found: set[Layout] = set()
    for reps in itertools.product(*(range(least, most + 1) for _, least, most in parts)):
        if lo <= sum(reps) <= hi:
            found.add(tuple(s for (s, _, _), n in zip(parts, reps) for _ in range(n)))
    return sorted(found, key=lambda la: (len(la), [sorted(s) for s in la]))


class LayoutDecoder:
    """The layouts of a camera's formats and the decoding against them (see the module's docstring)."""

    def __init__(self, formats: list[tuple[str, str]], generic: frozenset[str] = frozenset(),
                 min_ratio: float = LAYOUT_MIN_RATIO):
        """`formats`: (name, regex) in the camera's order; `generic` names bound only length and
        alphabet (any text of theirs is free text, never a layout to fit)."""
        self.min_log_ratio = math.log(min_ratio) if min_ratio > 0 else -math.inf
        self.layouts: list[tuple[str, Layout]] = []
        seen: set[Layout] = set()
        for name, rx in formats:
            if name in generic:
                continue
            for layout in expand(rx) or ():
                if layout not in seen:  # the first format that has a layout names it
                    seen.add(layout)
                    self.layouts.append((name, layout))
        self._sets = sorted({s for _, la in self.layouts for s in la}, key=sorted)
        index = {s: i for i, s in enumerate(self._sets)}
        self._by_length: dict[int, tuple[list[str], np.ndarray]] = {}
        for n in sorted({len(la) for _, la in self.layouts}):
            group = [(name, la) for name, la in self.layouts if len(la) == n]
            self._by_length[n] = ([name for name, _ in group], np.array([[index[s] for s in la] for _, la in group]))
        self._masks: dict[str, np.ndarray] = {}

    def __bool__(self) -> bool:
        return bool(self.layouts)

    def _mask(self, chars: str) -> np.ndarray:
        """[sets, classes]: which of the reader's classes each allowed set holds."""
        if chars not in self._masks:
            self._masks[chars] = np.array([[c in s for c in chars] for s in self._sets], bool)
        return self._masks[chars]

    def _best(self, probs: np.ndarray, chars: str, pad: int) -> tuple[float, str, str, tuple[float, ...]] | None:
        """(log probability, layout name, text, confidences) of the most probable layout text."""
        slots = probs.shape[0]
        mask = self._mask(chars)
        inside = np.where(mask[None, :, :], probs[:, None, :], 0.0)  # [slots, sets, classes]
        best_class = inside.argmax(-1)  # [slots, sets]
        best_log = np.log(np.maximum(inside.max(-1), _TINY))
        mass = inside.sum(-1)
        pad_log = np.log(np.maximum(probs[:, pad], _TINY))
        pad_after = np.concatenate([np.cumsum(pad_log[::-1])[::-1], [0.0]])  # [slots + 1]
        top: tuple[float, str, np.ndarray] | None = None
        for n, (names, ids) in self._by_length.items():
            if n > slots:
                continue
            scores = best_log[np.arange(n), ids].sum(1) + pad_after[n]
            k = int(scores.argmax())
            if top is None or scores[k] > top[0]:
                top = (float(scores[k]), names[k], ids[k])
        if top is None:
            return None
        score, name, ids = top
        places = np.arange(len(ids))
        classes = best_class[places, ids]
        text = "".join(chars[c] for c in classes)
        confs = tuple(round(float(probs[j, c] / max(mass[j, s], _TINY)), 4) for j, c, s in zip(places, classes, ids))
        return score, name, text, confs

    def decode(self, evidence: SlotEvidence) -> LayoutRead | None:
        """The most probable text of the layouts, where it is at least min_ratio as probable as the
        free text (as decode_slots reads it); None: keep the free text."""
        if not self.layouts:
            return None
        probs, chars = evidence.probs, evidence.chars
        pad = chars.index(evidence.pad)
        views = [probs]
        merged = without_end_echo(probs, pad)
        if merged is not None:
            views.append(merged)  # the plate ending a slot early is as good a reading as the echo
        free = float(np.log(np.maximum((merged if merged is not None else probs).max(-1), _TINY)).sum())
        best = max((b for b in (self._best(v, chars, pad) for v in views) if b is not None),
                   key=lambda b: b[0], default=None)
        if best is None or best[0] - free < self.min_log_ratio:
            return None
        return LayoutRead(best[2], best[3], best[1])
