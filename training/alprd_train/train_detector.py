"""Train the plate detector on real scenes from ../shared/data plus synthetic plates composited on them."""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from multiprocessing import Pool
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from alprd.datasets import SceneSample, detection_splits
from alprd.errors import UserError
from alprd.recognition.preprocess import decode_centers, iou, letterbox
from alprd_train import camera_styles
from alprd_train.common import (
    MovingAverage,
    RunRecord,
    add_ema_argument,
    export_onnx,
    exported_weights,
    keep_checkpoints,
    load_checkpoint,
    load_image,
    one_cycle,
    resume_run,
    save_checkpoint,
    take_step,
    warm_start,
)
from alprd_train.hold_out import HoldOut, add_hold_out_argument, data_sources, same_hold_out
from alprd_train.nets import PlateDetectorExport, PlateDetectorNet
from alprd_train.scene_mining import mine

STRIDE = PlateDetectorNet.stride
MAX_SIDE = 960


def _render_face(seed: int) -> np.ndarray:
    """A degraded synthetic plate face of the usual layout mix."""
    from alprd.synth.plates import degrade, render_plate

    rng = np.random.default_rng(seed)
    return degrade(rng, render_plate(rng).image, strength=0.6)


def load_scene(s: SceneSample) -> tuple[np.ndarray, np.ndarray]:
    img = load_image(s.image)
    boxes = np.array([[b.x1, b.y1, b.x2, b.y2] for b in s.boxes], np.float32).reshape(-1, 4)
    f = MAX_SIDE / max(img.shape[:2])
    if f < 1:
        img = cv2.resize(img, None, fx=f, fy=f, interpolation=cv2.INTER_AREA)
        boxes *= f
    return img, boxes


def paste_plate(rng: np.random.Generator, canvas: np.ndarray, face: np.ndarray) -> np.ndarray | None:
    """Composite a plate face in perspective at a random place and size; returns its box."""
    H, W = canvas.shape[:2]
    fh, fw = face.shape[:2]
    # Down to 9 px: a 40 px plate in a 1080p frame is ~13 px at the default input width of 640.
    width = float(np.exp(rng.uniform(np.log(9), np.log(min(180, W * 0.5)))))
    height = width * fh / fw
    x0, y0 = rng.uniform(0, W - width), rng.uniform(0, H - height)
    from alprd.synth.plates import perspective_quad

    quad = perspective_quad(rng, width, height, amount=0.08) + np.array([x0, y0], np.float32)
    src = np.array([[0, 0], [fw, 0], [fw, fh], [0, fh]], np.float32)
    M = cv2.getPerspectiveTransform(src, quad)
    warped = cv2.warpPerspective(face, M, (W, H), flags=cv2.INTER_AREA)
    mask = cv2.warpPerspective(np.full((fh, fw), 255, np.uint8), M, (W, H))
    m = (mask.astype(np.float32) / 255.0)[..., None]
    canvas[:] = (canvas * (1 - m) + warped * m).astype(np.uint8)
    x1, y1 = quad.min(0)
    x2, y2 = quad.max(0)
    return np.array([max(0, x1), max(0, y1), min(W, x2), min(H, y2)], np.float32)


# A hard negative: (scene index, box, the tilt its scene was mined under or None).
Negative = tuple[int, Sequence[float], np.ndarray | None]

FAR_PLATE_PX = (8.0, 22.0)  # at the 640-px input: 25-65 px wide in a 1920-px frame


