"""Train the plate verifier: `alprd train verifier --detector models/plate_detector.onnx ...`.

The detector's false positives are lettering that is no plate (dealer badges, model names, shop
signs, photo watermarks); three rounds of hard negatives in its own training stopped removing them.
The verifier is a second, separate opinion on the boxes the detector is unsure of, from the box's
own pixels (`verifier_input`). It learns from what the detector does on the training scenes:

- plates: every labelled box and every plate the teacher detector finds that nobody boxed
  (scene_mining), framed with the detector's box errors, and the detector's own boxes on them;
  a share shrunk to 10-40 px wide, as far plates are, so that the verifier does not learn that a
  plate is something sharp;
- synthetic plates (`alprd/synth`, every layout) composited into the training scenes, as the
  detector is trained on them: the plate styles the real scenes lack, and the plates of the synthetic
  traffic video the tests and the README's demo run on;
- not plates: the detector's boxes that neither the labels nor the teacher explain (the same
  mining as the detector's hard negatives), and random places of the scenes away from any plate.

A tenth of the training scenes (`held_out`: by a hash of the scene's group, so a Romanian video stays
on one side) is held out to pick the checkpoint and report how many plates and negatives a threshold
keeps; `python -m alprd_train.verifier_threshold` picks the threshold there. The dev scenes are
never seen.
"""

from __future__ import annotations

import argparse
import json
import time
from multiprocessing import Pool
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from alprd.datasets import detection_splits, is_held_out, scene_group
from alprd.errors import UserError
from alprd.recognition.preprocess import VERIFIER_SIZE, iou, verifier_input, verifier_window
from alprd_train.common import (
    MovingAverage,
    RunRecord,
    add_ema_argument,
    export_onnx,
    keep_checkpoints,
    load_checkpoint,
    one_cycle,
    resume_run,
    take_step,
)
from alprd_train.nets import PlateVerifierExport, PlateVerifierNet
from alprd_train.scene_mining import mine, mine_scene
from alprd_train.train_detector import _render_face, load_scene, paste_plate

FAR_PX = (10.0, 40.0)  # plate widths a far plate is shrunk to, in the verifier's 96-px window
BOX_ERROR = (0.07, 0.08)  # the detector's box edges wander by this share of the plate's w, h (one sd)
REPORT_THRESHOLDS = (0.1, 0.3, 0.5)

Sample = tuple[int, tuple[float, float, float, float]]  # scene index, box


HELD_OUT = 0.1  # of the training scenes' groups, to pick the checkpoint and the threshold
HELD_OUT_SALT = "alprd-verifier-v1"


def held_out(image: Path, data_root: Path) -> bool:
    """A tenth of the training scenes by scene_group: whole Romanian videos (of the two training
    videos, the night one falls there), so no held-out frame has a near duplicate in training."""
    return is_held_out(scene_group(image, data_root), HELD_OUT, HELD_OUT_SALT)


