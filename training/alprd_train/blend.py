"""Blend two ONNX files of one network in weight space:
`python -m alprd_train.blend WARM.onnx TUNED.onnx --alpha A --out OUT.onnx`.

Every float weight of OUT is (1 - A) * WARM + A * TUNED. A continuation of a shipped model gains
on what its new data stresses and forgets a little of what it read before; the models between the
two often keep most of both (Wortsman et al., "Robust fine-tuning of zero-shot models", 2022: the
weight-space ensemble). It costs nothing at run time: OUT has TUNED's graph and size.

The two files must be exports of one architecture: the same operators in the same order, each
weight the same shape. Weights are paired by the node and input they feed, not by name (the
exporter names some of them by a counter). Both hold batch norms folded into their convolutions, as
the trainers export them; the blend is linear in those folded weights."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from alprd.errors import UserError

PARTS = ("all", "convolutions", "rest")


def _weights_by_use(model) -> tuple[list[str], dict[tuple[int, int], str]]:
    inits = {i.name for i in model.graph.initializer}
    uses: dict[tuple[int, int], str] = {}
    for n, node in enumerate(model.graph.node):
        for k, name in enumerate(node.input):
            if name in inits:
                uses[(n, k)] = name
    return [node.op_type for node in model.graph.node], uses


def blend(warm_path: Path, tuned_path: Path, alpha: float, out: Path, part: str = "all") -> int:
    """Write the blend; return how many float weights it wrote (those `part` leaves out take the
    warm file's values). `part`: blend only the
    convolutions' weights (the reader's image features) or only the rest (its attention and head),
    the other part staying the warm file's."""
    import onnx
    from onnx import numpy_helper

    if not 0.0 <= alpha <= 1.0:
        raise UserError(f"--alpha {alpha}: must be between 0 (the warm file) and 1 (the tuned one)")
    models = []
    for path in (warm_path, tuned_path):
        try:
            models.append(onnx.load(str(path)))
        except Exception as e:  # noqa: BLE001 (onnx raises its own types, and protobuf's, for a bad file)
            raise UserError(f"{path}: not a readable ONNX file ({type(e).__name__})") from None
    warm, tuned = models
    if any(n.op_type in ("DequantizeLinear", "QuantizeLinear") for m in models for n in m.graph.node):
        raise UserError("blend the float files (an int8 file's weights are not floats); quantize the blend after")
    ops_w, uses_w = _weights_by_use(warm)
    ops_t, uses_t = _weights_by_use(tuned)
    if ops_w != ops_t or uses_w.keys() != uses_t.keys():
        raise UserError(f"{warm_path} and {tuned_path}: not exports of one network "
                        f"({len(ops_w)} and {len(ops_t)} operators)")
    warm_arrays = {i.name: numpy_helper.to_array(i) for i in warm.graph.initializer}
    by_name = {i.name: i for i in tuned.graph.initializer}
    written: set[str] = set()
    for use, t_name in uses_t.items():
        is_conv = ops_t[use[0]] == "Conv"
        share = alpha if part == "all" or (part == "convolutions") == is_conv else 0.0
        a, b = warm_arrays[uses_w[use]], numpy_helper.to_array(by_name[t_name])
        if a.shape != b.shape or a.dtype != b.dtype:
            raise UserError(f"{warm_path} and {tuned_path}: weight {t_name} is {a.shape} in one, {b.shape} in the other")
        if t_name in written:
            continue
        if np.issubdtype(b.dtype, np.floating):
            value = ((1.0 - share) * a.astype(np.float64) + share * b.astype(np.float64)).astype(b.dtype)
            by_name[t_name].CopyFrom(numpy_helper.from_array(value, t_name))
            written.add(t_name)
        elif not np.array_equal(a, b):
            raise UserError(f"{warm_path} and {tuned_path}: their constant {t_name} differs (not one network)")
    out.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(tuned, str(out))
    return len(written)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m alprd_train.blend", description=__doc__.split("\n\n")[0])
    ap.add_argument("warm", type=Path, help="the model the run started from (alpha 0)")
    ap.add_argument("tuned", type=Path, help="the run's export (alpha 1)")
    ap.add_argument("--alpha", type=float, required=True, help="weight of the tuned file, 0-1")
    ap.add_argument("--part", choices=PARTS, default="all",
                    help="blend only the convolutions or only the other weights (the rest stay the warm file's)")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    try:
        n = blend(args.warm, args.tuned, args.alpha, args.out, args.part)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    part = "" if args.part == "all" else f" ({args.part} only)"
    print(f"{args.out}: {n} weights, {1 - args.alpha:.2f} x {args.warm.name} + {args.alpha:.2f} x {args.tuned.name}{part}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