def sample(rng: np.random.Generator, scenes, faces, size: int, composite_p: float,
           negatives: Sequence[Negative] = (), hard_p: float = 0.0, far_p: float = 0.0,
           styles_p: float = 0.0, style_parts: Sequence[str] = camera_styles.PARTS):
    """A training crop and its plate boxes. With `negatives` ((scene index, box, tilt or None),
    see scene_mining), a share `hard_p` of crops is centred on a place where the previous detector
    fired on no plate, in the scene tilted as it was mined. A share `far_p` of the other crops is
    centred on a labelled plate shrunk to FAR_PLATE_PX wide, the far plates the zoom range below
    reaches only now and then. A share `styles_p` of all crops gets a random camera style
    (camera_styles.augment: tilt, blur, noise, colour cast, JPEG; `style_parts` of them), boxes
    moved with the tilt."""
    hard = None
    k = -1
    if negatives and rng.random() < hard_p:
        i, hard, tilt = negatives[rng.integers(len(negatives))]
        img, boxes = scenes[i]
        if tilt is not None:
            h, w = img.shape[:2]
            img = camera_styles.tilted(img, tilt)
            boxes = np.array(camera_styles.warp_boxes(tilt, boxes, w, h), np.float32).reshape(-1, 4)
    else:
        img, boxes = scenes[rng.integers(len(scenes))]
    far = hard is None and len(boxes) > 0 and far_p > 0 and rng.random() < far_p
    if far:
        k = int(rng.integers(len(boxes)))
        s = float(np.exp(rng.uniform(*np.log(FAR_PLATE_PX)))) / max(2.0, float(boxes[k, 2] - boxes[k, 0]))
    else:
        # Zoom out to 0.15: the real scenes hold few far plates, and 0.1.0 (trained down to 0.45)
        # found almost none of the dev plates shrunk to 50 px at 1080p scale (`alprd eval --shrink-to 50`).
        s = float(np.exp(rng.uniform(np.log(0.15), np.log(1.6))))
    s = min(s, 2000 / max(img.shape[:2]))
    im = cv2.resize(img, None, fx=s, fy=s, interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
    bx = boxes * s
    h, w = im.shape[:2]
    # Crop centred on a plate most of the time so that each batch has positives.
    if hard is not None or k >= 0 or (len(bx) and rng.random() < 0.8):
        b = np.array(hard[:4], np.float32) * s if hard is not None else bx[k] if k >= 0 else bx[rng.integers(len(bx))]
        cx, cy = (b[0] + b[2]) / 2 + rng.uniform(-size / 3, size / 3), (b[1] + b[3]) / 2 + rng.uniform(-size / 3, size / 3)
    else:
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
    x0, y0 = int(cx - size / 2), int(cy - size / 2)
    canvas = np.full((size, size, 3), 114, np.uint8)
    sx0, sy0, sx1, sy1 = max(0, x0), max(0, y0), min(w, x0 + size), min(h, y0 + size)
    if sx1 > sx0 and sy1 > sy0:
        canvas[sy0 - y0:sy1 - y0, sx0 - x0:sx1 - x0] = im[sy0:sy1, sx0:sx1]
    bx = bx - np.array([x0, y0, x0, y0], np.float32)
    out = []
    for b in bx:
        c = np.clip(b, 0, size)
        # Keep a plate cut by the crop only if most of it is still inside.
        if (c[2] - c[0]) * (c[3] - c[1]) >= 0.6 * (b[2] - b[0]) * (b[3] - b[1]) and c[2] - c[0] >= 4:
            out.append(c)
    if rng.random() < composite_p:
        for _ in range(int(rng.integers(1, 3))):
            box = paste_plate(rng, canvas, faces[rng.integers(len(faces))])
            if box is not None:
                out.append(box)
    if styles_p > 0 and rng.random() < styles_p:
        canvas, out = camera_styles.augment(rng, canvas, out, style_parts)
    if rng.random() < 0.5:
        canvas = canvas[:, ::-1].copy()
        out = [np.array([size - b[2], b[1], size - b[0], b[3]], np.float32) for b in out]
    canvas = np.clip(canvas.astype(np.float32) * rng.uniform(0.6, 1.35) + rng.uniform(-40, 40), 0, 255).astype(np.uint8)
    return canvas, out


def targets(boxes, size: int):
    g = size // STRIDE
    heat = np.zeros((g, g), np.float32)
    wh = np.zeros((2, g, g), np.float32)
    off = np.zeros((2, g, g), np.float32)
    mask = np.zeros((g, g), np.float32)
    ys, xs = np.mgrid[0:g, 0:g]
    for b in boxes:
        bw, bh = b[2] - b[0], b[3] - b[1]
        if bw < 2 or bh < 2:
            continue
        cx, cy = (b[0] + b[2]) / 2 / STRIDE, (b[1] + b[3]) / 2 / STRIDE
        ix, iy = min(g - 1, int(cx)), min(g - 1, int(cy))
        sx, sy = max(0.6, bw / STRIDE / 6), max(0.6, bh / STRIDE / 6)
        gauss = np.exp(-((xs - ix) ** 2 / (2 * sx * sx) + (ys - iy) ** 2 / (2 * sy * sy)))
        heat = np.maximum(heat, gauss)
        wh[:, iy, ix] = np.log([bw, bh])
        off[:, iy, ix] = [cx - ix, cy - iy]
        mask[iy, ix] = 1
    return heat, wh, off, mask


def focal_loss(logits: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    p = torch.sigmoid(logits).clamp(1e-4, 1 - 1e-4)
    pos = gt.eq(1).float()
    neg = 1 - pos
    pos_loss = torch.log(p) * (1 - p) ** 2 * pos
    neg_loss = torch.log(1 - p) * p ** 2 * (1 - gt) ** 4 * neg
    n = pos.sum().clamp(min=1)
    return -(pos_loss.sum() + neg_loss.sum()) / n


def shrunk_each(scenes, plate_px: float, frame_width: int | None = None):
    """Each scene with a plate seen from further away (see alprd.evaluate.shrink_scene), made as it
    is read: (image, boxes as float32 [N, 4])."""
    from alprd.datasets import BoxLabel
    from alprd.evaluate import shrink_scene

    for img, boxes in scenes:
        if len(boxes):
            im, moved = shrink_scene(img, [BoxLabel(*map(float, b)) for b in boxes], plate_px, frame_width)
            yield im, np.array([[b.x1, b.y1, b.x2, b.y2] for b in moved], np.float32)


def shrunk(scenes, plate_px: float):
    """Dev scenes seen from further away, for training's far-plate recall: in frames of the photo's
    own size, the harder simulation that training has always been monitored with, so runs stay
    comparable with earlier ones."""
    return list(shrunk_each(scenes, plate_px))


def evaluate(net: PlateDetectorNet, scenes, input_w: int, threshold: float = 0.3) -> dict[str, float]:
    net.eval()
    found = total = fps = small_found = small_total = 0
    with torch.no_grad():
        for img, boxes in scenes:
            h, w = img.shape[:2]
            in_h = int(np.ceil(input_w * h / w / 32) * 32)
            blob, scale, px, py = letterbox(img, input_w, in_h)
            heat, size, off = PlateDetectorExport(net)(torch.from_numpy(blob))
            dets = decode_centers(heat[0, 0].numpy(), size[0].numpy(), off[0].numpy(), STRIDE, threshold)
            dets = [((d[0] - px) / scale, (d[1] - py) / scale, (d[2] - px) / scale, (d[3] - py) / scale) for d in dets]
            matched = set()
            for b in boxes:
                hit = any(iou(b, d) > 0.3 for d in dets)
                found += hit
                total += 1
                if (b[2] - b[0]) * 1920 / w < 60 * 1:  # under 60 px wide at 1080p scale
                    small_total += 1
                    small_found += hit
                matched |= {i for i, d in enumerate(dets) if iou(b, d) > 0.3}
            fps += len(dets) - len(matched)
    net.train()
    return {"recall": found / max(total, 1), "fp_per_image": fps / max(len(scenes), 1),
            "recall_small": small_found / max(small_total, 1), "boxes": total, "small_boxes": small_total}


def training_scenes(data: Path, hold: HoldOut, limit: int = 0,
                    rec: RunRecord | None = None) -> tuple[dict[str, list[SceneSample]], list[SceneSample]]:
    """detection_splits less the held-out sources (at most `limit` training scenes), and those sources'
    scenes, train and dev parts together; the counts go to `rec`."""
    splits = detection_splits(data)
    held: list[SceneSample] = []
    for k in ("train", "dev"):
        splits[k], out = hold.split(k, splits[k])
        held += out
    if limit:
        splits["train"] = splits["train"][:limit]
    if rec is not None:
        rec.set("data", {k: len(v) for k, v in splits.items()})
        if hold.split_name:
            rec.set("hold_out", hold.record() | {"evaluated": len(held)})
            print(f"held out ({hold.split_name}): {hold.record()['dropped']}", flush=True)
    return splits, held


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="alprd train detector")
    ap.add_argument("--data", type=Path, default=Path("../shared/data"))
    ap.add_argument("--out", type=Path, default=Path("runs/detector"))
    ap.add_argument("--steps", type=int, default=6000)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--size", type=int, default=320, help="square training crop")
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--faces", type=int, default=1500, help="synthetic plate faces for compositing")
    ap.add_argument("--composite", type=float, default=0.5, help="share of crops given synthetic plates")
    ap.add_argument("--input-width", type=int, default=640, help="inference width used for dev eval")
    ap.add_argument("--eval-limit", type=int, default=200)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--eval-every", type=int, default=1000)
    ap.add_argument("--export", type=Path, default=None)
    ap.add_argument("--limit", type=int, default=0, help="use at most this many train scenes (smoke runs)")
    ap.add_argument("--init-onnx", type=Path, help="start a new run from this detector's ONNX weights")
    ap.add_argument("--teacher-detector", type=Path,
                    help="teacher detector ONNX (training only): its confident boxes the labels lack become plates")
    ap.add_argument("--teacher-keep", type=float, default=0.5, help="teacher score that makes an unlabelled box a plate")
    ap.add_argument("--hard-negatives", type=Path, metavar="ONNX",
                    help="detector ONNX whose detections on no plate become hard negatives (e.g. the shipped one)")
    ap.add_argument("--tilted-negatives", type=Path, metavar="ONNX",
                    help="detector ONNX also run on each training scene tilted once (a camera_styles tilt): "
                         "its detections on no plate become hard negatives, cut from the tilted scene")
    ap.add_argument("--hard-p", type=float, default=0.2, help="share of crops centred on a hard negative")
    ap.add_argument("--far-share", type=float, default=0.0, metavar="P",
                    help=f"share of the other crops centred on a labelled plate shrunk to {FAR_PLATE_PX[0]:g}-"
                         f"{FAR_PLATE_PX[1]:g} px wide (a far plate at the 640-px input)")
    ap.add_argument("--styles", type=float, default=0.0, metavar="P",
                    help="share of crops given a random camera style: tilt, blur, noise, colour cast, JPEG "
                         "(alprd_train.camera_styles; issue 32)")
    ap.add_argument("--style-parts", default=",".join(camera_styles.PARTS), metavar="PARTS",
                    help=f"with --styles: the parts a style draws from, comma-separated ({','.join(camera_styles.PARTS)})")
    add_ema_argument(ap)
    add_hold_out_argument(ap)
    args = ap.parse_args(argv)
    if not 0.0 <= args.far_share <= 1.0:
        raise UserError(f"--far-share {args.far_share}: give a share, 0..1")
    if not 0.0 <= args.styles <= 1.0:
        raise UserError(f"--styles {args.styles}: give a share, 0..1")
    args.style_parts = [p.strip() for p in args.style_parts.split(",") if p.strip()]
    if not args.style_parts or set(args.style_parts) - set(camera_styles.PARTS):
        raise UserError(f"--style-parts {','.join(args.style_parts)}: give some of {','.join(camera_styles.PARTS)}")
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    same_hold_out(args.out, args.hold_out)
    rec = RunRecord(args.out, "detector", {k: str(v) for k, v in vars(args).items()})
    splits, held_scenes = training_scenes(args.data, HoldOut(args.hold_out, data_sources(args.data)
                                                             if args.hold_out else set()), args.limit, rec)
    t0 = time.time()
    train = [load_scene(s) for s in splits["train"]]
    negatives: list[Negative] = []
    if args.teacher_detector or args.hard_negatives or args.tilted_negatives:
        t1 = time.time()
        mined = mine(train, [str(x.image) for x in splits["train"]], args.teacher_detector, args.hard_negatives,
                     args.out / "mined.json", args.teacher_keep, args.tilted_negatives)
        train = [(img, np.concatenate([boxes, np.array([b[:4] for b in m.extra], np.float32).reshape(-1, 4)]))
                 for (img, boxes), m in zip(train, mined)]
        negatives = [(i, b, None) for i, m in enumerate(mined) for b in m.negatives]
        tilted = [(i, b, m.tilt) for i, m in enumerate(mined) for b in m.tilted_negatives]
        negatives += tilted
        rec.set("mined", {"teacher_boxes_added": sum(len(m.extra) for m in mined),
                          "scenes_with_added_boxes": sum(bool(m.extra) for m in mined),
                          "hard_negatives": len(negatives), "of_them_tilted": len(tilted),
                          "scenes_with_negatives": len({n[0] for n in negatives})})
        print(f"mined in {time.time() - t1:.0f}s: {rec.data['mined']}", flush=True)
    dev_rng = np.random.default_rng(0)
    dev_idx = dev_rng.permutation(len(splits["dev"]))[: args.eval_limit]
    dev = [load_scene(splits["dev"][i]) for i in sorted(dev_idx)]
    far = shrunk(dev, 50)
    # The held-out sources' scenes, evaluated apart: the recall the checkpoint is also selected on.
    held = [load_scene(s) for s in held_scenes[: args.eval_limit]]
    with Pool(args.workers) as pool:
        faces = pool.map(_render_face, range(2_000_000, 2_000_000 + args.faces), chunksize=32)
    print(f"loaded {len(train)} train, {len(dev)} dev scenes, {len(faces)} faces in {time.time() - t0:.0f}s", flush=True)

    net = PlateDetectorNet()
    opt = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=5e-4)
    sched = one_cycle(opt, args.lr, args.steps, 0.05)
    ck = load_checkpoint(args.out / "last.pt")
    step, best, sched = resume_run(ck, net, opt, sched, args.steps)
    if not ck and args.init_onnx:
        calib = [sample(np.random.default_rng(i), train, faces, args.size, args.composite)[0] for i in range(16)]
        warm_start(net, args.init_onnx, torch.from_numpy(np.stack(calib).transpose(0, 3, 1, 2).astype(np.float32)))
        rec.set("init_onnx", {"path": str(args.init_onnx)})
        print(f"warm start from {args.init_onnx}", flush=True)
    ema = MovingAverage(net, args.ema, ck)  # ema.kept: what is evaluated, kept and exported
    rng = np.random.default_rng(step + 7)
    net.train()
    t0 = time.time()
    while step < args.steps:
        imgs, hs, whs, offs, masks = [], [], [], [], []
        for _ in range(args.batch):
            im, bx = sample(rng, train, faces, args.size, args.composite, negatives, args.hard_p, args.far_share,
                            args.styles, args.style_parts)
            h, wh, off, m = targets(bx, args.size)
            imgs.append(im.transpose(2, 0, 1))
            hs.append(h)
            whs.append(wh)
            offs.append(off)
            masks.append(m)
        x = torch.from_numpy(np.stack(imgs).astype(np.float32))
        gt = torch.from_numpy(np.stack(hs))[:, None]
        wh_t, off_t = torch.from_numpy(np.stack(whs)), torch.from_numpy(np.stack(offs))
        m = torch.from_numpy(np.stack(masks))[:, None]
        heat, size, off = net(x)
        n = m.sum().clamp(min=1)
        loss_h = focal_loss(heat, gt)
        loss_s = (F.l1_loss(size, wh_t, reduction="none") * m).sum() / n
        loss_o = (F.l1_loss(torch.sigmoid(off), off_t, reduction="none") * m).sum() / n
        loss = loss_h + 0.5 * loss_s + loss_o
        take_step(loss, net, opt, sched, ema, clip=10.0)
        step += 1
        if step % 50 == 0:
            print(f"step {step} loss {loss.item():.3f} (heat {loss_h.item():.3f} size {loss_s.item():.3f} "
                  f"off {loss_o.item():.3f}) {(time.time() - t0) / 50:.2f}s/step", flush=True)
            t0 = time.time()
        if step % args.eval_every == 0 or step == args.steps:
            metrics = evaluate(ema.kept, dev, args.input_width)
            metrics["recall_far50"] = evaluate(ema.kept, far, args.input_width)["recall"]
            if held:
                metrics["held_out"] = evaluate(ema.kept, held, args.input_width)
            rec.add_eval(step, metrics | ema.record())
            print(f"eval step {step}: {metrics}", flush=True)
            recall = (metrics["recall"] + metrics["held_out"]["recall"]) / 2 if held else metrics["recall"]
            score = recall + 0.5 * metrics["recall_far50"] - 0.05 * metrics["fp_per_image"]
            best = keep_checkpoints(args.out, score, best, step, metrics, net, opt, sched, ema)
            # Every evaluated checkpoint is kept (1.6 MB each): a full dev evaluation may prefer
            # another trade of recall against false positives than the score above.
            save_checkpoint(args.out / f"step{step}.pt", model=ema.kept.state_dict(), step=step, metrics=metrics)
    if args.export:
        export_detector(args.out / "best.pt", args.export)
        rec.set("exported", str(args.export))
    return 0


def export_detector(checkpoint: Path, path: Path) -> None:
    net = PlateDetectorNet()
    net.load_state_dict(exported_weights(torch.load(checkpoint, map_location="cpu", weights_only=False)))
    export_onnx(PlateDetectorExport(net), torch.zeros(1, 3, 384, 640), path, "image",
                ["heatmap", "size", "offset"],
                {"image": {2: "height", 3: "width"}, "heatmap": {2: "h4", 3: "w4"},
                 "size": {2: "h4", 3: "w4"}, "offset": {2: "h4", 3: "w4"}})


if __name__ == "__main__":
    raise SystemExit(main())
