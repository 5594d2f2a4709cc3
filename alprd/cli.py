"""The `alprd` command."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from alprd import __version__
from alprd.errors import UserError

if TYPE_CHECKING:
    from alprd.config import Config

log = logging.getLogger("alprd")


def _setup_logging(level: str = "INFO", fmt: str = "text") -> None:
    if fmt == "json":  # journald and log shippers: one object a line (alprd/ops/jsonlog.py)
        from alprd.ops.jsonlog import JsonFormatter

        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonFormatter())
        logging.basicConfig(level=getattr(logging, level), handlers=[handler])
        return
    logging.basicConfig(level=getattr(logging, level), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def cmd_run(args: argparse.Namespace) -> int:
    from alprd.config import load_config
    from alprd.daemon import Daemon

    cfg = load_config(args.config)
    _setup_logging(cfg.logging.level, args.log_format or cfg.logging.format)
    daemon = Daemon(cfg)

    def on_signal(signum: int, _frame: object) -> None:
        log.info("received %s", signal.Signals(signum).name)
        daemon.shutdown.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGHUP, lambda _s, _f: daemon.request_reload())
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
    from alprd.recognition.rank import rank_score
    from alprd.recognition.recognizer import Recognizer, Timings
    from alprd.sources.sources import IMAGE_EXTS
    from alprd.sources.still import ImageRefused, load_still

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
        try:
            img = load_still(p)  # the header's pixel count is checked before decoding
        except ImageRefused as e:
            print(f"alprd: error: {e}", file=sys.stderr)
            failures += 1
            continue
        t1 = time.perf_counter()
        tm = Timings()
        reads = rec.recognize(img, tm)
        total = (time.perf_counter() - t0) * 1000
        print(json.dumps({
            "image": str(p),
            "plates": [{"text": r.text, "confidence": round(r.confidence, 4), "box": list(r.box),
                        "char_confidences": list(r.char_confidences),
                        "detection_confidence": round(r.detection_confidence, 4),
                        "score": round(rank_score(r), 4)} for r in reads],  # sorted by score
            "ms": {"decode": round((t1 - t0) * 1000, 2), "detect": round(tm.detect_ms, 2),
                   "ocr": round(tm.ocr_ms, 2), "total": round(total, 2)},
        }), flush=True)
    return 1 if failures else 0


def cmd_check_config(args: argparse.Namespace) -> int:
    from alprd.config import load_config
    from alprd.recognition.manifest import default_models_dir, load_entry, load_optional_entry

    cfg = load_config(args.file)
    from alprd.privacy.policy import enforce

    enforced = enforce(cfg)
    models_dir = Path(cfg.models.dir) if cfg.models.dir else default_models_dir()
    load_entry(models_dir, cfg.models.detector, "detector")
    load_entry(models_dir, cfg.models.ocr, "ocr")
    if cfg.models.verifier:
        load_optional_entry(models_dir, cfg.models.verifier, "verifier")
    hotlists = _check_hotlists(cfg)
    _check_sources(cfg)
    print(f"{args.file}: OK (unit {cfg.unit_id}, {len(cfg.cameras)} camera(s), broker "
          f"{cfg.mqtt.host}:{cfg.mqtt.port}{' TLS' if cfg.mqtt.tls else ''}); "
          f"policy {enforced.source}, {len(enforced.destinations)} destination(s)"
          + "".join(f"; hotlist {h}" for h in hotlists))
    return 0


def _check_sources(cfg: Config) -> None:
    """A video file or image folder that is not there is a config error here, though the daemon
    would start and keep retrying: a typo in a path is what check-config is run to catch."""
    for i, cam in enumerate(cfg.cameras):
        if not cam.enabled or not cam.is_path_source():
            continue
        where = f"{cfg.source_file}: cameras[{i}] (camera {cam.id!r}) source {cam.source}"
        p = Path(cam.source)
        if cam.kind == "images" and not p.is_dir():
            raise UserError(f"{where}: {'not a folder' if p.exists() else 'no such folder'} (kind images reads a "
                            "folder of images)")
        if cam.kind == "file" and not p.is_file():
            raise UserError(f"{where}: {'not a file' if p.exists() else 'no such file'} (kind file reads a video file)")
        if not p.exists():
            raise UserError(f"{where}: no such file or folder (a video file or a folder of images)")


def _check_hotlists(cfg: Config) -> list[str]:
    """Load every hotlist as the daemon would: a file it could not use is an error, bad rows are
    named (file:line, never the row) and counted."""
    from alprd.hotlist.hotlist import HotlistError, read_hotlist

    paths = {cfg.hotlist.path: "hotlist.path"} if cfg.hotlist.path else {}
    for i, cam in enumerate(cfg.cameras):
        if cam.hotlist and cam.hotlist.path:
            paths.setdefault(cam.hotlist.path, f"cameras[{i}].hotlist.path")
    said = []
    for path, key in paths.items():
        try:
            loaded = read_hotlist(path)
        except HotlistError as e:
            raise UserError(f"{key}: {e}") from None
        for problem in loaded.problems:
            print(f"alprd: warning: {problem}; row skipped", file=sys.stderr)
        if loaded.skipped > len(loaded.problems):
            print(f"alprd: warning: {loaded.skipped - len(loaded.problems)} more bad rows in {path} skipped",
                  file=sys.stderr)
        said.append(f"{path}: {len(loaded.entries)} entries, {loaded.skipped} bad row(s) skipped")
    return said


def cmd_audit(args: argparse.Namespace) -> int:
    from alprd.privacy.audit import verify
    from alprd.privacy.keys import audit_key, load_or_create_secret

    key = None
    if args.key_file:
        if not Path(args.key_file).is_file():
            raise UserError(f"--key-file: {args.key_file}: no such file")
        key = audit_key(load_or_create_secret(args.key_file))
    checkpoints = []
    for cp in args.checkpoint or []:
        try:
            text = Path(cp).read_text()
            # A file saved from `mosquitto_sub -t <prefix>/<unit>/audit`: one checkpoint per line.
            checkpoints += [json.loads(ln) for ln in text.splitlines() if ln.strip()]
        except (OSError, ValueError) as e:
            raise UserError(f"--checkpoint: {cp}: not a readable file of JSON checkpoints ({e})") from None
    verdict = verify(args.file, key, checkpoints)
    print(f"{args.file}: {verdict.message}")
    return 0 if verdict.ok else 1


def _time_arg(value: str | None, flag: str) -> int | None:
    if value is None:
        return None
    import datetime

    try:
        dt = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise UserError(f"{flag}: {value!r} is not a date/time; use ISO 8601, e.g. 2026-11-21T08:00:00Z") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=datetime.timezone.utc)
    return int(dt.timestamp() * 1000)


def cmd_export(args: argparse.Namespace) -> int:
    from alprd.config import load_config
    from alprd.privacy.export import Query, export
    from alprd.privacy.policy import enforce

    cfg = load_config(args.config)
    q = Query(purpose=args.purpose, case=args.case, user=args.user, plate=args.plate or "",
              since_ms=_time_arg(args.since, "--since"), until_ms=_time_arg(args.until, "--until"), fmt=args.format)
    text, n = export(cfg, enforce(cfg), q, args.output or "")
    if args.output:
        fd = os.open(args.output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # plate data: owner only
        with os.fdopen(fd, "w") as f:
            f.write(text)
    else:
        sys.stdout.write(text)
    print(f"alprd: exported {n} row(s); recorded in the audit log", file=sys.stderr)
    return 0


def cmd_train(args: argparse.Namespace, rest: list[str]) -> int:
    # The trainers are the sibling distribution alprd-train (training/), so that a unit's install
    # carries no torch; imported only here.
    try:
        if args.what == "ocr":
            from alprd_train.train_ocr import main as train_main
        elif args.what == "verifier":
            from alprd_train.train_verifier import main as train_main
        else:
            from alprd_train.train_detector import main as train_main
    except ModuleNotFoundError as e:
        if (e.name or "").split(".")[0] not in ("alprd_train", "torch", "onnx", "PIL"):
            raise
        raise UserError(f"alprd train needs alprd-train and torch ({e.name} is not installed): "
                        "pip install -e training (from the repository's root; it installs torch==2.13.0)") from None
    return train_main(rest)


def cmd_eval(args: argparse.Namespace) -> int:
    from alprd.evaluate import run_eval

    if args.shrink_to is not None and not 8 <= args.shrink_to <= 400:
        raise UserError(f"--shrink-to {args.shrink_to}: give a plate width in px at 1920 px scale, 8..400")
    if not 0 <= args.margin <= 0.5:
        raise UserError(f"--margin {args.margin}: give a share of the crop's width, 0..0.5")
    formats = None
    if args.formats is not None:
        from alprd.config import FormatsConfig

        formats = FormatsConfig(presets=tuple(p.strip() for p in args.formats.split(",") if p.strip()))
    return run_eval(Path(args.dataset), _models_config(args), args.json, args.split, args.shrink_to, args.margin,
                    Path(args.relabel) if args.relabel else None, formats)


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


def cmd_bench(args: argparse.Namespace) -> int:
    from alprd.bench.report import write_outputs
    from alprd.bench.runner import run_bench
    from alprd.config import load_config

    cfg = load_config(args.config) if args.config else None
    video = Path(args.video)
    out = Path(args.out) if args.out else Path(f"bench-{video.stem}")
    if out.exists() and not out.is_dir():
        raise UserError(f"--out: {out} exists and is not a folder")
    if args.workers is not None and not 1 <= args.workers <= 64:
        raise UserError(f"--workers: {args.workers} must be between 1 and 64")
    bar = _ProgressBar(sys.stderr)
    res = run_bench(video, cfg, camera=args.camera, realtime=args.realtime, progress=bar, workers=args.workers)
    bar.done()
    paths = write_outputs(res, out, annotate=args.annotate)
    print(f"{res.frames} frames in {res.wall_s:.1f} s: {res.throughput_fps:.1f} frames/s "
          f"({res.throughput_fps / res.fps:.2f}x real time), {len(res.reads)} reads; detector ran on "
          f"{res.gate.get('analysed', 0)} frames")
    for kind, p in paths.items():
        print(f"  {kind:<8} {p}")
    return 0


class _ProgressBar:
    """A plain-text progress bar on stderr: redrawn in place on a terminal, a line every 10 % otherwise."""

    def __init__(self, stream) -> None:
        self.stream = stream
        self.tty = stream.isatty()
        self._last_decile = -1

    def __call__(self, done: int, total: int, fps: float, reads: int) -> None:
        frac = done / total if total else 0.0
        filled = int(frac * 30)
        line = f"[{'#' * filled}{'.' * (30 - filled)}] {100 * frac:5.1f}% {done}/{total or '?'} frames {fps:6.1f} fps {reads} reads"
        if self.tty:
            self.stream.write("\r" + line)
            self.stream.flush()
        elif int(frac * 10) != self._last_decile:
            self._last_decile = int(frac * 10)
            self.stream.write(line + "\n")
            self.stream.flush()

    def done(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="alprd", description="camera-side licence plate recognition daemon")
    ap.add_argument("--version", action="version", version=f"alprd {__version__}")
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("run", help="run the daemon")
    p.add_argument("-c", "--config", required=True)
    p.add_argument("--until-sources-end", action="store_true",
                   help="exit once every recorded source is finished (bench runs and demos)")
    p.add_argument("--log-format", choices=("text", "json"), default=None,
                   help="json: one JSON object per log line, for journald and log shippers "
                        "(default: the config's logging.format, text)")
    p = sub.add_parser("read", help="read plates on still images, one JSON line per image")
    p.add_argument("paths", nargs="+")
    p.add_argument("-c", "--config")
    p.add_argument("--models", help="models folder (default: the shipped models)")
    p.add_argument("--min-confidence", type=float, default=None,
                   help="list reads down to this confidence (default: models.min_read_confidence; 0 lists every plate found)")
    p = sub.add_parser("check-config", help="validate a config file")
    p.add_argument("file")
    p = sub.add_parser("audit", help="check the audit log's hash chain, HMACs and checkpoints")
    asub = p.add_subparsers(dest="audit_cmd", required=True)
    v = asub.add_parser("verify", help="say OK or name the first broken entry")
    v.add_argument("file")
    v.add_argument("--key-file", help="the unit key: also check each entry's HMAC and the checkpoints' signatures")
    v.add_argument("--checkpoint", action="append",
                   help="file of checkpoints from <prefix>/<unit>/audit (JSON per line): catches truncation")
    p = sub.add_parser("export", help="read local data out (audited: purpose, case and user are recorded first)")
    p.add_argument("-c", "--config", required=True)
    p.add_argument("--purpose", required=True)
    p.add_argument("--case", required=True)
    p.add_argument("--user", required=True)
    p.add_argument("--plate")
    p.add_argument("--since", help="ISO 8601 (UTC unless it has an offset)")
    p.add_argument("--until")
    p.add_argument("--format", choices=["jsonl", "csv"], default="jsonl")
    p.add_argument("-o", "--output", help="write here instead of stdout")
    p = sub.add_parser("train", help="train a model (needs alprd-train: pip install -e training)", add_help=False)
    p.add_argument("what", choices=["ocr", "detector", "verifier"])
    p = sub.add_parser("eval", help="detection and end-to-end accuracy on a labelled dataset")
    p.add_argument("dataset", help="OpenALPR benchmark folder or a detection CSV")
    p.add_argument("-c", "--config")
    p.add_argument("--models")
    p.add_argument("--json", help="write the metrics here as JSON")
    p.add_argument("--split", default="all", metavar="{all,train,dev,cross-source,holdout:SOURCE}",
                   help="for ../shared/data CSVs: the project's fixed held-out plates (dev) or the rest (train); "
                        "cross-source: the whole sources held out for models trained without them (a US state, "
                        "a Brazilian camera, a Romanian ride; see alprd.datasets); holdout:SOURCE: one source "
                        "or dataset, e.g. holdout:us_plate_crops/ca")
    p.add_argument("--formats", metavar="PRESETS",
                   help="read as a camera with these plate formats publishes (comma-separated presets, e.g. "
                        "br or gb,eu): reads fitted to their layouts, fixed, or rejected")
    p.add_argument("--shrink-to", type=float, default=None, metavar="PX",
                   help="scenes: shrink each so its widest plate is PX wide at 1920 px scale, in a 1920 px wide "
                        "frame as a 1080p camera would see it (far plates)")
    p.add_argument("--margin", type=float, default=0.0, metavar="SHARE",
                   help="crops: add this share of each crop's width left and right (twice it above and "
                        "below), as a loose detector box frames a plate; tight crop sets flatter a reader")
    p.add_argument("--relabel", metavar="CSV",
                   help="crops: image,dataset_text,text rows read by eye that replace the set's own labels "
                        "(the split stays the set's own)")
    p = sub.add_parser("synth", help="render a synthetic traffic video with known plates",
                       description="Render a synthetic traffic video: vehicles with rendered plates drive "
                                   "through a road scene. Prints the ground truth as one JSON line: each "
                                   "vehicle's plate, layout and first and last frame.")
    p.add_argument("out", help="the video file to write (MP4), e.g. demo/pole.mp4; its folder is made")
    p.add_argument("--vehicles", type=int, default=6, help="vehicles that drive through (default: %(default)s)")
    p.add_argument("--seconds", type=float, default=12.0, help="length of the video in seconds (default: %(default)s)")
    p.add_argument("--width", type=int, default=1280, help="frame width in pixels (default: %(default)s)")
    p.add_argument("--height", type=int, default=720, help="frame height in pixels (default: %(default)s)")
    p.add_argument("--fps", type=float, default=15.0, help="frames per second (default: %(default)s)")
    p.add_argument("--seed", type=int, default=1,
                   help="random seed: the same seed renders the same plates and traffic (default: %(default)s)")
    p = sub.add_parser("bench", help="run the unit's pipeline on a recorded video and write a report")
    p.add_argument("video")
    p.add_argument("-c", "--config", help="unit config: models, the camera's ROI and motion settings, gps/location")
    p.add_argument("--camera", help="which camera of the config to take settings from (default: the first)")
    p.add_argument("--out", help="output folder (default: bench-<video name>)")
    p.add_argument("--realtime", action="store_true", help="feed frames at the video's own pace, as a camera would")
    p.add_argument("--annotate", action="store_true", help="also write annotated.mp4 with the reads drawn in")
    p.add_argument("--workers", type=int, default=None, help="recognition threads (default: the config's workers, or 2)")
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
        if args.cmd == "audit":
            return cmd_audit(args)
        if args.cmd == "export":
            _setup_logging("WARNING")
            return cmd_export(args)
        if args.cmd == "bench":
            _setup_logging("WARNING")
            return cmd_bench(args)
    except UserError as e:
        print(f"alprd: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        return 130
    return 2


if __name__ == "__main__":
    sys.exit(main())
