"""`alprd train` on a unit's install, where the training distribution (training/, alprd-train) is absent."""

from __future__ import annotations

import subprocess
import sys

import pytest

# The unit's install without alprd-train: its import fails as it would there.
WITHOUT_TRAINING = "import sys; sys.modules['alprd_train'] = None; from alprd.cli import main; sys.exit(main(sys.argv[1:]))"


@pytest.mark.parametrize("what", ["ocr", "detector", "verifier"])
def test_train_without_the_training_package_says_how_to_install_it_in_one_line(what):
    r = subprocess.run([sys.executable, "-c", WITHOUT_TRAINING, "train", what, "--steps", "1"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2, r.stderr
    assert r.stderr.startswith("alprd: error: alprd train needs alprd-train") and "pip install -e training" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr


def test_the_runtime_package_imports_no_training_code():
    """The unit's wheel holds alprd only; nothing in it may import alprd_train or torch at load."""
    code = ("import sys, pkgutil, importlib, alprd\n"
            "for m in pkgutil.walk_packages(alprd.__path__, 'alprd.'):\n"
            "    if not m.name.endswith('__main__'):\n"
            "        importlib.import_module(m.name)\n"
            "bad = sorted(n for n in sys.modules if n.split('.')[0] in ('torch', 'alprd_train'))\n"
            "print(bad)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip() == "[]", r.stdout
