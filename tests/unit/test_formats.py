"""Plate formats: presets, confusable fixing and rejection, on real plate crops from ../shared/data
(Brazilian crops of openalpr/train-detector, US crops of openalpr/benchmarks) read by the shipped OCR,
and on their labels with injected confusions."""

from __future__ import annotations

import csv
import random
from pathlib import Path

import cv2
import pytest

from alprd.config import ModelsConfig
from alprd.errors import ConfigError
from alprd.formats.formats import DIGIT_TO_LETTER, DIGIT_TO_LETTERS, LETTER_TO_DIGIT, LETTER_TO_DIGITS, FormatChecker
from alprd.recognition.recognizer import Recognizer

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
BR = DATA / "openalpr_train_detector"
US = DATA / "us_plate_crops"


def rows(folder: Path) -> list[dict[str, str]]:
    if not (folder / "ocr.csv").is_file():
        pytest.skip(f"real plate crops not available at {folder}")
    with open(folder / "ocr.csv") as f:
        return list(csv.DictReader(f))


def sibling(fixed: str, label: str, bad: str) -> bool:
    """A wrong fix that only picked another look-alike of the same character (0 -> O, Q or D): the
    format cannot tell those apart, so the checker takes the usual one."""
    c = bad
    return fixed in LETTER_TO_DIGITS.get(c, "") + DIGIT_TO_LETTERS.get(c, "") and \
        label in LETTER_TO_DIGITS.get(c, "") + DIGIT_TO_LETTERS.get(c, "") + "LQD"


def inject(text: str, pos: int) -> str | None:
    c = text[pos]
    alt = LETTER_TO_DIGIT.get(c) or DIGIT_TO_LETTER.get(c)
    return text[:pos] + alt + text[pos + 1:] if alt else None


# --- unit ---------------------------------------------------------------------------------------


def test_presets_fix_only_where_the_format_forces_it():
    br = FormatChecker(("br",))
    assert br.check("ABC1234").fixes == ()
    r = br.check("A8C1234", (0.9, 0.4, 0.9, 0.9, 0.9, 0.9, 0.9))
    assert (r.text, r.format, r.fixes) == ("ABC1234", "br", ((1, "8", "B"),))
    assert br.check("ABC12S4").text == "ABC1254"
    assert br.check("ABC1D23").fixes == ()  # a valid Mercosur plate: nothing to fix
    assert br.check("AB1234") is None  # too short for any Brazilian format
    assert br.check("A8C12S4") is None  # more changes than max_fixes (1 by default)
    assert FormatChecker(("br",), max_fixes=2).check("A8C12S4").text == "ABC1254"
    de = FormatChecker(("de",))
    assert de.check("MAB1234").format == "de" and de.check("M1234567") is None
    nl = FormatChecker(("nl",))
    assert nl.check("AB123C").format == "nl" and nl.check("ABC123C") is None
    gb = FormatChecker(("gb",))
    assert gb.check("AB12CDE").format == "gb"
    assert gb.check("ABI2CDE").text == "AB12CDE"
    assert gb.check("A812CDE").fixes == ()  # a valid prefix-era plate (A 812 CDE): not "fixed"
    assert FormatChecker(("es",)).check("1234BCD").format == "es"
    assert FormatChecker(("es",)).check("1234ABC") is None  # vowels never appear in the letters
    assert FormatChecker(("it",)).check("AB123CD").format == "it"
    assert FormatChecker(("fr",)).check("AB123CD").format == "fr"
    assert FormatChecker(("pl",)).check("WA12345").format == "pl"
    assert FormatChecker(("ro",)).check("B123ABC").format == "ro"
    assert FormatChecker(("ro",)).check("CJ12ABC").format == "ro"


def test_ambiguity_never_fixes_a_read_that_fits_some_allowed_format():
    both = FormatChecker(("br", "gb"))
    # GB "AB12CDE" and BR "ABC1234" differ in where letters go: each fits its own format unchanged.
    assert both.check("AB12CDE").text == "AB12CDE"
    assert both.check("ABC1234").text == "ABC1234"
    # Fewest changes, then the least confident characters: O->0 at the weak position 3.
    r = both.check("ABCO234", (0.9, 0.9, 0.9, 0.3, 0.9, 0.9, 0.9))
    assert r.text == "ABC0234" and len(r.fixes) == 1
    # The generic US format accepts any plausible plate, so it never forces a fix.
    assert FormatChecker(("us", "br")).check("A8C1234").text == "A8C1234"
    assert FormatChecker((), ()).check("anything!").format == "any"
    assert FormatChecker(("br",), fix=False).check("A8C1234") is None


def test_custom_regexes_and_bad_presets():
    c = FormatChecker((), (r"[A-Z]{2}[0-9]{4}", "TAXI[0-9]{3}"))
    assert c.check("AB1234").format == "custom0"
    assert c.check("TAXI123").format == "custom1"
    assert c.check("A81234").text == "AB1234"
    with pytest.raises(ConfigError, match=r"formats.presets: unknown plate format 'xx'; valid: us"):
        FormatChecker(("xx",))
    with pytest.raises(ConfigError, match=r"formats.custom\[0\]: '\[A-' is not a valid regex"):
        FormatChecker((), ("[A-",))


# --- real crops: labels with injected confusions ------------------------------------------------


