"""Region presets as regexes over the compact plate text (no spaces or dashes).

Fitting: a read that matches no allowed format and carries the slot reader's probabilities is decoded
against the formats' layouts (alprd.formats.layouts): the most probable text that fits one, where it
is nearly as probable as the reader's own text. Fixing, for the rest (and for a vote over frames): a
read that matches no allowed format is tried with confusable characters swapped (O<->0, I<->1, B<->8,
S<->5, Z<->2, G<->6, ...), fewest swaps first, least confident characters first. A read that already
matches some allowed format is never changed: when several formats are allowed, "fixing" a valid
read towards another format would turn right reads into wrong ones (on the US dev crops, fitting the
reads that only the generic `us` format allows to `us-standard` lost up to 1.4 points, framed).
The most probable text of all is the reader's own, so a read that fits a layout is fitted to itself."""

from __future__ import annotations

import dataclasses
import itertools
import re
from dataclasses import dataclass
from typing import TypeVar

from alprd.errors import ConfigError
from alprd.formats.layouts import LAYOUT_MIN_RATIO, LayoutDecoder
from alprd.recognition.base import PlateRead, PlateText

# Letter -> digit and digit -> letter look-alikes, as OCR models confuse them on plates.
LETTER_TO_DIGIT = {"O": "0", "Q": "0", "D": "0", "I": "1", "L": "1", "T": "7", "Z": "2", "J": "3",
                   "A": "4", "S": "5", "G": "6", "B": "8"}
DIGIT_TO_LETTER = {"0": "O", "1": "I", "2": "Z", "3": "J", "4": "A", "5": "S", "6": "G", "7": "T", "8": "B"}
# Where a format needs a letter and the read has a digit (or the reverse), several may fit; the plate
# fonts make these the likely ones, tried in this order.
DIGIT_TO_LETTERS = {"0": "OQD", "1": "I", "2": "Z", "3": "J", "4": "A", "5": "S", "6": "G", "7": "T", "8": "B"}
LETTER_TO_DIGITS = {"O": "0", "Q": "0", "D": "0", "I": "1", "L": "1", "T": "71", "Z": "2", "J": "3",
                    "A": "4", "S": "5", "G": "6", "B": "8"}

_L, _D = "[A-Z]", "[0-9]"

PRESETS: dict[str, tuple[str, ...]] = {
    # Generic US: every state has its own serials and vanity plates are common, so this only
    # bounds length and alphabet; `us-standard` holds the common serial formats and can fix.
    "us": (r"[A-Z0-9]{2,8}",),
    "us-standard": ("LLLDDDD", "DLLLDDD", "LLLDDD", "DDDLLL", "LLDDDDD", "DLLDDD", "DDDLDD", "LDDDDD",
                    "DDDDLL", "DDLLLD", "DDDLLLL", "LLLLDDD"),
    # Germany: district (1-3 letters), 1-2 letters, 1-4 digits, optional E (electric) / H (historic).
    "de": (r"(?=.{3,9}$)[A-Z]{1,3}[A-Z]{1,2}[0-9]{1,4}[EH]?",),
    "fr": ("LLDDDLL", r"[0-9]{1,4}[A-Z]{1,3}[0-9]{2}"),  # SIV since 2009, FNI before
    "it": ("LLDDDLL",),
    "es": (r"[0-9]{4}[BCDFGHJKLMNPRSTVWXYZ]{3}", r"[A-Z]{1,2}[0-9]{4}[A-Z]{1,2}"),
    # Netherlands: the side codes 1-14, all six characters.
    "nl": ("LLDDDD", "DDDDLL", "DDLLDD", "LLDDLL", "LLLLDD", "DDLLLL", "DDLLLD", "DLLLDD", "LLDDDL",
           "LDDDLL", "LLLDDL", "LDDLLL", "DLLDDD", "DDDLLD"),
    "pl": (r"[A-Z]{2}[A-Z0-9]{5}", r"[A-Z]{3}[A-Z0-9]{4,5}"),
    # Great Britain: current (2001), prefix and suffix serials, and the dateless ones (ABC 123, 123 ABC,
    # and Northern Ireland's ABZ 1234), which cherished plates keep: 3 of the 84 European dev photos
    # (453MBC, 776XCN, 888JXJ), which `eu` formats fixed into wrong plates without them.
    "gb": ("LLDDLLL", r"[A-Z][0-9]{1,3}[A-Z]{3}", r"[A-Z]{3}[0-9]{1,3}[A-Z]", r"[A-Z]{1,3}[0-9]{1,4}",
           r"[0-9]{1,4}[A-Z]{1,3}"),
    "ro": (r"B[0-9]{2,3}[A-Z]{3}", "LLDDLLL"),
    "be": ("DLLLDDD", "LLLDDD"),
    "cz": ("DLDDDDD", "DLLDDDD"),
    "at": (r"[A-Z]{1,2}[0-9]{1,5}[A-Z]{1,2}",),
    "br": ("LLLDDDD", "LLLDLDD"),  # old grey plates, and Mercosur since 2018
}
GENERIC = {"us"}  # bounds only: matched last, never a reason to fix
GROUPS: dict[str, tuple[str, ...]] = {
    "eu": ("de", "fr", "it", "es", "nl", "pl", "gb", "ro", "be", "cz", "at"),
}


