"""Train the plate reader: synthetic plates + real labelled crops + teacher pseudo-labels."""

from __future__ import annotations

import argparse
import csv
import time
from collections.abc import Callable
from multiprocessing import Pool
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn

from alprd.datasets import (
    CropSample,
    SceneSample,
    detection_splits,
    ocr_splits,
    read_ocr_csv,
    source_of,
)
from alprd.errors import UserError
from alprd.recognition.base import ALPHABET, MAX_PLATE_CHARS, PAD, is_plate_text
from alprd.recognition.preprocess import crop_plate, iou, ocr_input
from alprd_train import LABELS
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
    take_step,
    warm_start,
)
from alprd_train.hold_out import HoldOut, add_hold_out_argument, data_sources, same_hold_out
from alprd_train.name_labels import name_text, reconcile
from alprd_train.nets import PlateOcrAttnNet, PlateOcrExport, PlateOcrNet
from alprd_train.shift_pad import shift_pad

H, W, SLOTS = 64, 128, MAX_PLATE_CHARS
FRAMING_SCENES = 800  # training scenes a detector's box errors are measured on (--frame-with)
CHARS = ALPHABET + PAD


def encode(text: str) -> np.ndarray:
    text = text[:SLOTS]
    return np.array([CHARS.index(c) for c in text.ljust(SLOTS, PAD)], np.int64)


def decode(idx: np.ndarray) -> str:
    return "".join(CHARS[i] for i in idx if CHARS[i] != PAD)


# slots: the fixed-slot reader of readers 0.1.0-0.3.0, whose backbone reader 0.4.0 started from;
# attn: slots read out by attention, every shipped reader since 0.4.0.
HEADS = ("slots", "attn")


def make_net(head: str) -> nn.Module:
    if head == "attn":
        return PlateOcrAttnNet(SLOTS, len(CHARS), H, W)
    return PlateOcrNet(SLOTS, len(CHARS), H, W)


def onnx_head(onnx_path: Path) -> str:
    """Which head a shipped reader has: the attention reader's learned query tokens keep their name."""
    import onnx

    names = [i.name for i in onnx.load(str(onnx_path)).graph.initializer]
    return "attn" if any(n.endswith("queries") for n in names) else "slots"


def init_from_onnx(net: nn.Module, head: str, onnx_path: Path, calibration: torch.Tensor) -> bool:
    """Start from a shipped reader: all of it when it has this head, else its backbone (the two
    heads share one), the head starting new. True when the head is new."""
    donor_head = onnx_head(onnx_path)
    if donor_head == head:
        warm_start(net, onnx_path, calibration)
        return False
    donor = make_net(donor_head)
    warm_start(donor, onnx_path, calibration)
    net.features.load_state_dict(donor.features.state_dict())
    return True


def _render_one(job: tuple[int, float] | tuple[int, float, float]) -> tuple[np.ndarray, str]:
    from alprd.synth.plates import plate_crop, render_plate

    # (seed, us_varied) is the same job as (seed, us_varied, 0.0): eu_road 0 draws nothing from rng.
    seed, us_varied, eu_road = job if len(job) == 3 else (*job, 0.0)
    rng = np.random.default_rng(seed)
    layout = None
    if us_varied and rng.random() < us_varied:
        layout = "us_varied"
    elif eu_road and rng.random() < eu_road / max(1e-9, 1.0 - us_varied):
        layout = "eu_road"  # of the whole bank, not of what us_varied left
    p = render_plate(rng, layout)
    crop = plate_crop(rng, p, 256, 128)
    return ocr_input([crop], H, W)[0, 0].astype(np.uint8), p.text


