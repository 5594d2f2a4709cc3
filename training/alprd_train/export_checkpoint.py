"""Export a training checkpoint to ONNX: `python -m alprd_train.export_checkpoint ocr|detector CK.pt OUT.onnx`.

The trainers' `--export` writes best.pt, the checkpoint their own dev score picked; a run's last.pt
holds its last moving average, the end of the run that `alprd_train.blend` mixes with the warm start."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from alprd.errors import UserError


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m alprd_train.export_checkpoint", description=__doc__.split("\n\n")[0])
    ap.add_argument("kind", choices=("ocr", "detector"))
    ap.add_argument("checkpoint", type=Path, help="a run's best.pt or last.pt")
    ap.add_argument("out", type=Path)
    args = ap.parse_args(argv)
    try:
        if not args.checkpoint.is_file():
            raise UserError(f"{args.checkpoint}: no such checkpoint (a run folder's best.pt or last.pt)")
        if args.kind == "ocr":
            from alprd_train.train_ocr import export_ocr as export
        else:
            from alprd_train.train_detector import export_detector as export
        try:
            export(args.checkpoint, args.out)
        except (KeyError, RuntimeError) as e:
            raise UserError(f"{args.checkpoint}: not a {args.kind} checkpoint ({type(e).__name__})") from None
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
