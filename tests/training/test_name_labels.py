"""Text-less crops labelled from their file names (`images/br/<n>_<TEXT>.jpg`) where the teacher's
unsure read agrees with the name as a Brazilian plate (issue 32: use every real labelled plate)."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")  # the trainers are alprd-train's: pip install -e training
pytest.importorskip("alprd_train")

from alprd.datasets import ocr_splits  # noqa: E402
from alprd_train.name_labels import fit_layout, name_text, reconcile  # noqa: E402
from alprd_train.shift_pad import shift_pad  # noqa: E402
from alprd_train.train_ocr import label_blank_crops  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
DATA = REPO.parent / "shared" / "data"
TEACHER = REPO.parent / "shared" / "teachers" / "cct_xs_v2_global.onnx"


@pytest.mark.parametrize("name, read, label", [
    ("G5W0517", "GSW0517", "GSW0517"),   # 5 in a letter place is S
    ("0PQQ492", "OPQ0492", "OPQ0492"),   # 0 in a letter place is O, Q in a digit place 0
    ("00E702L", "OOE7021", "OOE7021"),   # L in a digit place is 1
    ("0LT0367", "OLT03G7", "OLT0367"),   # the teacher's look-alike is mended by the place too
    ("8RA2E19", "BRA2E19", "BRA2E19"),   # Mercosur LLLDLDD
    ("ABC1I23", "ABC1123", "ABC1123"),   # both layouts fit both: the read as it stands decides
    ("ABC1123", "ABC1I23", "ABC1I23"),
])
def test_a_name_and_a_read_that_agree_as_a_brazilian_plate_give_the_label(name, read, label):
    assert reconcile(name, read) == label


@pytest.mark.parametrize("name, read", [
    ("0ME3244", "DME3244"),   # O and D are both letters: they disagree
    ("QPE803B", "OPE8038"),   # Q and O are both Brazilian letters
    ("0RA5003", "ORA5103"),   # a digit differs
    ("0PN25331", "OPN2533"),  # eight characters are no Brazilian plate
    ("HJF7D85", "HJF7185"),   # D in a digit place stands for nothing
    ("ABCDEFG", "ABCDEFG"),   # letters in the digit places: no Brazilian plate even where both agree
])
def test_a_name_and_a_read_that_disagree_give_no_label(name, read):
    assert reconcile(name, read) is None


def test_the_layouts_put_letters_and_digits_in_their_places():
    assert fit_layout("0B0B0B0", "LLLDDDD") == "OBO8080"
    assert fit_layout("0B0B0B0", "LLLDLDD") == "OBO8O80"
    assert name_text(Path("images/br/10_G5W0517.jpg")) == "G5W0517"
    assert name_text(Path("images/br/0100f648-460d-4810-ab91-40051e272f8e.jpg")) is None


def test_shift_pad_keeps_the_whole_plate_somewhere_in_a_crop_of_its_size():
    plate = np.zeros((72, 144, 3), np.uint8)
    plate[10:62, 10:134] = (0, 0, 255)  # a red plate on black: no fill (greys) is red
    rng = np.random.default_rng(0)
    spans = []
    for _ in range(40):
        out = shift_pad(rng, plate)
        assert out.shape == plate.shape
        cols = np.where((out[36, :, 2] > 200) & (out[36, :, 0] < 50))[0]
        spans.append((cols.min(), cols.max()))
        assert 0.6 * 124 <= cols.max() - cols.min() + 1 <= 124 + 2  # shrunk to 65-100 %, never cut
    starts = [a for a, _ in spans]
    assert max(starts) - min(starts) > 20  # placed at many offsets, not centred


@pytest.mark.skipif(not (DATA.exists() and TEACHER.exists()), reason="../shared/data or the teacher is not beside the checkout")
def test_named_crops_the_teacher_is_unsure_of_are_labelled_when_the_name_agrees(tmp_path):
    """Real crops, the real teacher: 8_0WX5426 (read OWX5426 at 0.89), 37_0LT0367 (OLT03G7 at 0.87) and
    10_G5W0517 (GSW0517 at 0.82) are taken, 10_0ME3244 (read DME3244) is not, and 4_0QM9890 (read OQM9890
    at 0.77, agreeing) is not either once OQM9890 is a dev crop's text."""
    br = DATA / "openalpr_train_detector" / "images" / "br"
    data = tmp_path / "data"
    folder = data / "openalpr_train_detector" / "images" / "br"
    folder.mkdir(parents=True)
    names = ["8_0WX5426.jpg", "37_0LT0367.jpg", "10_0ME3244.jpg", "10_G5W0517.jpg", "4_0QM9890.jpg",
             "0100f648-460d-4810-ab91-40051e272f8e.jpg"]
    for n in names:
        shutil.copy(br / n, folder / n)
    no_text = data / "openalpr_train_detector" / "crops_no_text.csv"
    no_text.write_text("image,text\n" + "".join(f"images/br/{n},\n" for n in names))
    counts: dict[str, int] = {}
    got = {c.image.name: c.text for c in label_blank_crops(data, no_text, {}, TEACHER, 0.9,
                                                           reconcile_min_conf=0.5, counts=counts)}
    assert {n: got.get(n) for n in names[:4]} == {"8_0WX5426.jpg": "OWX5426", "37_0LT0367.jpg": "OLT0367",
                                                  "10_0ME3244.jpg": None, "10_G5W0517.jpg": "GSW0517"}
    assert got.get("4_0QM9890.jpg") == "OQM9890"  # no dev crop reads OQM9890 yet
    without = {c.image.name for c in label_blank_crops(data, no_text, {}, TEACHER, 0.9)}
    assert not without & {"8_0WX5426.jpg", "37_0LT0367.jpg", "10_G5W0517.jpg", "4_0QM9890.jpg"}

    # A crop set of that car, whose text the dev split holds out: its plate must not be learned.
    ocr = data / "openalpr_train_detector" / "ocr.csv"
    with open(ocr, "w", newline="") as f:
        csv.writer(f).writerows([["image", "text"], ["images/br/4_0QM9890.jpg", "OQM9890"]])
    assert [s.text for s in ocr_splits(data)["br_dev"]] == ["OQM9890"]
    counts = {}
    got = {c.image.name: c.text for c in label_blank_crops(data, no_text, {}, TEACHER, 0.9,
                                                           reconcile_min_conf=0.5, counts=counts)}
    assert "4_0QM9890.jpg" not in got
    assert counts == {"named": 5, "named_read_by_eye": 0, "named_teacher_sure": 0, "named_reconciled": 3,
                      "named_disagree": 1, "named_dev_text": 1}