def synthetic_bank(n: int, cache: Path, workers: int, us_varied: float = 0.0,
                   eu_road: float = 0.0) -> tuple[np.ndarray, list[str]]:
    """`n` synthetic crops rendered once per run folder; `us_varied` of them are the varied US plates
    and `eu_road` of them European plates with the road look."""
    if cache.exists():
        z = np.load(cache, allow_pickle=False)
        made_with = (float(z["us_varied"]) if "us_varied" in z else 0.0, float(z["eu_road"]) if "eu_road" in z else 0.0)
        if len(z["images"]) >= n and made_with == (us_varied, eu_road):
            return z["images"][:n], list(z["texts"][:n])
    with Pool(workers) as pool:
        items = pool.map(_render_one, [(s, us_varied, eu_road) for s in range(1_000_000, 1_000_000 + n)], chunksize=64)
    images = np.stack([i for i, _ in items])
    texts = [t for _, t in items]
    np.savez(cache, images=images, texts=np.array(texts), us_varied=np.float64(us_varied), eu_road=np.float64(eu_road))
    return images, texts


def detector_framing(models: Path, scenes: list[SceneSample], cache: Path | None = None) -> np.ndarray:
    """Where a detector's boxes fall around labelled plates: one row per plate it finds, the box's
    (x1, y1, x2, y2) in units of the labelled box, which spans (0, 0)-(1, 1). Measured once per run."""
    if cache is not None and cache.exists():
        return np.load(cache)
    from alprd.recognition.manifest import load_entry
    from alprd.recognition.onnx_models import OnnxPlateDetector

    det = OnnxPlateDetector(load_entry(models, "plate_detector", "detector"))
    rows = []
    for scene in scenes:
        found = det.detect(load_image(scene.image))
        for b in scene.boxes:
            w, h = b.x2 - b.x1, b.y2 - b.y1
            label = (b.x1, b.y1, b.x2, b.y2)
            overlap, box = max(((iou(label, d.box), d.box) for d in found), key=lambda t: t[0], default=(0.0, None))
            if w < 8 or h < 4 or box is None or overlap <= 0.3:
                continue
            x1, y1, x2, y2 = box
            rows.append(((x1 - b.x1) / w, (y1 - b.y1) / h, (x2 - b.x1) / w, (y2 - b.y1) / h))
    framing = np.array(rows, np.float32).reshape(-1, 4)
    if not len(framing):
        raise UserError(f"{models}: its detector found none of the {len(scenes)} scenes' labelled plates, "
                        "so there is no framing to learn from")
    if cache is not None:
        np.save(cache, framing)
    return framing


def daemon_box(rng: np.random.Generator, shape: tuple[int, ...], framing: np.ndarray) -> tuple[int, int, int, int]:
    """A detector box drawn from `framing` around a crop cut at the plate's edge, in the coordinates
    of that crop bordered on every side by its own size (`bordered`)."""
    h, w = shape[:2]
    fx1, fy1, fx2, fy2 = framing[rng.integers(len(framing))]
    x1, y1 = max(0, round(fx1 * w) + w), max(0, round(fy1 * h) + h)
    x2, y2 = min(3 * w, max(round(fx2 * w) + w, x1 + 8)), min(3 * h, max(round(fy2 * h) + h, y1 + 4))
    return x1, y1, x2, y2


def bordered(img: np.ndarray) -> np.ndarray:
    """A crop with its edge pixels repeated for its own width and height on every side."""
    h, w = img.shape[:2]
    return cv2.copyMakeBorder(img, h, h, w, w, cv2.BORDER_REPLICATE)


def frame_like_daemon(rng: np.random.Generator, img: np.ndarray, framing: np.ndarray) -> np.ndarray:
    """A crop cut at the plate's edge, framed as the daemon frames a plate: a detector box drawn from
    `framing`, widened by crop_plate's padding; edge pixels repeat where it leaves the crop."""
    return crop_plate(bordered(img), daemon_box(rng, img.shape, framing))


