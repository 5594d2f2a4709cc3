"""What the detector's training scenes leave out: plates nobody boxed, and lettering that is no plate.

The scene datasets box only some plates: far or blurred plates and second cars go unlabelled, and a
detector trained on them learns to call real plates background. A teacher detector (training only,
never shipped) finds those plates; they become extra boxes. Where the student fires and neither the
labels nor the teacher see a plate (dealer badges, model names, shop signs) is a hard negative the
trainer centres crops on, so the focal loss sees those places far more often than random crops do.

Issue 32: a detector trained on tilted crops fires on more non-plates, and on tilted ones above
all, which the scenes as shot do not show it. With a tilted detector, each scene is also mined
tilted once (one camera_styles tilt per scene, drawn from its key), and the crops of those
negatives are cut from the scene tilted the same way.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnxruntime as ort

from alprd.recognition.preprocess import iou, letterbox, nms
from alprd_train import camera_styles

Box = tuple[float, float, float, float, float]  # x1, y1, x2, y2, score


class TeacherDetector:
    """The third-party YOLO plate detector in ../shared/teachers (416x416 RGB/255 letterboxed, NMS inside)."""

    size = 416
    floor = 0.05  # the graph returns hundreds of near-zero boxes per image

    def __init__(self, path: Path, threads: int = 1):
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
        self._input = self.session.get_inputs()[0].name

    def _run(self, img: np.ndarray) -> list[Box]:
        blob, s, px, py = letterbox(img, self.size, self.size)
        out = self.session.run(None, {self._input: np.ascontiguousarray(blob[:, ::-1]) / 255.0})[0]  # BGR -> RGB
        return [(float(r[1] - px) / s, float(r[2] - py) / s, float(r[3] - px) / s, float(r[4] - py) / s, float(r[6]))
                for r in out]

    def detect(self, img: np.ndarray) -> list[Box]:
        """The whole image, plus its left and right halves for wide frames: at 416 px a far plate
        in a 960 px dashcam frame is under 20 px, where the teacher misses most."""
        boxes = self._run(img)
        h, w = img.shape[:2]
        if w > 1.4 * h:
            half = int(w * 0.56)
            # A box touching a half's inner edge is a plate cut in two: the other passes see it whole.
            boxes += [b for b in self._run(img[:, :half]) if b[2] < half - 2]
            boxes += [(b[0] + w - half, b[1], b[2] + w - half, b[3], b[4])
                      for b in self._run(img[:, w - half:]) if b[0] > 2]
        return nms([b for b in boxes if b[4] >= self.floor], 0.5)


@dataclass
class MinedScene:
    extra: list[Box]  # plates the labels lack, teacher score >= keep
    negatives: list[Box]  # student detections no label or teacher box explains
    tilt: np.ndarray | None = None  # 3x3: the tilt the scene was also mined under
    tilted_negatives: list[Box] = field(default_factory=list)  # such detections in the tilted scene


def mine_scene(labels: np.ndarray, teacher: list[Box], student: list[Box], keep: float) -> MinedScene:
    def labelled(b: Sequence[float]) -> bool:
        return any(iou(b[:4], lb) > 0.3 for lb in labels)

    extra = [t for t in teacher if t[4] >= keep and not labelled(t)]
    # Even a weak teacher box vetoes a negative: training a plate as background costs more than
    # missing one hard negative.
    negatives = [s for s in student if not labelled(s) and not any(iou(s[:4], t[:4]) > 0.1 for t in teacher)]
    return MinedScene(extra, negatives)


def scene_tilt(key: str, w: int, h: int) -> np.ndarray:
    """The one tilt a scene is mined under: drawn from its key, so a resumed run gets the same."""
    return camera_styles.draw_tilt(np.random.default_rng(zlib.crc32(key.encode())), w, h)


def mine(scenes: list[tuple[np.ndarray, np.ndarray]], keys: list[str], teacher_path: Path | None,
         student_path: Path | None, cache: Path, keep: float = 0.5,
         tilted_path: Path | None = None) -> list[MinedScene]:
    """Mine every scene once (and with `tilted_path`, that detector on each scene tilted by
    scene_tilt); the result is cached in `cache` (keyed by image) so a resumed run trains on the
    same boxes."""
    stored = json.loads(cache.read_text()) if cache.exists() else {}
    todo = [i for i, k in enumerate(keys) if k not in stored]
    todo_tilted = [i for i, k in enumerate(keys) if tilted_path and "tilted" not in stored.get(k, {})]
    if todo:
        teacher = TeacherDetector(teacher_path) if teacher_path else None
        student = mining_detector(student_path) if student_path else None
        for i in todo:
            img = scenes[i][0]
            t = teacher.detect(img) if teacher else []
            s = _detect(student, img) if student else []
            stored[keys[i]] = {"teacher": t, "student": s}
    if todo_tilted:
        detector = mining_detector(tilted_path)
        for i in todo_tilted:
            img = scenes[i][0]
            M = scene_tilt(keys[i], img.shape[1], img.shape[0])
            stored[keys[i]]["tilted"] = _detect(detector, camera_styles.tilted(img, M))
    if todo or todo_tilted:
        cache.write_text(json.dumps(stored))
    out = []
    for (img, labels), k in zip(scenes, keys):
        rec = stored[k]
        teacher_boxes = [tuple(b) for b in rec["teacher"]]
        m = mine_scene(labels, teacher_boxes, [tuple(b) for b in rec["student"]], keep)
        if tilted_path:
            m.tilt = scene_tilt(k, img.shape[1], img.shape[0])
            m.tilted_negatives = _tilted_negatives(m, labels, teacher_boxes, [tuple(b) for b in rec["tilted"]],
                                                   img.shape[1], img.shape[0], keep)
        out.append(m)
    return out


def _tilted_negatives(m: MinedScene, labels: np.ndarray, teacher: list[Box], detected: list[Box],
                      w: int, h: int, keep: float) -> list[Box]:
    """The detections in the scene tilted by m.tilt that nothing explains: the labels, the added
    plates and every teacher box, each carried through the tilt (a box partly left in frame still
    vetoes)."""
    moved = camera_styles.warp_boxes(m.tilt, [np.array(b[:4], np.float32) for b in [*labels, *m.extra]], w, h, keep=0.0)
    teacher_moved = [(*b, t[4]) for t in teacher
                     for b in camera_styles.warp_boxes(m.tilt, [np.array(t[:4], np.float32)], w, h, keep=0.0)]
    return mine_scene(np.array(moved, np.float32).reshape(-1, 4), teacher_moved, detected, keep).negatives


def _detect(detector, img: np.ndarray) -> list[Box]:
    return nms([(*map(float, d.box), d.confidence) for d in detector.detect(img)], 0.5)


def mining_detector(path: Path):
    from alprd.recognition.manifest import ModelEntry
    from alprd.recognition.onnx_models import OnnxPlateDetector

    entry = ModelEntry(name="plate_detector", version="mining", task="detector", path=path, sha256="",
                       input={"stride": 4})
    return OnnxPlateDetector(entry, threshold=0.3)
