"""The doubled-character count of `alprd_train.misread_report` (issue 32's slot-decoder artifact)."""

from __future__ import annotations

import pytest

pytest.importorskip("torch")  # the trainers are alprd-train's: pip install -e training
pytest.importorskip("alprd_train")

from alprd_train.misread_report import doubled  # noqa: E402


@pytest.mark.parametrize("read, label, kind", [
    ("LJK9200", "LJK920", "end"),
    ("GLF2888", "GLF288", "end"),      # a label's own double read once more is still at the end
    ("ABCC123", "ABC123", "middle"),
    ("AABC123", "ABC123", "middle"),   # the first character twice
    ("ABC123", "ABC123", None),        # right
    ("ABX123", "ABC123", None),        # a look-alike swap, not a double
    ("ABC1234", "ABC123", None),       # an invented character that repeats none
    ("ABC1223", "ABC123X", None),      # a length off by one that is no double
])
def test_a_misread_is_doubled_where_the_label_has_one_character_twice(read, label, kind):
    assert doubled(read, label) == kind