def jitter_crop(rng: np.random.Generator, img: np.ndarray, framing: np.ndarray | None = None,
                shifted: bool = False) -> np.ndarray:
    """Real crops come from a detector whose boxes wobble: shift/scale/rotate a little, then degrade.
    With `framing`, the wobble is a measured detector's (frame_like_daemon) and only rotation is added;
    `shifted`, the plate is put anywhere in a padded crop (shift_pad) and only rotation is added."""
    if framing is not None:
        img = frame_like_daemon(rng, img, framing)
    elif shifted:
        img = shift_pad(rng, img)
    h, w = img.shape[:2]
    ang = rng.uniform(-4, 4)
    plain = framing is None and not shifted
    sc = rng.uniform(0.88, 1.08) if plain else 1.0
    M = cv2.getRotationMatrix2D((w / 2, h / 2), ang, sc)
    if plain:
        M[0, 2] += rng.uniform(-0.05, 0.05) * w
        M[1, 2] += rng.uniform(-0.07, 0.07) * h
    out = cv2.warpAffine(img, M, (w, h), borderMode=cv2.BORDER_REPLICATE)
    from alprd.synth.plates import degrade

    return degrade(rng, out, strength=0.5)


# A plate read by eye: (image,) for a whole crop, (image, x1, y1, x2, y2) for a box in a scene;
# the image relative to the data root.
EyeKey = tuple[str | int, ...]
READ_BY_EYE = LABELS
EYE_HEADERS = (["image", "x1", "y1", "x2", "y2", "text"], ["image", "text"])


def box_key(data: Path, image: Path, box: tuple[int, int, int, int]) -> EyeKey:
    return (image.relative_to(data).as_posix(), *box)


def crop_key(data: Path, image: Path) -> EyeKey:
    return (image.relative_to(data).as_posix(),)


def read_by_eye(csv_path: Path) -> dict[EyeKey, str]:
    """Texts read by eye for plates the datasets leave blank and the teacher could not read surely (so
    its pseudo-labels never had them): scene boxes `image,x1,y1,x2,y2,text` or whole crops
    `image,text`, each image relative to the data root."""
    try:
        with open(csv_path, newline="") as f:
            reader = csv.reader(f)
            header = next(reader, [])
            if header not in EYE_HEADERS:
                raise ValueError(f"header {','.join(header)!r}")
            labels: dict[EyeKey, str] = {}
            for r in reader:
                if len(r) != len(header):
                    raise ValueError(f"line {reader.line_num} has {len(r)} fields, not {len(header)}")
                labels[(r[0], *map(int, r[1:-1]))] = r[-1].strip().upper()
    except (OSError, ValueError) as e:
        raise UserError(f"{csv_path}: not an image,x1,y1,x2,y2,text or image,text CSV with whole-pixel boxes ({e})") from None
    for key, text in labels.items():
        if not is_plate_text(text):
            raise UserError(f"{csv_path}: {key[0]}: text {text!r} must be 1-{MAX_PLATE_CHARS} of {ALPHABET}")
    return labels


