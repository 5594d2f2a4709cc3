"""Training and research for alprd's models: the trainers behind `alprd train ocr|detector|verifier`,
the int8 quantizer, the manifest tool and the reports the shipped versions were chosen with.

Torch lives here, never in the runtime package. The hand-read labels and the eval sets are plain
files of the checkout beside this package (training/labels, training/eval_sets), so alprd-train is
installed from the checkout: `pip install -e training`.
"""

from __future__ import annotations

from pathlib import Path

__version__ = "0.1.0"

TRAINING_DIR = Path(__file__).resolve().parents[1]
LABELS = TRAINING_DIR / "labels"  # plates read by eye for the reader's training (--read-by-eye)
EVAL_SETS = TRAINING_DIR / "eval_sets"  # dev plates read by eye and dev labels corrected by eye (alprd eval)