class VerifierData:
    """Plates and not-plates of the training scenes, and the augmented batches drawn from them."""

    def __init__(self, scenes: list[tuple[np.ndarray, np.ndarray]], mined: list[dict], keep: float):
        self.scenes = scenes
        self.faces: list[np.ndarray] = []  # synthetic plate faces, composited into scenes as plates
        self.plates: list[Sample] = []  # labelled and teacher-found plates
        self.on_plates: list[Sample] = []  # the detector's boxes on those plates
        self.negatives: list[Sample] = []  # the detector's boxes on no plate
        for i, ((_, labels), rec) in enumerate(zip(scenes, mined)):
            m = mine_scene(labels, [tuple(b) for b in rec["teacher"]], [tuple(b) for b in rec["student"]], keep)
            plates = [tuple(map(float, b)) for b in labels] + [tuple(t[:4]) for t in m.extra]
            self.plates += [(i, p) for p in plates]
            self.on_plates += [(i, tuple(s[:4])) for s in rec["student"] if any(iou(s[:4], p) > 0.3 for p in plates)]
            self.negatives += [(i, tuple(n[:4])) for n in m.negatives]

    def subset(self, keep: np.ndarray) -> VerifierData:
        out = object.__new__(VerifierData)
        out.scenes, out.faces = self.scenes, self.faces
        out.plates, out.on_plates, out.negatives = ([s for s in lst if keep[s[0]]]
                                                    for lst in (self.plates, self.on_plates, self.negatives))
        return out

    def counts(self) -> dict[str, int]:
        return {"plates": len(self.plates), "detector_boxes_on_plates": len(self.on_plates),
                "detector_boxes_on_no_plate": len(self.negatives)}

    def crop(self, s: Sample) -> np.ndarray:
        return _crop(self.scenes[s[0]][0], s[1])

    def batch(self, rng: np.random.Generator, n: int, far_p: float,
              synthetic_p: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
        xs, ys = [], []
        for j in range(n):
            positive = j < n // 2
            if positive and self.faces and rng.random() < synthetic_p:
                img, box = self._composite(rng)
                c = _crop(img, _jitter(rng, box, BOX_ERROR))
            else:
                if positive:
                    pool = self.on_plates if rng.random() < 0.3 else self.plates
                    i, box = pool[rng.integers(len(pool))]
                    box = _jitter(rng, box, BOX_ERROR)
                elif rng.random() < 0.7:
                    i, box = self.negatives[rng.integers(len(self.negatives))]
                    box = _jitter(rng, box, (0.05, 0.05))
                else:
                    i = int(rng.integers(len(self.scenes)))
                    box = _background_box(rng, *self.scenes[i])
                c = self.crop((i, box))
            if rng.random() < (far_p if positive else far_p / 2):
                c = _far(rng, c, box)
            xs.append(_photometric(rng, c).transpose(2, 0, 1))
            ys.append(float(positive))
        return torch.from_numpy(np.stack(xs)), torch.tensor(ys)

    def _composite(self, rng: np.random.Generator) -> tuple[np.ndarray, tuple[float, float, float, float]]:
        """A synthetic plate face pasted into a part of a training scene (a copy), and its box; at
        least 24 px wide, since _far makes far plates of some of them. A face drawn narrower stays in
        the part, a far plate beside the one returned."""
        img = self.scenes[int(rng.integers(len(self.scenes)))][0]
        H, W = img.shape[:2]
        w, h = min(W, 480), min(H, 320)
        x0, y0 = int(rng.integers(0, W - w + 1)), int(rng.integers(0, H - h + 1))
        part = img[y0:y0 + h, x0:x0 + w].copy()
        for _ in range(4):
            box = paste_plate(rng, part, self.faces[int(rng.integers(len(self.faces)))])
            if box is not None and box[2] - box[0] >= 24:
                break
        assert box is not None
        return part, tuple(map(float, box))


def _crop(img: np.ndarray, box) -> np.ndarray:
    """The verifier's view of `box` (verifier_input) as an HxWx3 uint8 image, for augmenting."""
    return verifier_input(img, [box])[0].transpose(1, 2, 0).astype(np.uint8)


def _jitter(rng: np.random.Generator, box, sd: tuple[float, float]) -> tuple[float, float, float, float]:
    x1, y1, x2, y2 = box[:4]
    bw, bh = x2 - x1, y2 - y1
    e = rng.normal(0, 1, 4) * [sd[0] * bw, sd[1] * bh, sd[0] * bw, sd[1] * bh]
    nx1, ny1 = x1 + e[0], y1 + e[1]
    return nx1, ny1, max(nx1 + 2, x2 + e[2]), max(ny1 + 2, y2 + e[3])


def _far(rng: np.random.Generator, crop: np.ndarray, box) -> np.ndarray:
    """The crop as it looks when its plate is 10-40 px wide: shrunk, then enlarged back."""
    wx1, _, wx2, _ = verifier_window(box)
    plate_px = (box[2] - box[0]) * VERIFIER_SIZE[0] / (wx2 - wx1)
    f = rng.uniform(*FAR_PX) / max(plate_px, 1.0)
    if f >= 1:
        return crop
    w, h = VERIFIER_SIZE
    small = cv2.resize(crop, (max(4, int(w * f)), max(2, int(h * f))), interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def _photometric(rng: np.random.Generator, crop: np.ndarray) -> np.ndarray:
    c = crop.astype(np.float32) * rng.uniform(0.6, 1.4) + rng.uniform(-30, 30)
    if rng.random() < 0.3:
        c = cv2.GaussianBlur(c, (0, 0), rng.uniform(0.5, 1.5))
    if rng.random() < 0.2:  # infrared cameras see in grey
        c = np.repeat(cv2.cvtColor(np.clip(c, 0, 255).astype(np.uint8), cv2.COLOR_BGR2GRAY)[..., None], 3, 2)
    return np.clip(c, 0, 255).astype(np.float32)


def _background_box(rng: np.random.Generator, img: np.ndarray, labels: np.ndarray) -> tuple[float, ...]:
    H, W = img.shape[:2]
    box: tuple[float, ...] = (0.0, 0.0, 20.0, 8.0)
    for _ in range(10):
        bw = rng.uniform(20, max(21, min(300, W / 2)))
        bh = bw / rng.uniform(2, 5)
        x1, y1 = rng.uniform(0, max(1, W - bw)), rng.uniform(0, max(1, H - bh))
        box = (x1, y1, x1 + bw, y1 + bh)
        if not any(iou(box, lb) > 0.05 for lb in labels):
            break
    return box


def evaluate(net: torch.nn.Module, data: VerifierData) -> dict[str, float]:
    """Shares of held-out plates, detector boxes on plates, and detector boxes on no plate that
    each threshold keeps."""
    net.eval()
    out: dict[str, float] = {}
    with torch.no_grad():
        for name, samples in (("plates", data.plates), ("on_plates", data.on_plates), ("negatives", data.negatives)):
            if not samples:
                continue
            x = np.concatenate([verifier_input(data.scenes[i][0], [b]) for i, b in samples])
            p = torch.sigmoid(net(torch.from_numpy(x))).numpy()
            for t in REPORT_THRESHOLDS:
                out[f"{name}_kept@{t:g}"] = round(float(np.mean(p >= t)), 4)
    net.train()
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="alprd train verifier")
    ap.add_argument("--data", type=Path, default=Path("../shared/data"))
    ap.add_argument("--out", type=Path, default=Path("runs/verifier"))
    ap.add_argument("--detector", type=Path, default=Path("models/plate_detector.onnx"),
                    help="the detector ONNX whose boxes the verifier learns to judge")
    ap.add_argument("--teacher-detector", type=Path,
                    help="teacher detector ONNX (training only): plates the labels lack are plates, not negatives")
    ap.add_argument("--teacher-keep", type=float, default=0.5, help="teacher score that makes an unlabelled box a plate")
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--far-p", type=float, default=0.35, help="share of plates shrunk to a far plate's size")
    ap.add_argument("--faces", type=int, default=600, help="synthetic plate faces to composite into scenes")
    ap.add_argument("--synthetic-p", type=float, default=0.25, help="share of plates that are synthetic faces")
    ap.add_argument("--workers", type=int, default=1, help="processes rendering the synthetic faces")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--eval-every", type=int, default=1000)
    ap.add_argument("--export", type=Path, default=None)
    ap.add_argument("--limit", type=int, default=0, help="use at most this many train scenes (smoke runs)")
    add_ema_argument(ap)
    args = ap.parse_args(argv)
    if not args.detector.is_file():
        raise UserError(f"--detector {args.detector}: no such ONNX file")
    if args.teacher_detector is not None and not args.teacher_detector.is_file():
        raise UserError(f"--teacher-detector {args.teacher_detector}: no such ONNX file")
    for name in ("far_p", "synthetic_p"):
        if not 0.0 <= getattr(args, name) <= 1.0:
            raise UserError(f"--{name.replace('_', '-')} {getattr(args, name)}: give a share of plates, 0..1")
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    rec = RunRecord(args.out, "verifier", {k: str(v) for k, v in vars(args).items()})
    train = detection_splits(args.data)["train"]
    if args.limit:  # spread over the set, so that a smoke run holds out scenes of both sources
        train = train[:: max(1, len(train) // args.limit)][: args.limit]
    keys = [str(s.image) for s in train]
    t0 = time.time()
    scenes = [load_scene(s) for s in train]
    mine(scenes, keys, args.teacher_detector, args.detector, args.out / "mined.json", args.teacher_keep)
    cache = json.loads((args.out / "mined.json").read_text())
    mined = [cache[k] for k in keys]
    data = VerifierData(scenes, mined, args.teacher_keep)
    if args.synthetic_p > 0 and args.faces > 0:
        with Pool(args.workers) as pool:
            data.faces = pool.map(_render_face, range(3_000_000, 3_000_000 + args.faces), chunksize=16)
    val = np.array([held_out(s.image, args.data) for s in train])
    fit, check = data.subset(~val), data.subset(val)
    if not fit.plates or not fit.negatives:
        raise UserError(f"--data {args.data}: the detector found no false positives or no plates in "
                        f"{len(train)} training scenes; nothing to learn from")
    if not check.plates:
        raise UserError(f"--data {args.data}: none of the {len(train)} training scenes' plates is held out "
                        "to pick the checkpoint with; use more scenes (--limit)")
    rec.set("data", {"scenes": len(train), "held_out_scenes": int(val.sum()),
                     "train": fit.counts(), "held_out": check.counts()})
    print(f"{len(train)} scenes mined in {time.time() - t0:.0f}s: train {fit.counts()}, held out {check.counts()}",
          flush=True)

    net = PlateVerifierNet()
    opt = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=1e-4)
    sched = one_cycle(opt, args.lr, args.steps, 0.1)
    ck = load_checkpoint(args.out / "last.pt")
    step, best, sched = resume_run(ck, net, opt, sched, args.steps)
    ema = MovingAverage(net, args.ema, ck)
    rng = np.random.default_rng(step + 11)
    net.train()
    t0 = time.time()
    while step < args.steps:
        x, y = fit.batch(rng, args.batch, args.far_p, args.synthetic_p)
        loss = F.binary_cross_entropy_with_logits(net(x), y)
        take_step(loss, net, opt, sched, ema)
        step += 1
        if step % 50 == 0:
            print(f"step {step} loss {loss.item():.3f} {(time.time() - t0) / 50:.3f}s/step", flush=True)
            t0 = time.time()
        if step % args.eval_every == 0 or step == args.steps:
            metrics = evaluate(ema.kept, check)
            rec.add_eval(step, metrics | ema.record())
            print(f"eval step {step}: {metrics}", flush=True)
            # Plates the detector found and the verifier keeps, less negatives it keeps, at 0.1.
            score = metrics.get("on_plates_kept@0.1", 0.0) - metrics.get("negatives_kept@0.1", 0.0)
            best = keep_checkpoints(args.out, score, best, step, metrics, net, opt, sched, ema)
    if args.export:
        export_verifier(args.out / "best.pt", args.export)
        rec.set("exported", str(args.export))
    return 0


def export_verifier(checkpoint: Path, path: Path) -> None:
    net = PlateVerifierNet()
    net.load_state_dict(torch.load(checkpoint, map_location="cpu", weights_only=False)["model"])
    w, h = VERIFIER_SIZE
    export_onnx(PlateVerifierExport(net), torch.zeros(1, 3, h, w), path, "image", ["plate"],
                {"image": {0: "n"}, "plate": {0: "n"}})


if __name__ == "__main__":
    raise SystemExit(main())
