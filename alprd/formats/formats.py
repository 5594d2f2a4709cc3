"""Region presets as regexes over the compact plate text (no spaces or dashes).

Fixing: a read that matches no allowed format is tried with confusable characters swapped
(O<->0, I<->1, B<->8, S<->5, Z<->2, G<->6, ...), fewest swaps first, least confident characters
first. A read that already matches some allowed format is never changed: when several formats are
allowed, "fixing" a valid read towards another format would turn right reads into wrong ones."""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass

from alprd.errors import ConfigError

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
    "gb": ("LLDDLLL", r"[A-Z][0-9]{1,3}[A-Z]{3}", r"[A-Z]{3}[0-9]{1,3}[A-Z]"),
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


class FormatChecker:
    """Allowed formats of one camera. Empty list of formats: every read passes unchanged."""

    def __init__(self, presets: tuple[str, ...] = (), custom: tuple[str, ...] = (), fix: bool = True,
                 max_fixes: int = 1, where: str = "formats"):
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
