"""Model speed on one CPU core: `python -m alprd.benchmarks.models [--models DIR]`.

Prints ms per 1920x1080 frame for the detector (at several input widths, pre- and post-processing
included), ms per box for the plate verifier, and ms per plate for the reader (alone and batched).
Figures, not pass/fail."""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import cv2
import numpy as np

from alprd.config import INPUT_WIDTH_RULE, ModelsConfig, is_input_width
from alprd.recognition.manifest import default_models_dir, load_entry, load_optional_entry
from alprd.recognition.onnx_models import (
    RECHECK_WINDOW,
    RECHECKS_PER_FRAME,
    OnnxPlateDetector,
    OnnxPlateOCR,
    OnnxPlateVerifier,
)
from alprd.synth.video import render_still


def _time(fn, repeat: int) -> tuple[float, float]:
    fn()  # warm-up: first runs allocate
    runs = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        runs.append((time.perf_counter() - t0) * 1000)
    return statistics.median(runs), float(np.percentile(runs, 95))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m alprd.benchmarks.models")
    ap.add_argument("--models", type=Path, default=None)
    ap.add_argument("--repeat", type=int, default=30)
    ap.add_argument("--threads", type=int, default=1,
                    help="threads for ONNX Runtime and for OpenCV's resizing (1: one core)")
    ap.add_argument("--widths", type=int, nargs="+", default=[480, 640, 800, 960],
                    help="detector input widths to time (models.detector_input_width)")
    args = ap.parse_args(argv)
    bad = [w for w in args.widths if not is_input_width(w)]
    if bad:
        ap.error(f"--widths {' '.join(map(str, bad))}: each must be {INPUT_WIDTH_RULE}")
    if args.threads < 1:
        ap.error(f"--threads {args.threads}: must be 1 or more")
    models = args.models or default_models_dir()
    # OpenCV parallelises a resize over every core unless told otherwise: shrinking a 1080p frame to
    # 800 px took 4.4 ms on two threads and 7.1 ms on one (a 2-core Xeon), so "one core" must hold
    # for it too.
    cv2.setNumThreads(args.threads)
    rng = np.random.default_rng(0)
    frame, _, box = render_still(rng, 1920, 1080)
    print(f"{args.threads} thread(s) for ONNX Runtime (intra_op_threads) and OpenCV; frame 1920x1080; "
          f"median / p95 of {args.repeat} runs")
    for width in args.widths:
        det = OnnxPlateDetector(load_entry(models, "plate_detector", "detector"), intra_op_threads=args.threads,
                                input_width=width)
        med, p95 = _time(lambda d=det: d.detect(frame), args.repeat)
        print(f"detector  input {width:4d}x{det.input_size(1920, 1080)[1]:<4d}  {med:7.2f} ms  p95 {p95:7.2f} ms")
    # The second look at an unsure box (models.detector_recheck_above): one window, at most
    # RECHECKS_PER_FRAME a frame, so a frame's worst case is the full pass plus that many of these.
    # Timed on a 60 px box on the rendered plate's centre, at the default input width's scale.
    ww, wh = RECHECK_WINDOW
    cx, cy = (box[0] + box[2]) // 2, (box[1] + box[3]) // 2
    far = (cx - 30, cy - 8, cx + 30, cy + 8)
    med, p95 = _time(lambda: det._look_again(frame, far, 640 / 1920), args.repeat)
    print(f"detector  second look {ww}x{wh}   {med:7.2f} ms  p95 {p95:7.2f} ms  (a 60 px plate; at most "
          f"{RECHECKS_PER_FRAME} a frame)")
    # The plate verifier (models.detector_verify_below) is shown the unsure boxes of a frame in one batch.
    verifier_entry = load_optional_entry(models, ModelsConfig.verifier, "verifier")
    if verifier_entry is not None:
        verifier = OnnxPlateVerifier(verifier_entry, intra_op_threads=args.threads)
        for n in (1, 4):
            med, p95 = _time(lambda k=n: verifier.plate_probability(frame, [box] * k), args.repeat)
            print(f"verifier  {n} box{'es' if n > 1 else '  '}            {med / n:7.2f} ms/box    p95 {p95 / n:7.2f} ms/box")
    entry = load_entry(models, "plate_ocr", "ocr")
    readers = [("ocr", entry)]
    original = entry.float_original()
    if original:  # the float reader it came from, timed in the same run for the ratio
        readers.append(("ocr float", original))
    crop = frame[box[1]:box[3], box[0]:box[2]]
    for label, e in readers:
        ocr = OnnxPlateOCR(e, intra_op_threads=args.threads)
        for batch in (1, 8):
            med, p95 = _time(lambda b=batch, r=ocr: r.read([crop] * b), args.repeat)
            print(f"{label:9s} batch {batch}            {med / batch:7.2f} ms/plate  p95 {p95 / batch:7.2f} ms/plate")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