def label_blank_crops(data: Path, csv_path: Path, by_eye: dict[EyeKey, str], teacher: Path | None,
                      min_conf: float, limit: int = 0, hold_out: HoldOut | None = None,
                      reconcile_min_conf: float | None = None, counts: dict[str, int] | None = None) -> list[CropSample]:
    """Text-less real crops: read by eye where the project has read them, else by the teacher where it
    is sure. With `reconcile_min_conf`, also a crop whose file name carries a text the teacher's less
    sure read (every character at least that sure) agrees with in a Brazilian layout (name_labels);
    never one whose text is a dev plate's (the dev split holds plates out by their text). `counts`
    gets, for the crops whose name carries a text, how each was labelled or why not."""
    eye: list[CropSample] = []
    rest: list[CropSample] = []
    blank = read_ocr_csv(csv_path)[: limit or None]
    for s in hold_out.split("text_less_crops", blank)[0] if hold_out else blank:
        if text := by_eye.get(crop_key(data, s.image)):
            eye.append(CropSample(s.image, text, text))
        else:
            rest.append(s)
    if by_eye:
        print(f"read by eye: {len(eye)} of {len(by_eye)} crop labels name a text-less crop", flush=True)
    unsure: list[tuple[CropSample, str, float]] = []
    taught = pseudo_label(teacher, rest, min_conf, unsure=unsure) if teacher else []
    named: list[CropSample] = []
    tally = {"named": sum(name_text(s.image) is not None for s in eye + rest),
             "named_read_by_eye": sum(name_text(s.image) is not None for s in eye),
             "named_teacher_sure": sum(name_text(s.image) is not None for s in taught),
             "named_reconciled": 0, "named_disagree": 0, "named_dev_text": 0}
    if reconcile_min_conf is not None:
        splits = ocr_splits(data)
        dev_texts = {s.text for s in splits["us_dev"] + splits["br_dev"]}
        for s, read, conf in unsure:
            if (name := name_text(s.image)) is None:
                continue
            text = reconcile(name, read) if conf >= reconcile_min_conf else None
            if text is None:
                tally["named_disagree"] += 1
            elif text in dev_texts:  # that car's crops are dev crops: its text must not be learned
                tally["named_dev_text"] += 1
            else:
                named.append(CropSample(s.image, text, text))
        tally["named_reconciled"] = len(named)
        print(f"file names: {tally}", flush=True)
    if counts is not None:
        counts.update(tally)
    return eye + taught + named


def scene_crops(data: Path, out: Path, limit: int = 0, by_eye: dict[EyeKey, str] | None = None,
                hold_out: HoldOut | None = None) -> list[CropSample]:
    """Plates cut (with a margin, as the detector would) from the detector's training scenes, never
    its dev scenes: real plates of many countries, sizes and lights that the crop sets lack. Cut once
    and cached under <out>/scene_crops. A blank label takes its text from `by_eye` where that has one."""
    by_eye, used = by_eye or {}, 0
    folder = out / "scene_crops"
    folder.mkdir(parents=True, exist_ok=True)
    crops: list[CropSample] = []
    scenes = detection_splits(data)["train"][: limit or None]
    if hold_out:
        hold_out.split("scene_crop_scenes", scenes)  # counted
    for si, scene in enumerate(scenes):
        if hold_out and not hold_out.keeps(source_of(scene.image)):
            continue
        img = None
        for bi, b in enumerate(scene.boxes):
            w, h = b.x2 - b.x1, b.y2 - b.y1
            if w < 24 or h < 8:  # too small to hold legible characters
                continue
            path = folder / f"{si:05d}_{bi}.png"
            box = (round(b.x1), round(b.y1), round(b.x2), round(b.y2))
            if not path.exists():
                img = load_image(scene.image) if img is None else img
                cv2.imwrite(str(path), crop_plate(img, box))
            text = b.text.upper()
            if not text and (key := box_key(data, scene.image, box)) in by_eye:
                text = by_eye[key]
                used += 1
            crops.append(CropSample(path, text, str(scene.image)))
    if by_eye:
        # Fewer than all means the data root or the datasets' boxes are not the ones they were read on.
        print(f"read by eye: {used} of {len(by_eye)} box labels name a training-scene box", flush=True)
    return crops


def cached_labels(cache: Path, make: Callable[[], list[CropSample]]) -> list[CropSample]:
    """Teacher labels cost minutes: made once per run folder, then read back from `image,text` lines."""
    if cache.exists():
        return [CropSample(Path(p), t, t) for p, t in (ln.split(",") for ln in cache.read_text().split())]
    samples = make()
    cache.write_text("".join(f"{s.image},{s.text}\n" for s in samples))
    return samples


