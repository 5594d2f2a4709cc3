"""Quantize the reader to int8: `python -m alprd_train.quantize_ocr FLOAT.onnx INT8.onnx --data DIR`.

Static quantization (QDQ, per-channel int8 weights, uint8 activations) of the convolutions and
the attention's matrix products (7-bit weights on the convolution that reads the image, so that no
CPU's int8 kernels can overflow), calibrated on real training crops, never the dev crops. With
`--frame-with MODELS` half of them are framed as the daemon frames plates (that folder's
detector's box errors on training scenes, plus crop_plate's padding), since those are the crops
the unit reads. On one core the int8 reader runs in half the float one's time on a VNNI CPU
(0.7x on an AVX2-only one); the
float file stays in models/ because training warm-starts from its weights (`--init-onnx`)."""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

from alprd.datasets import detection_splits, ocr_splits
from alprd.errors import UserError
from alprd.recognition.preprocess import ocr_input
from alprd_train.train_ocr import FRAMING_SCENES, H, W, detector_framing, frame_like_daemon

QUANTIZED_FROM_KEY = "alprd.quantized_from_sha256"


def calibration_crops(data: Path, count: int, seed: int = 0, frame_with: Path | None = None) -> np.ndarray:
    """`count` training crops (US and Brazil), as the reader's input [N,1,64,128]; with `frame_with`
    (a models folder), the second half framed by its detector's measured box errors.

    Real crops only: calibrating on 300 synthetic crops as well read 5 fewer Brazilian dev crops and
    did not change the synthetic traffic video's reads. Framing half of them read more dev crops,
    tight and framed, than tight crops alone (reader 0.5.0: see the model card)."""
    splits = ocr_splits(data)
    pool = splits["us_train"] + splits["br_train"]
    if not pool:
        raise UserError(f"--data {data}: no labelled OCR crops there (expected us_plate_crops/ocr.csv "
                        "or openalpr_train_detector/ocr.csv)")
    rng = np.random.default_rng(seed)
    picked = [pool[i] for i in rng.permutation(len(pool))[:count]]
    images = [img for img in (cv2.imread(str(s.image)) for s in picked) if img is not None]
    if frame_with is not None:
        framing = detector_framing(frame_with, detection_splits(data)["train"][:FRAMING_SCENES])
        half = len(images) // 2
        images = images[:half] + [frame_like_daemon(rng, img, framing) for img in images[half:]]
    return ocr_input(images, H, W)


def quantize_reader(src: Path, dst: Path, calibration: np.ndarray) -> None:
    from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static
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
        import onnx

        # The convolution that reads the image gets 7-bit weights. On x86 CPUs without VNNI (AVX2
        # only) ONNX Runtime's int8 kernels add pairs of uint8 x int8 products in int16, which
        # overflows when two neighbouring pixels near 255 meet two weights near 127: with full
        # 8-bit weights on that one layer reader 0.5.0's int8 copy read 73 % of the Brazilian dev
        # crops on an AVX2 machine against 91 % on a VNNI one. 7 bits here are -64..64, and
        # 255 x 64 x 2 = 32,640 fits in int16, so these weights cannot overflow on any CPU. Every
        # other layer was tried at 8 bits alone (the rest at 7) and none moved the reads.
        overrides = {w: [{"axis": 0, "reduce_range": True}] for w in image_weights(onnx.load(str(pre)))}
        # Per-channel weight scales, the usual choice for convolutions; in one trial per-tensor
        # scales read the same number of dev crops (376 against 377 of 414), so either would do.
        # Leaving the classifier and the attention's activation products in float changed nothing
        # measured (dev crops, traffic video), so every product is quantized.
        # Activation ranges at the 99.99th percentile, not min/max: with min/max, which 600 crops
        # calibrated moved reader 0.5.0's int8 copy by up to 5 of 120 synthetic crops and a point on
        # dev, as a few extreme activations set the scale; clipped ranges kept it within one of float.
        quantize_static(str(pre), str(dst), Crops(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        op_types_to_quantize=["Conv", "MatMul", "Gemm"],
                        calibrate_method=CalibrationMethod.Percentile,
                        extra_options={"CalibPercentile": 99.99, "TensorQuantOverrides": overrides})
    # The float file's hash goes into the int8 file, so manifest_tool can refuse an int8 reader
    # left over from an earlier float one.
    from alprd.recognition.manifest import sha256_of

    model = onnx.load(str(dst))
    onnx.helper.set_model_props(model, {QUANTIZED_FROM_KEY: sha256_of(src)})
    onnx.save(model, str(dst))


def image_weights(model) -> list[str]:
    """The weights of the convolutions that read the image: the graph's input, or that input only
    scaled and shifted (the reader normalises its 0-255 pixels before its first convolution)."""
    image = {i.name for i in model.graph.input}
    weights = {i.name for i in model.graph.initializer}
    out = []
    for n in model.graph.node:  # ONNX lists nodes in topological order
        if n.op_type in ("Div", "Sub", "Mul", "Add", "Cast") and any(i in image for i in n.input):
            image.update(n.output)
        elif n.op_type == "Conv" and n.input[0] in image and n.input[1] in weights:
            out.append(n.input[1])
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m alprd_train.quantize_ocr")
    ap.add_argument("src", type=Path, help="the float reader ONNX (models/plate_ocr.onnx)")
    ap.add_argument("dst", type=Path, help="where the int8 reader goes (models/plate_ocr_int8.onnx)")
    ap.add_argument("--data", type=Path, default=Path("../shared/data"))
    ap.add_argument("--crops", type=int, default=600, help="training crops to calibrate on")
    ap.add_argument("--frame-with", type=Path, metavar="MODELS_DIR",
                    help="frame half the crops with this folder's detector's box errors (as the daemon would)")
    args = ap.parse_args(argv)
    try:
        if not args.src.is_file():
            raise UserError(f"{args.src}: no such ONNX file")
        if args.frame_with is not None and not (args.frame_with / "manifest.json").is_file():
            raise UserError(f"--frame-with {args.frame_with}: no manifest.json there (a models folder is needed)")
        quantize_reader(args.src, args.dst, calibration_crops(args.data, args.crops, frame_with=args.frame_with))
    except UserError as e:
        print(f"quantize_ocr: error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {args.dst}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
