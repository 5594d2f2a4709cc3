"""Labels from the file names of text-less crops: `images/br/<n>_<TEXT>.jpg` carries a plate text that
someone typed or an old reader wrote, noisy (`10_G5W0517.jpg` is GSW0517 by eye, `11_0PQQ492.jpg`
OPQ0492). Neither that name nor a teacher read the teacher is unsure of is a label on its own; the two
agreeing, once each character is read as what a Brazilian plate holds in its place, is one.

Brazilian plates have two layouts, old LLLDDDD and Mercosur LLLDLDD: a character in a letter place is a
letter, in a digit place a digit, so the look-alikes (0/O, 1/I, 5/S, 8/B, 2/Z, 6/G) are decided by the
place. Letters never stand for other letters here (Q and O are both letters of Brazilian plates), so a
name and a read that differ on a letter disagree."""

from __future__ import annotations

import re
from pathlib import Path

BR_LAYOUTS = ("LLLDDDD", "LLLDLDD")  # old, Mercosur
# What a look-alike in a digit place stands for, and in a letter place. Q in a digit place is 0 (the
# names write 0PQQ492 for OPQ0492); L in a digit place is 1 (00E702L is OOE7021 by the teacher and by eye).
AS_DIGIT = {"O": "0", "Q": "0", "I": "1", "L": "1", "Z": "2", "S": "5", "G": "6", "B": "8"}
AS_LETTER = {"0": "O", "1": "I", "2": "Z", "5": "S", "6": "G", "8": "B"}
_NAMED = re.compile(r"\d+_([A-Z0-9]{5,10})")


def name_text(image: Path) -> str | None:
    """The text a crop's file name carries (`<n>_<TEXT>.jpg`), or None."""
    m = _NAMED.fullmatch(image.stem.upper())
    return m.group(1) if m else None


def fit_layout(text: str, layout: str) -> str | None:
    """`text` read as a plate of `layout`, each look-alike turned into what its place holds; None where
    the length differs or a character cannot stand in its place."""
    if len(text) != len(layout):
        return None
    out = []
    for c, place in zip(text, layout):
        if place == "L":
            c = AS_LETTER.get(c, c)
            if not c.isalpha():
                return None
        else:
            c = AS_DIGIT.get(c, c)
            if not c.isdigit():
                return None
        out.append(c)
    return "".join(out)


def reconcile(name: str, read: str) -> str | None:
    """The plate text where the file name and the teacher's read agree in a Brazilian layout, else None.
    Where both layouts fit both (the fifth character a look-alike such as 1/I), the layout the read
    fits as it stands decides; where that still leaves two, neither is taken."""
    agreed = {}
    for layout in BR_LAYOUTS:
        a, b = fit_layout(name, layout), fit_layout(read, layout)
        if a is not None and a == b:
            agreed[layout] = a
    if len(agreed) > 1:
        agreed = {k: v for k, v in agreed.items() if v == read}
    return next(iter(agreed.values())) if len(agreed) == 1 else None
