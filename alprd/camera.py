"""One camera's wiring: motion gate, the camera's view of the shared recognizer, and its pipeline.

The daemon, `alprd bench` and the benchmarks all build a camera here, so what a bench run or a
benchmark reports comes from the same assembly the unit runs."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from alprd.config import CameraConfig, Config, HotlistConfig
from alprd.gps.provider import LocationProvider
from alprd.hotlist.hotlist import Hotlist
from alprd.motion import MotionGate, RegionRecognizer
from alprd.pipeline import CameraPipeline
from alprd.recognition.recognizer import Recognizer
from alprd.tracking.plan import WorkPlanner


@dataclass(frozen=True)
class CameraWiring:
    gate: MotionGate  # static and late frames stop here; it hands the recognizer each frame's regions
    recognizer: RegionRecognizer  # the shared recognizer, limited to the gate's regions and the camera's ROI
    pipeline: CameraPipeline
    location: LocationProvider | None  # the unit's (shared by its cameras), or None


def build_camera(cfg: Config, cam: CameraConfig, recognizer: Recognizer, *, include_crop: bool,
                 location: LocationProvider | None, live: bool = False, newest: Callable[[], int] | None = None,
                 hotlists: dict[HotlistConfig, Hotlist] | None = None,
                 wrap: Callable[[RegionRecognizer], Any] | None = None) -> CameraWiring:
    """`cam`'s gate, recognizer and pipeline, with its own tracking, formats and hotlist sections or
    the unit-wide ones. `newest`: index of the newest frame a live source has captured (the gate
    skips a late frame only when a newer one waits). `hotlists`: lists already loaded, by section,
    so cameras with the same list share one (and one reload); a new one is added to it. `wrap`:
    what the pipeline calls instead of the recognizer itself (the bench's read-ahead)."""
    tracking, formats, hl = cfg.camera_settings(cam)
    hotlist = None
    if hl.path:
        loaded = hotlists if hotlists is not None else {}
        if hl not in loaded:
            loaded[hl] = Hotlist(hl.path, hl.max_edits, hl.confusables, hl.reload_check_s)
        hotlist = loaded[hl]
    gate = MotionGate(live=live, max_lag_ms=cam.max_lag_ms, newest=newest)
    planner = None
    if tracking.enabled and tracking.follow:  # without tracks there is nothing to follow
        planner = WorkPlanner(lag=tracking.follow_lag_frames, every=tracking.full_frame_every,
                              every_settled=tracking.full_frame_every_settled, margin=tracking.window_margin,
                              growth=tracking.reread_growth, live=live)
    region = RegionRecognizer(recognizer, gate, cam.roi, planner)
    pipeline = CameraPipeline(cam.id, wrap(region) if wrap is not None else region, cfg.unit_id,  # type: ignore[arg-type]
                              include_crop, tracking, formats, hotlist, live=live, gate=gate, location=location,
                              planner=planner)
    return CameraWiring(gate, region, pipeline, location)
