"""The model speed benchmark: what it times and on how many threads."""

from __future__ import annotations

import cv2
import pytest

from alprd.benchmarks.models import main


@pytest.fixture
def opencv_threads():
    before = cv2.getNumThreads()
    yield
    cv2.setNumThreads(before)


def test_one_core_holds_for_opencv_too(capsys, opencv_threads):
    # "One core" is the speed target's unit; OpenCV's resize would otherwise use every core and make
    # the detector's frame time look shorter than one core gives.
    cv2.setNumThreads(4)
    assert main(["--repeat", "1", "--widths", "640"]) == 0
    out = capsys.readouterr().out
    assert cv2.getNumThreads() == 1
    assert out.startswith("1 thread(s) for ONNX Runtime (intra_op_threads) and OpenCV")
    lines = out.splitlines()
    assert any(line.startswith("detector  input  640x384") for line in lines)
    assert any(line.startswith("ocr       batch 8") for line in lines)
    assert any(line.startswith("verifier  4 boxes") for line in lines)


@pytest.mark.parametrize("argv, named", [(["--widths", "650"], "--widths 650"), (["--threads", "0"], "--threads 0")])
def test_bad_options_get_one_line_naming_them(capsys, opencv_threads, argv, named):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert named in err[-1] and "Traceback" not in "".join(err)
