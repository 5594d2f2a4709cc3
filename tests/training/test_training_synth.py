"""The reader's synthetic training bank (alprd-train) as the synthetic plate engine draws it."""

from __future__ import annotations

import re

import numpy as np
import pytest

pytest.importorskip("torch")  # the trainers are alprd-train's: pip install -e training
pytest.importorskip("alprd_train")


def test_the_training_bank_without_road_european_plates_is_rendered_as_before():
    """--eu-road 0 must draw the same plates as the banks of earlier runs (the two-field job)."""
    from alprd_train.train_ocr import _render_one

    for seed in (1_000_000, 1_000_001, 1_000_002):
        old, new = _render_one((seed, 0.25)), _render_one((seed, 0.25, 0.0))
        assert old[1] == new[1] and np.array_equal(old[0], new[0])
    texts = [_render_one((seed, 0.0, 1.0))[1] for seed in range(1_000_000, 1_000_040)]
    assert sum(bool(re.fullmatch(r"B[0-9]{2,3}[A-Z]{3}", t)) for t in texts) >= 5  # all road EU, a third Romanian
