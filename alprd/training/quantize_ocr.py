"""Quantize the reader to int8: `python -m alprd.training.quantize_ocr FLOAT.onnx INT8.onnx --data DIR`.

Static quantization (QDQ, per-channel int8 weights, uint8 activations) of the convolutions and
the attention's matrix products, calibrated on real training crops, never the dev crops. On one
core the int8 reader runs in less than half the float one's time; the float file stays in
models/ because training warm-starts from its weights (`--init-onnx`)."""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

from alprd.datasets import ocr_splits
from alprd.errors import UserError
from alprd.recognition.preprocess import ocr_input

H, W = 64, 128
QUANTIZED_FROM_KEY = "alprd.quantized_from_sha256"


def calibration_crops(data: Path, count: int, seed: int = 0) -> np.ndarray:
    """`count` training crops (US and Brazil), as the reader's input [N,1,64,128].

    Real crops only: calibrating on 300 synthetic crops as well read 5 fewer Brazilian dev crops and
    did not change the synthetic traffic video's reads."""
    splits = ocr_splits(data)
    pool = splits["us_train"] + splits["br_train"]
    if not pool:
        raise UserError(f"--data {data}: no labelled OCR crops there (expected us_plate_crops/ocr.csv "
                        "or openalpr_train_detector/ocr.csv)")
    rng = np.random.default_rng(seed)
    picked = [pool[i] for i in rng.permutation(len(pool))[:count]]
    images = [img for img in (cv2.imread(str(s.image)) for s in picked) if img is not None]
    return ocr_input(images, H, W)


def quantize_reader(src: Path, dst: Path, calibration: np.ndarray) -> None:
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Crops(CalibrationDataReader):
        def __init__(self) -> None:
            self.it = iter({"image": calibration[i:i + 1]} for i in range(len(calibration)))

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.it, None)

    with tempfile.TemporaryDirectory() as tmp:
        pre = Path(tmp) / "pre.onnx"
        quant_pre_process(str(src), str(pre))
        dst.parent.mkdir(parents=True, exist_ok=True)
        # Per-channel weight scales, the usual choice for convolutions; in one trial per-tensor
        # scales read the same number of dev crops (376 against 377 of 414), so either would do.
        # Leaving the classifier and the attention's activation products in float changed nothing
        # measured (dev crops, traffic video), so every product is quantized.
        quantize_static(str(pre), str(dst), Crops(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        op_types_to_quantize=["Conv", "MatMul", "Gemm"])
    # The float file's hash goes into the int8 file, so manifest_tool can refuse an int8 reader
    # left over from an earlier float one.
    import onnx

    from alprd.recognition.manifest import sha256_of

    model = onnx.load(str(dst))
    onnx.helper.set_model_props(model, {QUANTIZED_FROM_KEY: sha256_of(src)})
    onnx.save(model, str(dst))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m alprd.training.quantize_ocr")
    ap.add_argument("src", type=Path, help="the float reader ONNX (models/plate_ocr.onnx)")
    ap.add_argument("dst", type=Path, help="where the int8 reader goes (models/plate_ocr_int8.onnx)")
    ap.add_argument("--data", type=Path, default=Path("../shared/data"))
    ap.add_argument("--crops", type=int, default=300, help="training crops to calibrate on")
    args = ap.parse_args(argv)
    try:
        if not args.src.is_file():
            raise UserError(f"{args.src}: no such ONNX file")
        quantize_reader(args.src, args.dst, calibration_crops(args.data, args.crops))
    except UserError as e:
        print(f"quantize_ocr: error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {args.dst}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