class Teacher:
    """The teacher OCR (../shared/teachers, training only) that pseudo-labels text-less crops."""

    def __init__(self, path: Path):
        import onnxruntime as ort

        self.sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        self.inp = self.sess.get_inputs()[0].name

    def read(self, rgb: np.ndarray) -> np.ndarray:
        """rgb [N,64,128,3] uint8 -> [N,10,37] character probabilities (same alphabet and pad as ours;
        the teacher's region head is unused)."""
        return self.sess.run(["plate"], {self.inp: rgb})[0]

    def read_crop(self, bgr: np.ndarray) -> np.ndarray:
        """One BGR crop of any size -> [10,37] probabilities."""
        return self.read(cv2.resize(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), (W, H))[None])[0]


def pseudo_label(teacher: Path, samples: list[CropSample], min_conf: float,
                 lengths: tuple[int, int] = (5, 8),
                 unsure: list[tuple[CropSample, str, float]] | None = None) -> list[CropSample]:
    """Label text-less real crops with the teacher OCR; keep only confident, plausible reads. The rest
    go to `unsure` with the read and its least sure character's confidence."""
    reader = Teacher(teacher)
    kept = []
    for s in samples:
        img = cv2.imread(str(s.image))
        if img is None:
            continue
        probs = reader.read_crop(img)
        idx = probs.argmax(1)
        conf = probs.max(1)
        text = decode(idx)
        if conf.min() >= min_conf and lengths[0] <= len(text) <= lengths[1]:
            kept.append(CropSample(s.image, text, text))
        elif unsure is not None:
            unsure.append((s, text, float(conf.min())))
    return kept


def labelled_crops(data: Path, hold: HoldOut, limit: int = 0) -> tuple[dict[str, list[CropSample]],
                                                                        dict[str, list[CropSample]]]:
    """The labelled crop sets of a run: ocr_splits less the held-out sources,
    and those sources' crops, train and dev parts together, as evaluation sets of their own
    (`us_held_out`, `br_held_out`) that select the checkpoint with the dev sets; at most `limit` in each."""
    splits = ocr_splits(data)
    held: dict[str, list[CropSample]] = {}
    for k in list(splits):
        splits[k], out = hold.split(k, splits[k])
        held.setdefault(f"{k.split('_')[0]}_held_out", []).extend(out)
    if limit:
        splits = {k: v[:limit] for k, v in splits.items()}
        held = {k: v[:limit] for k, v in held.items()}
    return splits, {k: v for k, v in held.items() if v}


