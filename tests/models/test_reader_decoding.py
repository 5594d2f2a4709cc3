"""How the slot reader's output becomes plate text: the echo of a last character is not read as a
second one, a camera's plate layouts decide which look-alike (O or 0) a place holds, and a box that
starts at a European plate's band does not lose the character beside it. On crops the synthetic
engine renders, read by the shipped reader; each test compares with what the unit did before (the
plain most-probable-character-per-slot reading of the same probabilities, or the box as detected)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from alprd.config import ModelsConfig
from alprd.formats.formats import FormatChecker
from alprd.formats.layouts import LayoutDecoder, expand
from alprd.recognition.base import PlateText, SlotEvidence
from alprd.recognition.decoding import decode_slots, end_echo
from alprd.recognition.manifest import load_entry
from alprd.recognition.onnx_models import OnnxPlateOCR
from alprd.recognition.preprocess import ocr_input
from alprd.recognition.recognizer import Recognizer
from alprd.synth.plates import _pattern, framed_from_band, plate_crop, render_br_mercosur, render_br_old, render_eu, render_us

REPO = Path(__file__).resolve().parents[2]
CHARS = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ_"


@pytest.fixture(scope="module")
def ocr() -> OnnxPlateOCR:
    return OnnxPlateOCR(load_entry(REPO / "models", "plate_ocr", "ocr"))


def slot_probs(ocr: OnnxPlateOCR, crops: list[np.ndarray]) -> np.ndarray:
    return ocr.session.run(None, {ocr._input: ocr_input(crops, ocr.height, ocr.width)})[0]


def argmax_text(ocr: OnnxPlateOCR, probs: np.ndarray) -> PlateText:
    """Each slot's most probable character, pads dropped: the reader's decoding before the echo rule."""
    kept = [(ocr.chars[i], float(c)) for i, c in zip(probs.argmax(-1), probs.max(-1)) if ocr.chars[i] != ocr.pad]
    return PlateText("".join(ch for ch, _ in kept), min((c for _, c in kept), default=0.0),
                     tuple(round(c, 4) for _, c in kept), SlotEvidence(probs, ocr.chars, ocr.pad))


def one_hot(text: str, sure: float = 0.96) -> np.ndarray:
    """Slot probabilities that read `text` (pads after it) with `sure` on each slot's character."""
    p = np.full((10, len(CHARS)), (1 - sure) / (len(CHARS) - 1), np.float32)
    for i, c in enumerate(text.ljust(10, "_")):
        p[i, CHARS.index(c)] = sure
    return p


# --- the echo of the last character ---------------------------------------------------------


def test_the_echo_rule_reads_a_slot_split_between_the_last_character_and_the_end_as_the_end():
    p = one_hot("LJK9200")
    p[6] = 0.0
    p[6, CHARS.index("0")], p[6, CHARS.index("_")] = 0.55, 0.45  # the last slot: half echo, half end
    assert end_echo(p, CHARS.index("_")) == 6
    t = decode_slots(p, CHARS, "_")
    assert t.text == "LJK920"
    # The kept 0 is only as sure as that the echo is no character of its own.
    assert t.char_confidences[-1] == pytest.approx(0.45, abs=1e-3) and t.confidence == pytest.approx(0.45, abs=1e-3)
    # A real double the reader is sure of stays: the pad has no belief in the last slot.
    sure = one_hot("GLF288")
    assert end_echo(sure, CHARS.index("_")) is None and decode_slots(sure, CHARS, "_").text == "GLF288"
    # Two equal characters apart (a pad between them) are two characters.
    apart = one_hot("AB1_1")
    apart[4, CHARS.index("_")] = 0.3
    assert decode_slots(apart, CHARS, "_").text == "AB11"


def _framed_with_room_on_the_right(rng: np.random.Generator, shown: str) -> tuple[np.ndarray, str]:
    """A US plate framed as a loose detector box frames it: a fifth to two fifths of its width more
    on the right, where the slot after the last character finds the plate's edge, not a glyph."""
    plate = render_us(rng, shown=shown)
    crop = plate_crop(rng, plate)
    extra = int(crop.shape[1] * rng.uniform(0.2, 0.4))
    return cv2.copyMakeBorder(crop, 0, 0, 0, extra, cv2.BORDER_REPLICATE), plate.text