def _to_regex(spec: str) -> str:
    """`LLLDDDD` shorthand (L letter, D digit, X either) or a regex as is."""
    if re.fullmatch(r"[LDX]+", spec):
        return "".join({"L": _L, "D": _D, "X": "[A-Z0-9]"}[c] for c in spec)
    return spec


def expand_presets(names: tuple[str, ...], where: str = "formats") -> list[tuple[str, str]]:
    """(format name, regex) for preset and group names; raises ConfigError naming what is valid."""
    out: list[tuple[str, str]] = []
    for name in names:
        key = name.lower()
        if key in GROUPS:
            out += expand_presets(GROUPS[key], where)
        elif key in PRESETS:
            out += [(key, _to_regex(s)) for s in PRESETS[key]]
        else:
            valid = ", ".join([*PRESETS, *GROUPS])
            raise ConfigError(f"{where}: unknown plate format {name!r}; valid: {valid} (or list regexes under custom)")
    return out


@dataclass(frozen=True)
class FormatResult:
    text: str  # the read, fixed where a format forced it
    format: str  # name of the format it matches
    fixes: tuple[tuple[int, str, str], ...]  # (position, read, fixed)


Read = TypeVar("Read", PlateText, PlateRead)


class FormatChecker:
    """Allowed formats of one camera. Empty list of formats: every read passes unchanged."""

    def __init__(self, presets: tuple[str, ...] = (), custom: tuple[str, ...] = (), fix: bool = True,
                 max_fixes: int = 1, where: str = "formats", layout_min_ratio: float = LAYOUT_MIN_RATIO):
        specs = expand_presets(presets, f"{where}.presets")
        for i, rx in enumerate(custom):
            try:
                re.compile(rx)
            except re.error as e:
                raise ConfigError(f"{where}.custom[{i}]: {rx!r} is not a valid regex ({e})") from None
            specs.append((f"custom{i}", rx))
        # Specific formats first: a read that fits both "br" and the catch-all "us" is named "br".
        specs.sort(key=lambda f: f[0] in GENERIC)
        seen: set[tuple[str, str]] = set()
        self.formats = [(n, re.compile(rx)) for n, rx in specs if not ((n, rx) in seen or seen.add((n, rx)))]
        self.fix = fix
        self.max_fixes = max_fixes
        # Fitting reads to layouts changes characters as fixing does: both or neither.
        self.layouts = LayoutDecoder([(n, rx.pattern) for n, rx in self.formats], frozenset(GENERIC),
                                     layout_min_ratio) if fix else LayoutDecoder([])

    def fitted(self, read: Read) -> Read:
        """The read as the most probable text of the formats' layouts, from its slot probabilities,
        where that is nearly as probable as the read's own text; otherwise (or without them) as it is."""
        if read.slots is None or not self.layouts or self._match(read.text) is not None:
            return read
        fit = self.layouts.decode(read.slots)
        if fit is None or fit.text == read.text:
            return read
        return dataclasses.replace(read, text=fit.text, char_confidences=fit.char_confidences,
                                   confidence=min(fit.char_confidences, default=0.0))

    def _match(self, text: str) -> str | None:
        for name, rx in self.formats:
            if rx.fullmatch(text):
                return name
        return None

    def check(self, text: str, char_confidences: tuple[float, ...] = ()) -> FormatResult | None:
        """The read as a valid plate, fixed if needed, or None when no allowed format fits."""
        if not self.formats:
            return FormatResult(text, "any", ())
        name = self._match(text)
        if name is not None:
            return FormatResult(text, name, ())
        if not self.fix:
            return None
        confs = list(char_confidences) + [1.0] * (len(text) - len(char_confidences))
        options: list[tuple[int, str]] = []
        for i, c in enumerate(text):
            for alt in LETTER_TO_DIGITS.get(c, ""):
                options.append((i, alt))
            for alt in DIGIT_TO_LETTERS.get(c, ""):
                options.append((i, alt))
        # Fewest changes first; among those, the fix that overrides the least confident characters.
        for k in range(1, self.max_fixes + 1):
            best: tuple[float, str, str, tuple[tuple[int, str, str], ...]] | None = None
            for combo in itertools.combinations(options, k):
                positions = [i for i, _ in combo]
                if len(set(positions)) < k:
                    continue
                chars = list(text)
                for i, alt in combo:
                    chars[i] = alt
                cand = "".join(chars)
                fmt = self._match(cand)
                if fmt is None:
                    continue
                cost = sum(confs[i] for i in positions)
                fixes = tuple((i, text[i], alt) for i, alt in combo)
                if best is None or cost < best[0] - 1e-9:
                    best = (cost, cand, fmt, fixes)
            if best is not None:
                return FormatResult(best[1], best[2], best[3])
        return None