def evaluate(net: nn.Module, samples: list[tuple[np.ndarray, str]]) -> float:
    if not samples:
        return float("nan")
    net.eval()
    hits = 0
    with torch.no_grad():
        for i in range(0, len(samples), 128):
            chunk = samples[i:i + 128]
            x = torch.from_numpy(ocr_input([c for c, _ in chunk], H, W))
            pred = net(x).argmax(-1).numpy()
            hits += sum(decode(p) == t for p, (_, t) in zip(pred, chunk))
    net.train()
    return hits / len(samples)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="alprd train ocr")
    ap.add_argument("--data", type=Path, default=Path("../shared/data"))
    ap.add_argument("--out", type=Path, default=Path("runs/ocr"))
    ap.add_argument("--steps", type=int, default=8000)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--synthetic", type=int, default=20000, help="synthetic plates rendered once")
    ap.add_argument("--synthetic-share", type=float, default=0.4)
    ap.add_argument("--us-varied", type=float, default=0.2,
                    help="share of the synthetic plates drawn as varied US plates (short and vanity serials, "
                         "runs of one character, stacked side letters and the access symbol outside the number)")
    ap.add_argument("--eu-road", type=float, default=0.0,
                    help="share of the synthetic plates drawn as European plates with the road look (white, "
                         "black characters, a third Romanian, Bucharest's two-digit serials among them)")
    ap.add_argument("--teacher", type=Path, help="teacher OCR ONNX for pseudo-labels (training only)")
    ap.add_argument("--teacher-min-conf", type=float, default=0.9)
    ap.add_argument("--reconcile-names", type=float, metavar="MIN_CONF", default=None,
                    help="text-less crops whose file name carries a text (images/br/<n>_<TEXT>.jpg): also label "
                         "those the teacher reads less surely (every character at least MIN_CONF) where its read "
                         "and the name agree as a Brazilian plate, look-alikes decided by the layout")
    ap.add_argument("--shift-pad", type=float, default=0.0, metavar="P",
                    help="share of every batch (synthetic and real crops) whose plate is put at a random place "
                         "and size (65-100%% of the width) inside a padded crop, so the attention slots learn to "
                         "find the characters anywhere instead of reading one twice")
    ap.add_argument("--scene-crops", action="store_true",
                    help="also train on plates cut from the detector's training scenes (teacher-labelled)")
    ap.add_argument("--read-by-eye", type=Path, nargs="+", metavar="CSV",
                    help=f"texts read by eye for plates the data leaves blank: scene boxes (with --scene-crops) "
                         f"or text-less crops; the project's are in {READ_BY_EYE}")
    ap.add_argument("--us-repeat", type=int, default=1,
                    help="draw each real US crop this many times as often (they are few and the hardest)")
    ap.add_argument("--init-onnx", type=Path,
                    help="start a new run from this reader's ONNX weights (all of them when it has the "
                         "--head asked for, else its backbone)")
    ap.add_argument("--backbone-lr-scale", type=float, default=0.3,
                    help="with --init-onnx of a reader with another head: the warm backbone learns this much "
                         "slower than the new head, so the head's first random gradients do not undo it")
    ap.add_argument("--frame-with", type=Path, metavar="MODELS_DIR",
                    help="frame the labelled crops (cut at the plate's edge) as the daemon would with this "
                         "folder's detector: its box errors on the training scenes, then the crop padding")
    ap.add_argument("--frame-share", type=float, default=0.7,
                    help="with --frame-with: share of the labelled crops framed so; the rest keep the plain jitter")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--workers", type=int, default=2, help="processes for rendering synthetic plates")
    ap.add_argument("--eval-every", type=int, default=500)
    add_ema_argument(ap)
    ap.add_argument("--export", type=Path, default=None, help="ONNX path written from the best checkpoint")
    ap.add_argument("--limit", type=int, default=0, help="use at most this many crops per split (smoke runs)")
    ap.add_argument("--head", choices=HEADS, default="attn",
                    help="attn: slots read out by attention with one shared classifier (default, the "
                         "shipped reader since 0.4.0); slots: the fixed-slot reader of 0.3.0")
    add_hold_out_argument(ap)
    args = ap.parse_args(argv)
    if not 0 <= args.shift_pad <= 1:
        raise UserError(f"--shift-pad {args.shift_pad}: give a share of every batch, 0..1")
    if args.reconcile_names is not None and not args.teacher:
        raise UserError("--reconcile-names: the file names are checked against the teacher's reads; pass --teacher")
    if not 0 <= args.frame_share <= 1:
        raise UserError(f"--frame-share {args.frame_share}: give a share of the labelled crops, 0..1")
    if not (0.0 <= args.eu_road <= 1.0 and 0.0 <= args.us_varied <= 1.0 and args.us_varied + args.eu_road <= 1.0):
        raise UserError(f"--us-varied {args.us_varied} and --eu-road {args.eu_road}: shares of the synthetic plates, "
                        "each 0..1 and together at most 1")
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    same_hold_out(args.out, args.hold_out)
    rec = RunRecord(args.out, "ocr", {k: str(v) for k, v in vars(args).items()})

    hold = HoldOut(args.hold_out, data_sources(args.data) if args.hold_out else set())
    splits, held_out = labelled_crops(args.data, hold, args.limit)
    eye_boxes: dict[EyeKey, str] = {}
    eye_crops: dict[EyeKey, str] = {}
    for path in args.read_by_eye or []:
        for key, text in read_by_eye(path).items():
            (eye_boxes if len(key) == 5 else eye_crops)[key] = text
    if eye_boxes and not args.scene_crops:
        raise UserError("--read-by-eye: scene-box labels label scene crops; pass --scene-crops with them")
    pseudo_csv, scenes_csv = args.out / "pseudo.csv", args.out / "pseudo_scenes.csv"
    # The labels are applied when those lists are made; a list already made keeps what it had.
    for labels, cache in ((eye_crops, pseudo_csv), (eye_boxes, scenes_csv)):
        if labels and cache.exists():
            print(f"read by eye: {cache} was made before and keeps the labels it was made with; "
                  f"start a new --out for these", flush=True)
    pseudo: list[CropSample] = []
    no_text = args.data / "openalpr_train_detector" / "crops_no_text.csv"
    no_text_counts: dict[str, int] = {}
    if no_text.exists() and (args.teacher or eye_crops):
        pseudo = cached_labels(pseudo_csv, lambda: label_blank_crops(
            args.data, no_text, eye_crops, args.teacher, args.teacher_min_conf, args.limit, hold,
            args.reconcile_names, no_text_counts))
    if no_text_counts:  # empty when pseudo.csv was made by an earlier start of this run
        rec.set("no_text_labels", no_text_counts)
    scenes: list[CropSample] = []
    if args.scene_crops:
        def label_scene_crops() -> list[CropSample]:
            cut = scene_crops(args.data, args.out, args.limit, eye_boxes, hold)
            kept = [c for c in cut if c.text and len(c.text) <= SLOTS]
            if args.teacher:
                kept += pseudo_label(args.teacher, [c for c in cut if not c.text], args.teacher_min_conf, (4, SLOTS))
            return kept

        scenes = cached_labels(scenes_csv, label_scene_crops)
        print(f"scene crops {len(scenes)}", flush=True)
    pseudo += scenes
    train = splits["us_train"] * args.us_repeat + splits["br_train"]
    rec.set("data", {k: len(v) for k, v in splits.items()} | {"pseudo": len(pseudo), "synthetic": args.synthetic})
    print({k: len(v) for k, v in splits.items()}, "pseudo", len(pseudo), flush=True)

    # Real crops are shrunk once to a little over the model's input: augmenting full-size crops
    # every step cost more than the network itself.
    # The crop sets are cut at the plate's edge; scene crops already carry crop_plate's framing.
    cut_by_crop_plate = {s.image for s in scenes}
    real = [(cv2.resize(load_image(s.image), (W + 16, H + 8), interpolation=cv2.INTER_AREA), s.text,
             s.image not in cut_by_crop_plate) for s in train + pseudo if len(s.text) <= SLOTS]
    framing = None
    if args.frame_with:
        scenes_limit = args.limit or FRAMING_SCENES
        framing_scenes = hold.split("framing_scenes", detection_splits(args.data)["train"][:scenes_limit])[0]
        framing = detector_framing(args.frame_with, framing_scenes, args.out / "framing.npy")
        print(f"framing: {len(framing)} detector boxes around labelled plates", flush=True)
        rec.set("framing", {"models": str(args.frame_with), "boxes": len(framing), "share": args.frame_share})
    if hold.split_name:
        # Cached pseudo-label lists hold what was left when they were made: a new --out per hold-out.
        rec.set("hold_out", hold.record() | {"evaluated": {k: len(v) for k, v in held_out.items()}})
        print(f"held out ({hold.split_name}): {hold.record()['dropped']}", flush=True)
    dev = {k: [(load_image(s.image), s.text) for s in v]
           for k, v in [("us_dev", splits["us_dev"]), ("br_dev", splits["br_dev"]), *held_out.items()]}
    t0 = time.time()
    syn_img, syn_txt = synthetic_bank(args.synthetic, args.out / "synthetic.npz", args.workers, args.us_varied,
                                      args.eu_road)
    print(f"synthetic bank {len(syn_img)} in {time.time() - t0:.0f}s", flush=True)
    syn_lab = np.stack([encode(t) for t in syn_txt])

    net = make_net(args.head)
    backbone = [p for n, p in net.named_parameters() if n.startswith("features.")]
    rest = [p for n, p in net.named_parameters() if not n.startswith("features.")]
    new_head = bool(args.init_onnx) and onnx_head(args.init_onnx) != args.head
    scale = args.backbone_lr_scale if new_head else 1.0
    opt = torch.optim.AdamW([{"params": backbone}, {"params": rest}], lr=args.lr, weight_decay=1e-4)
    sched = one_cycle(opt, [args.lr * scale, args.lr], args.steps, 0.05)
    ck = load_checkpoint(args.out / "last.pt")
    if ck and ck.get("head", "slots") != args.head:
        raise UserError(f"{args.out / 'last.pt'}: that run trains the {ck.get('head', 'slots')} head; "
                        f"pass --head {ck.get('head', 'slots')} or a new --out")
    step, best, sched = resume_run(ck, net, opt, sched, args.steps)
    if not ck and args.init_onnx:
        init_from_onnx(net, args.head, args.init_onnx, torch.from_numpy(ocr_input(list(syn_img[:256]), H, W)))
        m = {k: evaluate(net, v) for k, v in dev.items()}
        print(f"warm start from {args.init_onnx}: {m}", flush=True)
        rec.set("init_onnx", {"path": str(args.init_onnx), "dev": m})
    ema = MovingAverage(net, args.ema, ck)  # ema.kept: what is evaluated, kept as best.pt and exported
    rng = np.random.default_rng(step)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=0.05)
    n_syn = int(args.batch * args.synthetic_share)
    net.train()
    t0 = time.time()
    while step < args.steps:
        si = rng.integers(len(syn_img), size=n_syn)
        imgs = [syn_img[i] for i in si]
        labs = [syn_lab[i] for i in si]
        if args.shift_pad:
            imgs = [shift_pad(rng, im) if rng.random() < args.shift_pad else im for im in imgs]
        for i in rng.integers(len(real), size=args.batch - n_syn):
            img, text, tight = real[i]
            if args.shift_pad and rng.random() < args.shift_pad:
                imgs.append(jitter_crop(rng, img, shifted=True))
            else:
                framed = framing is not None and tight and rng.random() < args.frame_share
                imgs.append(jitter_crop(rng, img, framing if framed else None))
            labs.append(encode(text))
        x = torch.from_numpy(ocr_input(imgs, H, W))
        y = torch.from_numpy(np.stack(labs))
        logits = net(x)
        loss = loss_fn(logits.reshape(-1, len(CHARS)), y.reshape(-1))
        take_step(loss, net, opt, sched, ema)
        step += 1
        if step % 50 == 0:
            print(f"step {step} loss {loss.item():.3f} {(time.time() - t0) / 50:.2f}s/step", flush=True)
            t0 = time.time()
        if step % args.eval_every == 0 or step == args.steps:
            m = {k: evaluate(ema.kept, v) for k, v in dev.items()}
            score = float(np.nanmean(list(m.values())))
            rec.add_eval(step, m | ema.record())
            print(f"eval step {step}{' (moving average)' if ema.average is not None else ''}: {m}", flush=True)
            best = keep_checkpoints(args.out, score, best, step, m, net, opt, sched, ema, head=args.head)
    if args.export:
        export_ocr(args.out / "best.pt", args.export)
        rec.set("exported", str(args.export))
    return 0


def export_ocr(checkpoint: Path, path: Path) -> None:
    ck = torch.load(checkpoint, map_location="cpu", weights_only=False)
    net = make_net(ck.get("head", "slots"))
    net.load_state_dict(exported_weights(ck))
    export_onnx(PlateOcrExport(net), torch.zeros(1, 1, H, W), path, "image", ["probs"],
                {"image": {0: "batch"}, "probs": {0: "batch"}})


if __name__ == "__main__":
    raise SystemExit(main())