def test_a_plate_framed_loosely_is_not_read_with_its_last_character_twice(ocr):
    """The failure class: a five or six character plate read with its last character twice (LJK920
    read LJK9200). 600 short US plates, framed loosely on the right."""
    rng = np.random.default_rng(32)
    crops, texts = [], []
    for _ in range(600):
        shown = _pattern(rng, str(rng.choice(["LLDDD", "DDDLL", "XXXXX", "LLLDDD", "DDDLLL", "XXXXXX"])))
        crop, text = _framed_with_room_on_the_right(rng, shown)
        crops.append(crop)
        texts.append(text)
    probs = slot_probs(ocr, crops)
    before = [argmax_text(ocr, p).text for p in probs]
    after = [t.text for t in ocr.read(crops)]

    def doubled(read: str, truth: str) -> bool:
        return len(read) == len(truth) + 1 and read[:-1] == truth and read[-1] == truth[-1]

    def real_double_right(reads: list[str]) -> int:
        return sum(r == t and t[-1] == t[-2] for r, t in zip(reads, texts))

    counts = {name: (sum(doubled(r, t) for r, t in zip(reads, texts)), sum(r == t for r, t in zip(reads, texts)))
              for name, reads in (("before", before), ("after", after))}
    print(f"600 loosely framed plates: last character doubled / read right: argmax {counts['before']}, "
          f"reader {counts['after']}; real end doubles read right {real_double_right(before)} -> "
          f"{real_double_right(after)} of {sum(t[-1] == t[-2] for t in texts)}")
    # Measured (reader 0.5.2 int8): argmax 17 doubled, 429 right; the reader 9 and 437, real end doubles
    # 21 and 22 of 28 right. The echoes left are slots sure of the repeated character, the pad under 0.1
    # there: a length the reader believes, which only a reader that counts characters can fix.
    assert counts["before"][0] >= 8, "the population no longer shows the failure: make it harder"
    assert counts["after"][0] <= counts["before"][0] * 2 // 3
    assert counts["after"][1] > counts["before"][1]
    assert real_double_right(after) >= real_double_right(before) - 1  # real doubles are not collapsed


# --- O or 0: the place's role in the layout -------------------------------------------------------


def test_presets_expand_into_layouts_and_other_regexes_are_left_to_the_checks():
    assert [len(la) for la in expand("[A-Z]{3}[0-9][A-Z][0-9]{2}")] == [7]
    de = expand(r"(?=.{3,9}$)[A-Z]{1,3}[A-Z]{1,2}[0-9]{1,4}[EH]?")
    assert de is not None and min(map(len, de)) == 3 and max(map(len, de)) == 9
    assert expand(r"B[0-9]{2,3}[A-Z]{3}")[0][0] == frozenset("B")
    assert expand("TAXI[0-9]{3}")[0][:4] == tuple(frozenset(c) for c in "TAXI")
    assert expand("(AB|CD)[0-9]{4}") is None and expand("[A-Z]+[0-9]") is None  # not bounded classes
    decoder = LayoutDecoder([("br", "[A-Z]{3}[0-9]{4}"), ("us", "[A-Z0-9]{2,8}")], frozenset({"us"}))
    assert [name for name, _ in decoder.layouts] == ["br"]  # generic formats bound, never fit


def test_a_layout_reads_the_look_alike_its_place_holds_when_the_reader_gave_it_belief():
    p = one_hot("ABC1234")
    p[3] = 0.0
    p[3, CHARS.index("I")], p[3, CHARS.index("1")], p[3, CHARS.index("7")] = 0.6, 0.3, 0.1  # I where a digit goes
    p[5] = 0.0
    p[5, CHARS.index("S")], p[5, CHARS.index("3")] = 0.8, 0.2
    br = FormatChecker(("br",))
    read = decode_slots(p, CHARS, "_")
    assert read.text == "ABCI2S4" and br.check(read.text, read.char_confidences) is None  # two swaps: beyond the fixer
    fitted = br.fitted(read)
    assert fitted.text == "ABC1234"
    # Each character as sure as among the characters its place allows.
    assert fitted.char_confidences[3] == pytest.approx(0.75, abs=1e-3)  # 0.3 of the 0.4 the digits had
    # A read the reader is sure of is never forced into a layout: 0.9 against 0.0011 is no fit.
    q = one_hot("ABCX234")
    assert br.fitted(decode_slots(q, CHARS, "_")).text == "ABCX234"
    # A read that fits an allowed format is left as it is, even where another format would fit better.
    both = FormatChecker(("br", "gb"))
    gb_read = decode_slots(one_hot("AB12CDE"), CHARS, "_")
    assert both.fitted(gb_read) is gb_read
    # Without slot probabilities (a vote over frames) there is nothing to fit.
    assert br.fitted(PlateText("ABCI2S4", 0.7, (0.9,) * 7)).text == "ABCI2S4"
    # Formats that may not change characters fit nothing either.
    assert FormatChecker(("br",), fix=False).fitted(read).text == "ABCI2S4"


def _ambiguous(rng: np.random.Generator, pattern: str) -> str:
    """A serial of `pattern` where half the letters are O and half the digits 0."""
    out = []
    for c in pattern:
        if c == "L":
            out.append("O" if rng.random() < 0.5 else "ABCDEFGHIJKLMNPQRSTUVWXYZ"[rng.integers(25)])
        elif c == "D":
            out.append("0" if rng.random() < 0.5 else "123456789"[rng.integers(9)])
        else:
            out.append(c)
    return "".join(out)