def test_brazil_labels_pass_and_injected_confusions_are_fixed():
    labels = [r["text"] for r in rows(BR)]
    br = FormatChecker(("br",))
    assert all(br.check(t) is not None and br.check(t).text == t for t in labels), "a real BR plate was rejected"
    rng = random.Random(4)
    fixed = ambiguous = sibs = wrong = total = 0
    for t in labels:
        pos = rng.randrange(7)
        bad = inject(t, pos)
        if bad is None:
            continue
        total += 1
        confs = tuple(0.4 if i == pos else 0.95 for i in range(7))
        r = br.check(bad, confs)
        if r is not None and r.text == t:
            fixed += 1
        elif r is not None and r.text == bad and pos == 4 and not r.fixes:
            ambiguous += 1  # old LLLDDDD with a letter at 5th place is a valid Mercosur LLLDLDD
        elif r is not None and sibling(r.text[pos], t[pos], bad[pos]) and r.text[:pos] + r.text[pos + 1:] == \
                t[:pos] + t[pos + 1:]:
            sibs += 1
        else:
            wrong += 1
    print(f"BR labels: {total} injected confusions, {fixed} fixed, {ambiguous} left as valid Mercosur, "
          f"{sibs} fixed to another look-alike (0 -> O not Q/D), {wrong} wrong")
    assert total > 0.75 * len(labels) and wrong == 0
    assert fixed / (total - ambiguous) > 0.9 and sibs / total < 0.1


def test_us_labels_pass_generic_and_injected_confusions_are_fixed_by_us_standard():
    labels = [r["text"] for r in rows(US) if r["text"] != "0"]  # "0": crops without a label
    generic = FormatChecker(("us",))
    passed = [t for t in labels if generic.check(t) is not None]
    assert all(generic.check(t).text == t for t in passed), "the generic US format changed a real plate"
    assert len(passed) >= 0.98 * len(labels)
    std = FormatChecker(("us-standard",))
    serials = [t for t in labels if std.check(t) is not None and not std.check(t).fixes]
    assert len(serials) > 300
    rng = random.Random(5)
    fixed = sibs = wrong = total = 0
    for t in serials:
        pos = rng.randrange(len(t))
        bad = inject(t, pos)
        if bad is None or std.check(bad, ()) is not None and not std.check(bad).fixes:
            continue  # no look-alike, or the confusion is itself a valid serial: cannot be told apart
        total += 1
        r = std.check(bad, tuple(0.4 if i == pos else 0.95 for i in range(len(t))))
        if r is not None and r.text == t:
            fixed += 1
        elif r is not None and sibling(r.text[pos], t[pos], bad[pos]):
            sibs += 1
        else:
            wrong += 1
    print(f"US labels: {total} injected confusions, {fixed} fixed, {sibs} fixed to another look-alike, {wrong} wrong")
    assert total > 200 and fixed / total > 0.9 and wrong == 0


# --- real crops read by the shipped OCR ---------------------------------------------------------


@pytest.fixture(scope="module")
def ocr(models_dir):
    return Recognizer.from_config(ModelsConfig(dir=str(models_dir))).ocr


def read_crops(ocr, folder: Path, sample: list[dict[str, str]], cut: float = 0.0):
    imgs = []
    for r in sample:
        img = cv2.imread(str(folder / r["image"]))
        assert img is not None, f"unreadable crop {folder / r['image']}"
        imgs.append(img[:, int(img.shape[1] * cut):])
    return ocr.read(imgs)


def test_ocr_reads_of_real_crops_formats_never_break_a_right_read(ocr):
    for folder, presets, n in ((BR, ("br",), 400), (US, ("us",), 400)):
        sample = [r for r in rows(folder) if r["text"] != "0"]
        sample = random.Random(1).sample(sample, min(n, len(sample)))
        reads = read_crops(ocr, folder, sample)
        chk = FormatChecker(presets)
        raw_ok = pub_ok = broke = 0
        for r, t in zip(sample, reads):
            res = chk.check(t.text, t.char_confidences)
            raw_ok += t.text == r["text"]
            pub_ok += res is not None and res.text == r["text"]
            broke += t.text == r["text"] and (res is None or res.text != r["text"])
        print(f"{folder.name} {presets}: raw exact {raw_ok}/{len(sample)}, after formats {pub_ok}, broken {broke}")
        assert raw_ok > 0.5 * len(sample), "the shipped OCR reads too few real crops to test formats on"
        label_ok = sum(chk.check(r["text"]) is not None for r in sample)
        # Only reads of plates outside the formats (US vanity plates of 9+ characters) may be lost.
        assert broke <= len(sample) - label_ok
        assert pub_ok >= raw_ok - (len(sample) - label_ok)


def test_real_plates_of_another_region_are_rejected(ocr):
    """A Brazilian unit seeing real US plates: confident reads whose plate does not have a Brazilian
    shape are rejected (counted, not published); US plates that happen to look Brazilian pass."""
    sample = random.Random(2).sample([r for r in rows(US) if r["text"] != "0"], 400)
    reads = read_crops(ocr, US, sample)
    floor = ModelsConfig()
    br = FormatChecker(("br",))
    foreign = kept_foreign = native = kept_native = 0
    for r, t in zip(sample, reads):
        if t.confidence < floor.min_read_confidence or len(t.text) < floor.min_plate_chars:
            continue  # the recognizer drops these before any format is applied
        passed = br.check(t.text, t.char_confidences) is not None
        if br.check(r["text"]) is None:
            foreign += 1
            kept_foreign += passed
        else:
            native += 1
            kept_native += passed
    print(f"US crops under the br format: {foreign} confident reads of non-Brazilian-shaped plates, "
          f"{foreign - kept_foreign} rejected; {native} of Brazilian-shaped plates, {kept_native} kept")
    assert foreign > 100 and kept_foreign <= 0.1 * foreign
    assert native > 10 and kept_native >= 0.8 * native
