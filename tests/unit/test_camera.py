"""One camera's wiring (alprd/camera.py), which the daemon, `alprd bench` and the benchmarks share,
and the module boundaries it rests on."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import numpy as np

from alprd.camera import build_camera
from alprd.config import CameraConfig, Config, HotlistConfig, ModelsConfig, TrackingConfig
from alprd.geometry import Box, Frame, Motion
from alprd.hotlist.hotlist import Hotlist
from alprd.recognition.base import Detection, PlateRead
from alprd.recognition.onnx_models import OnnxPlateDetector
from alprd.recognition.recognizer import Recognizer

ALPRD = Path(__file__).resolve().parents[2] / "alprd"
LEFT_PLATE: Box = (40, 100, 120, 120)
RIGHT_PLATE: Box = (440, 100, 520, 120)


class TwoPlates(Recognizer):
    """A plate on each half of the frame, every frame; records the regions it was asked to search."""

    def __init__(self) -> None:
        self.min_confidence, self.min_chars = 0.5, 3
        self.asked: list[tuple[Box, ...] | None] = []

    @property
    def model_versions(self) -> dict[str, str]:
        return {"detector": "two@1", "ocr": "two@1"}

    def analyse(self, frame, timings=None, regions=None):
        self.asked.append(regions)
        plates = [("ABC1234", LEFT_PLATE), ("XYZ9876", RIGHT_PLATE)]
        return ([Detection(b, 0.9) for _, b in plates],
                [PlateRead(t, 0.95, (0.95,) * len(t), b, 0.9) for t, b in plates])


def frame(i: int, motion: Motion | None = None, timestamp_ms: int | None = None) -> Frame:
    img = np.full((240, 640, 3), 90, np.uint8)
    return Frame("cam", i, i * 100 if timestamp_ms is None else timestamp_ms, img, motion=motion)


def test_the_gate_regions_and_roi_reach_the_recognizer_through_one_wiring():
    right_half = ((0.5, 0.0), (1.0, 0.0), (1.0, 1.0), (0.5, 1.0))
    cam = CameraConfig(id="cam", source="-", roi=right_half, tracking=TrackingConfig(enabled=False))
    cfg = Config(unit_id="u", cameras=(cam,))
    rec = TwoPlates()
    w = build_camera(cfg, cam, rec, include_crop=False, location=None)
    assert w.pipeline.gate is w.gate and w.recognizer.gate is w.gate and w.pipeline.recognizer is w.recognizer
    region = (400, 50, 640, 200)
    out = w.pipeline.process(frame(0, Motion(True, "moving", 0.1, (region,))))
    out += w.pipeline.process(frame(1, Motion(False, "static", 0.0, ())))  # never reaches the recognizer
    out += w.pipeline.process(frame(2))  # no motion test: the whole frame
    out += w.pipeline.finish()
    assert rec.asked == [(region,), None]
    assert w.gate.snapshot() == {"analysed": 2, "regions": 1, "static": 1}
    # The left plate lies outside the camera's ROI: only the right one is published.
    assert {m.payload["plate"] for m in out if m.kind == "read"} == {"XYZ9876"}


def test_cameras_get_their_own_sections_and_share_one_hotlist_per_section(tmp_path):
    listed = tmp_path / "hot.csv"
    listed.write_text("plate,reason,priority\nXYZ9876,stolen,1\n")
    own = TrackingConfig(first_read_min_frames=5)
    a = CameraConfig(id="a", source="-", tracking=own)
    b = CameraConfig(id="b", source="-")
    cfg = Config(unit_id="u", cameras=(a, b), hotlist=HotlistConfig(path=str(listed)))
    loaded: dict[HotlistConfig, Hotlist] = {}
    rec = TwoPlates()
    wa = build_camera(cfg, a, rec, include_crop=False, location=None, hotlists=loaded)
    wb = build_camera(cfg, b, rec, include_crop=True, location=None, hotlists=loaded)
    assert wa.pipeline.tracking is own and wb.pipeline.tracking is cfg.tracking
    assert wa.pipeline.hotlist is wb.pipeline.hotlist is loaded[cfg.hotlist]
    assert not wa.pipeline.include_crop and wb.pipeline.include_crop
    alone = build_camera(cfg, b, rec, include_crop=False, location=None)
    assert alone.pipeline.hotlist is not None and alone.pipeline.hotlist is not loaded[cfg.hotlist]


def test_a_live_camera_skips_a_late_frame_only_when_a_newer_one_waits():
    cam = CameraConfig(id="cam", source="-", max_lag_ms=500)
    newest = [0]
    w = build_camera(Config(unit_id="u", cameras=(cam,)), cam, TwoPlates(), include_crop=False, location=None,
                     live=True, newest=lambda: newest[0])
    old = 0  # a timestamp far older than max_lag_ms
    assert w.pipeline.live
    w.pipeline.process(frame(0, timestamp_ms=old))  # the newest there is: analysed however late
    newest[0] = 2
    w.pipeline.process(frame(1, timestamp_ms=old))  # late, and frame 2 waits: skipped
    assert w.gate.snapshot() == {"analysed": 1, "late": 1}
    recorded = build_camera(Config(unit_id="u", cameras=(cam,)), cam, TwoPlates(), include_crop=False, location=None)
    recorded.pipeline.process(frame(1, timestamp_ms=old))
    assert recorded.gate.snapshot() == {"analysed": 1} and not recorded.pipeline.live


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
    return names


def test_frames_and_boxes_are_a_leaf_and_inference_takes_no_config():
    assert not {m for m in _imports(ALPRD / "geometry.py") if m.startswith("alprd")}
    motion = _imports(ALPRD / "motion.py")
    assert not any(m.startswith(("alprd.sources", "alprd.config")) for m in motion), motion
    for path in (ALPRD / "recognition").glob("*.py"):
        assert "alprd.config" not in _imports(path), path


def test_the_recognizers_own_defaults_are_the_configs_defaults():
    """Tools build detectors and recognizers without a config: they must behave as a default config."""
    det = inspect.signature(OnnxPlateDetector).parameters
    assert det["recheck_above"].default == ModelsConfig.detector_recheck_above
    assert det["verify_below"].default == ModelsConfig.detector_verify_below
    assert inspect.signature(Recognizer).parameters["reread_below"].default == ModelsConfig.reread_below