def test_o_and_0_are_read_in_the_roles_the_plate_layout_gives_them(ocr):
    """The failure class: a letter O read in a place of digits or a 0 in a place of letters (the
    European misses of this kind; Brazil's old and Mercosur plates alike). 480 plates dense with O and
    0, read as a camera with its country's formats publishes them: before, look-alike fixing (one
    swap, the least sure character) or rejection; now fitting to the layouts from the slot probabilities."""
    rng = np.random.default_rng(31)
    cases: list[tuple[np.ndarray, str, tuple[str, ...]]] = []
    for _ in range(120):
        for make, presets in (
                (lambda: render_br_old(rng, _ambiguous(rng, "LLL-DDDD")), ("br",)),
                (lambda: render_br_mercosur(rng, _ambiguous(rng, "LLLDLDD")), ("br",)),
                (lambda: render_eu(rng, road=True, country="GB", shown=_ambiguous(rng, "LLDD LLL")), ("gb",)),
                (lambda: render_eu(rng, road=True, country="RO", shown=_ambiguous(rng, "B DD LLL")), ("ro",))):
            plate = make()
            cases.append((plate_crop(rng, plate), plate.text, presets))
    crops = [c for c, _, _ in cases]
    probs = slot_probs(ocr, crops)
    reads = ocr.read(crops)
    checkers = {p: FormatChecker(p) for p in {p for _, _, p in cases}}
    gained = lost = right_before = right_after = 0
    examples = []
    for p, reader_read, (_, text, presets) in zip(probs, reads, cases):
        chk = checkers[presets]
        plain = argmax_text(ocr, p)
        old = chk.check(plain.text, plain.char_confidences)
        read = chk.fitted(reader_read)
        new = chk.check(read.text, read.char_confidences)
        ok_old, ok_new = old is not None and old.text == text, new is not None and new.text == text
        right_before += ok_old
        right_after += ok_new
        gained += ok_new and not ok_old
        lost += ok_old and not ok_new
        if ok_new != ok_old:
            examples.append((text, plain.text, old.text if old else None, new.text if new else None))
    print(f"480 plates dense with O and 0: published right {right_before} -> {right_after} "
          f"({gained} gained, {lost} lost): {examples}")
    # Measured (reader 0.5.2 int8): 400 -> 404, 4 gained (three O/0 fitted to the layout, B2400O read
    # B24OOO; one end echo, B50TWLL), none lost.
    assert gained >= 3 and lost <= 1, examples


# --- the character beside the EU band -----------------------------------------------------------


def test_a_box_that_starts_at_the_eu_band_does_not_lose_the_character_beside_it():
    """The failure class: a European plate's first character lost beside the band (IF99STK read
    F99STK). 300 Romanian plates of Ilfov (IF, IL, IS: a thin I close beside the band), 50 to 110 px
    wide on a car, boxed as a detector that takes the band for no part of the plate boxes them: the
    left edge from the I's left edge to 4 % of the plate's width right of it. crop_plate's padding
    still shows the I; the second look's tighter boxes cut it and outvote the read that has it.
    Before: the boxes as detected; now: grown to the band's outer edge (alprd/recognition/band.py).
    Night and infrared frames show no blue: those plates are read as before (most of the losses left)."""
    now = Recognizer.from_config(ModelsConfig(dir=str(REPO / "models")))
    before = Recognizer(now.detector, now.ocr, now.min_confidence, now.min_chars, now.reread_below,
                        band_framing=False)
    rng = np.random.default_rng(33)
    scenes, texts = [], []
    for _ in range(300):
        plate = render_eu(rng, road=True, country="RO", shown="I" + _pattern(rng, "L DD LLL"), band_gap=0.015)
        scenes.append(framed_from_band(rng, plate, rng.uniform(0.0, 0.04), int(rng.integers(50, 110))))
        texts.append(plate.text)
    reads = {name: [rec.read_boxes(frame, [box])[0].text for frame, box in scenes]
             for name, rec in (("before", before), ("now", now))}
    lost = {name: sum(r == t[1:] for r, t in zip(rs, texts)) for name, rs in reads.items()}
    right = {name: sum(r == t for r, t in zip(rs, texts)) for name, rs in reads.items()}
    print(f"300 plates boxed from beside the band: first character lost / read right: before "
          f"{lost['before']} / {right['before']}, now {lost['now']} / {right['now']}")
    # Measured (reader 0.5.2 int8): before 20 lost, 205 right; now 7 and 224 (seeds 34, 35: 28 -> 6 and
    # 24 -> 4 lost, 206 -> 229 and 217 -> 234 right).
    assert lost["before"] >= 12, "the population no longer shows the failure: make it harder"
    assert lost["now"] <= lost["before"] // 2
    assert right["now"] >= right["before"] + lost["before"] // 2
