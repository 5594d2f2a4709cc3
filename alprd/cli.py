"""The `alprd` command."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import signal
import sys
import time
from pathlib import Path

from alprd import __version__
from alprd.errors import UserError

log = logging.getLogger("alprd")


def _setup_logging(level: str = "INFO") -> None:
    logging.basicConfig(level=getattr(logging, level), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def cmd_run(args: argparse.Namespace) -> int:
    from alprd.config import load_config
    from alprd.daemon import Daemon

    cfg = load_config(args.config)
    _setup_logging(cfg.logging.level)
    daemon = Daemon(cfg)

    def on_signal(signum: int, _frame: object) -> None:
        log.info("received %s", signal.Signals(signum).name)
        daemon.shutdown.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    return daemon.run(until_sources_end=args.until_sources_end)


def _models_config(args: argparse.Namespace):
    from alprd.config import ModelsConfig, load_config

    models = load_config(args.config).models if args.config else ModelsConfig()
    if getattr(args, "models", None):
        models = dataclasses.replace(models, dir=str(args.models))
    if getattr(args, "min_confidence", None) is not None:
        if not 0.0 <= args.min_confidence <= 1.0:
            raise UserError(f"--min-confidence: {args.min_confidence} must be between 0 and 1")
        models = dataclasses.replace(models, min_read_confidence=args.min_confidence)
    return models


def cmd_read(args: argparse.Namespace) -> int:
    import cv2

    from alprd.recognition.recognizer import Recognizer, Timings
    from alprd.sources.sources import IMAGE_EXTS

    rec = Recognizer.from_config(_models_config(args))
    paths: list[Path] = []
    for p in map(Path, args.paths):
        if p.is_dir():
            paths.extend(sorted(q for q in p.iterdir() if q.suffix.lower() in IMAGE_EXTS))
        elif p.exists():
            paths.append(p)
        else:
            raise UserError(f"{p}: no such file or folder")
    failures = 0
    for p in paths:
        t0 = time.perf_counter()
        img = cv2.imread(str(p), cv2.IMREAD_COLOR)
        t1 = time.perf_counter()
        if img is None:
            print(f"alprd: error: {p}: not a readable image", file=sys.stderr)
            failures += 1
            continue
        tm = Timings()
        reads = rec.recognize(img, tm)
        total = (time.perf_counter() - t0) * 1000
        print(json.dumps({
            "image": str(p),
            "plates": [{"text": r.text, "confidence": round(r.confidence, 4), "box": list(r.box),
                        "char_confidences": list(r.char_confidences)} for r in reads],
            "ms": {"decode": round((t1 - t0) * 1000, 2), "detect": round(tm.detect_ms, 2),
                   "ocr": round(tm.ocr_ms, 2), "total": round(total, 2)},
        }), flush=True)
    return 1 if failures else 0


def cmd_check_config(args: argparse.Namespace) -> int:
    from alprd.config import load_config
    from alprd.recognition.manifest import default_models_dir, load_entry

    cfg = load_config(args.file)
    models_dir = Path(cfg.models.dir) if cfg.models.dir else default_models_dir()
    load_entry(models_dir, cfg.models.detector, "detector")
    load_entry(models_dir, cfg.models.ocr, "ocr")
    print(f"{args.file}: OK (unit {cfg.unit_id}, {len(cfg.cameras)} camera(s), broker "
          f"{cfg.mqtt.host}:{cfg.mqtt.port}{' TLS' if cfg.mqtt.tls else ''})")
    return 0


def cmd_train(args: argparse.Namespace, rest: list[str]) -> int:
    try:
        import torch  # noqa: F401
    except ImportError:
        raise UserError("training needs the train extra: pip install '.[train]'") from None
    if args.what == "ocr":
        from alprd.training.train_ocr import main as train_main
    else:
        from alprd.training.train_detector import main as train_main
    return train_main(rest)


def cmd_eval(args: argparse.Namespace) -> int:
    from alprd.evaluate import run_eval

    return run_eval(Path(args.dataset), _models_config(args), args.json, args.split)


def cmd_synth(args: argparse.Namespace) -> int:
    try:
        from alprd.synth.video import write_traffic_video
    except ImportError:
        raise UserError("the synthetic engine needs Pillow: pip install '.[synth]'") from None
    truth = write_traffic_video(Path(args.out), vehicles=args.vehicles, seconds=args.seconds,
                                width=args.width, height=args.height, fps=args.fps, seed=args.seed)
    vehicles = [{"plate": v.text, "layout": v.layout, "first_frame": v.start_frame, "last_frame": v.end_frame}
                for v in truth]
    print(json.dumps({"video": args.out, "vehicles": vehicles}))
    return 0


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="alprd", description="camera-side licence plate recognition daemon")
    ap.add_argument("--version", action="version", version=f"alprd {__version__}")
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("run", help="run the daemon")
    p.add_argument("-c", "--config", required=True)
    p.add_argument("--until-sources-end", action="store_true",
                   help="exit once every recorded source is finished (bench runs and demos)")
    p = sub.add_parser("read", help="read plates on still images, one JSON line per image")
    p.add_argument("paths", nargs="+")
    p.add_argument("-c", "--config")
    p.add_argument("--models", help="models folder (default: the shipped models)")
    p.add_argument("--min-confidence", type=float, default=None,
                   help="list reads down to this confidence (default: models.min_read_confidence; 0 lists every plate found)")
    p = sub.add_parser("check-config", help="validate a config file")
    p.add_argument("file")
    p = sub.add_parser("train", help="train a model (needs the train extra)", add_help=False)
    p.add_argument("what", choices=["ocr", "detector"])
    p = sub.add_parser("eval", help="detection and end-to-end accuracy on a labelled dataset")
    p.add_argument("dataset", help="OpenALPR benchmark folder or a detection CSV")
    p.add_argument("-c", "--config")
    p.add_argument("--models")
    p.add_argument("--json", help="write the metrics here as JSON")
    p.add_argument("--split", choices=["all", "train", "dev"], default="all",
                   help="for ../shared/data CSVs: the project's fixed held-out split (dev) or the rest")
    p = sub.add_parser("synth", help="render a synthetic traffic video with known plates")
    p.add_argument("out")
    p.add_argument("--vehicles", type=int, default=6)
    p.add_argument("--seconds", type=float, default=12.0)
    p.add_argument("--width", type=int, default=1280)
    p.add_argument("--height", type=int, default=720)
    p.add_argument("--fps", type=float, default=15.0)
    p.add_argument("--seed", type=int, default=1)
    return ap


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    if rest and args.cmd != "train":
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    try:
        if args.cmd == "run":
            return cmd_run(args)
        if args.cmd == "read":
            _setup_logging("WARNING")
            return cmd_read(args)
        if args.cmd == "check-config":
            return cmd_check_config(args)
        if args.cmd == "train":
            return cmd_train(args, rest)
        if args.cmd == "eval":
            _setup_logging("WARNING")
            return cmd_eval(args)
        if args.cmd == "synth":
            return cmd_synth(args)
    except UserError as e:
        print(f"alprd: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        return 130
    return 2


if __name__ == "__main__":
    sys.exit(main())
