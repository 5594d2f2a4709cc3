"""Synthetic traffic video: vehicles carrying rendered plates drive through a road scene.

Every test video in the project comes from here, with its ground truth, so tests need no outside data."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from alprd.geometry import iou
from alprd.synth.plates import Plate, degrade, render_plate


@dataclass
class Vehicle:
    text: str
    layout: str
    start_frame: int
    end_frame: int
    lane_x: float  # horizontal centre as a fraction of frame width
    plate_width: int  # plate width in pixels when nearest the camera
    color: tuple[int, int, int]
    parked: bool = False
    boxes: dict[int, tuple[int, int, int, int]] = field(default_factory=dict, repr=False)


def vehicle_at(truth: list[Vehicle], frame_index: int, box: Sequence[float], min_iou: float = 0.3) -> Vehicle | None:
    """The vehicle whose plate `box` overlaps most (by at least min_iou) in that frame, if any."""
    best, best_iou = None, min_iou
    for v in truth:
        b = v.boxes.get(frame_index)
        if b is not None:
            o = iou(b, box)
            if o >= best_iou:
                best, best_iou = v, o
    return best


def vehicles_read(reads: list[dict[str, Any]], truth: list[Vehicle]) -> tuple[set[str], set[str]]:
    """Read payloads per vehicle pass: (plates of the vehicles with any read on their plate, those read
    exactly). A read belongs to a vehicle when its box overlaps that vehicle's plate in the read's frame."""
    seen, exact = set(), set()
    for p in reads:
        for v in truth:
            b = v.boxes.get(p["frame_index"])
            if b is not None and iou(b, p["box"]) > 0.3:
                seen.add(v.text)
                if p["plate"] == v.text:
                    exact.add(v.text)
    return seen, exact


def road_background(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    bg = np.zeros((height, width, 3), np.uint8)
    horizon = int(height * 0.25)
    bg[:horizon] = (200, 170, 140)  # sky
    bg[horizon:] = (90, 90, 95)  # asphalt
    noise = rng.normal(0, 8, (height - horizon, width, 1))
    bg[horizon:] = np.clip(bg[horizon:].astype(np.float32) + noise, 0, 255).astype(np.uint8)
    for frac in (0.33, 0.66):  # lane markings converging at the horizon
        top = (int(width * (0.45 + (frac - 0.5) * 0.2)), horizon)
        bottom = (int(width * frac), height)
        cv2.line(bg, top, bottom, (230, 230, 230), 3)
    return bg


def _draw_vehicle(frame: np.ndarray, v: Vehicle, plate: Plate, cx: float, cy: float, scale: float):
    """Car rear at (cx, cy) with the plate near its bottom; returns the plate's box."""
    pw = max(8, int(v.plate_width * scale))
    ph = max(4, int(pw * plate.image.shape[0] / plate.image.shape[1]))
    car_w, car_h = int(pw * 3.6), int(pw * 2.4)
    x1, y1 = int(cx - car_w / 2), int(cy - car_h * 0.75)
    cv2.rectangle(frame, (x1, y1), (x1 + car_w, y1 + car_h), v.color, -1)
    cv2.rectangle(frame, (x1 + car_w // 8, y1 + car_h // 10), (x1 + car_w * 7 // 8, y1 + car_h * 4 // 10),
                  (60, 50, 40), -1)  # rear window
    for lx in (x1 + car_w // 14, x1 + car_w * 13 // 14 - car_w // 8):  # tail lights
        cv2.rectangle(frame, (lx, y1 + car_h // 2), (lx + car_w // 8, y1 + car_h // 2 + car_h // 10), (30, 30, 200), -1)
    px1, py1 = int(cx - pw / 2), int(y1 + car_h * 0.62)
    plate_img = cv2.resize(plate.image, (pw, ph), interpolation=cv2.INTER_AREA)
    h, w = frame.shape[:2]
    xa, ya, xb, yb = max(0, px1), max(0, py1), min(w, px1 + pw), min(h, py1 + ph)
    if xb <= xa or yb <= ya:
        return None
    frame[ya:yb, xa:xb] = plate_img[ya - py1:yb - py1, xa - px1:xb - px1]
    if xa != px1 or ya != py1 or xb != px1 + pw or yb != py1 + ph:
        return None  # partly out of frame: not counted as a readable plate
    return (px1, py1, px1 + pw, py1 + ph)


def plan_vehicles(rng: np.random.Generator, vehicles: int, frames: int, fps: float,
                  layouts: tuple[str, ...] = ("us", "eu", "br", "mercosur", "us2", "eu2")) -> list[Vehicle]:
    """Vehicles spread over the clip; neighbours overlap in time in different lanes."""
    out = []
    span = max(1, frames // max(1, vehicles))
    for i in range(vehicles):
        dur = int(rng.uniform(1.6, 3.0) * fps)
        start = min(frames - dur, int(i * span * 0.9)) if frames > dur else 0
        plate = None
        layout = layouts[i % len(layouts)]
        plate = render_plate(rng, layout)
        out.append(Vehicle(plate.text, layout, max(0, start), min(frames - 1, start + dur),
                           lane_x=[0.3, 0.55, 0.75][i % 3], plate_width=int(rng.uniform(140, 200)),
                           color=tuple(int(c) for c in rng.integers(30, 220, 3))))
        out[-1]._plate = plate  # type: ignore[attr-defined]
    return out


def plan_extra(rng: np.random.Generator, plan: list[Vehicle], frames: int, fps: float, parked: int, fast: int,
               layouts: tuple[str, ...]) -> None:
    """Parked vehicles (in view the whole clip, standing still at the kerb) and fast ones (through
    the scene in about half a second), added after the regular plan so its plates stay the same."""
    for i in range(parked):
        plate = render_plate(rng, layouts[i % len(layouts)])
        v = Vehicle(plate.text, plate.layout, 0, frames - 1, lane_x=[0.88, 0.12][i % 2], plate_width=int(rng.uniform(150, 180)),
                    color=tuple(int(c) for c in rng.integers(30, 220, 3)), parked=True)
        v._plate = plate  # type: ignore[attr-defined]
        plan.append(v)
    for i in range(fast):
        plate = render_plate(rng, layouts[(i + 1) % len(layouts)])
        dur = int(rng.uniform(0.5, 0.8) * fps)
        start = int(rng.uniform(0.1, 0.85) * (frames - dur))
        v = Vehicle(plate.text, plate.layout, start, start + dur, lane_x=[0.55, 0.3, 0.75][i % 3],
                    plate_width=int(rng.uniform(160, 200)), color=tuple(int(c) for c in rng.integers(30, 220, 3)))
        v._plate = plate  # type: ignore[attr-defined]
        plan.append(v)


def camera_view(frame_index: int, fps: float, width: int, height: int) -> np.ndarray:
    """The 2x3 affine from the scene to what a camera on a moving patrol car sees in that frame: a slow
    zoom between 1.08x and 1.3x (10 s period) and a sideways pan (6 s period, a few pixels a frame at
    1080p) with some vertical sway. Zoom is never below 1 and the pan stays within the zoom's margin,
    so the view never leaves the scene (no blank borders)."""
    t = frame_index / fps
    zoom = 1.08 + 0.22 * (0.5 - 0.5 * np.cos(2 * np.pi * t / 10))
    margin_x, margin_y = (zoom - 1) * width / 2, (zoom - 1) * height / 2
    pan_x = 0.9 * margin_x * np.sin(2 * np.pi * t / 6)
    pan_y = 0.5 * margin_y * np.sin(2 * np.pi * t / 4 + 1.0)
    cx, cy = width / 2 + pan_x, height / 2 + pan_y  # the scene point that lands on the view's centre
    return np.array([[zoom, 0.0, width / 2 - zoom * cx], [0.0, zoom, height / 2 - zoom * cy]], np.float64)


def _view_box(m: np.ndarray, box: tuple[int, int, int, int], width: int, height: int) -> tuple[int, int, int, int] | None:
    """A plate box through the camera's affine; None when it leaves the view (not a readable plate)."""
    x1, y1 = m[0, 0] * box[0] + m[0, 2], m[1, 1] * box[1] + m[1, 2]
    x2, y2 = m[0, 0] * box[2] + m[0, 2], m[1, 1] * box[3] + m[1, 2]
    if x1 < 0 or y1 < 0 or x2 > width or y2 > height:
        return None
    return (int(round(x1)), int(round(y1)), int(round(x2)), int(round(y2)))


def write_traffic_video(path: Path, vehicles: int = 6, seconds: float = 12.0, width: int = 1280,
                        height: int = 720, fps: float = 15.0, seed: int = 1, noise: bool = True,
                        parked: int = 0, fast: int = 0, layouts: tuple[str, ...] | None = None,
                        extra_layouts: tuple[str, ...] = ("us", "mercosur", "br"),
                        moving_camera: bool = False) -> list[Vehicle]:
    """Render the clip and return its ground truth. moving_camera: the camera pans and zooms (see
    camera_view), so the whole frame changes every frame and plate boxes are where the view puts them."""
    rng = np.random.default_rng(seed)
    frames = int(seconds * fps)
    plan = plan_vehicles(rng, vehicles, frames, fps, *([layouts] if layouts else []))
    if parked or fast:
        plan_extra(rng, plan, frames, fps, parked, fast, extra_layouts)
    bg = road_background(rng, width, height)
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    if not writer.isOpened():
        raise RuntimeError(f"cannot write video {path}")
    scale_w = width / 1280
    for f in range(frames):
        frame = bg.copy()
        # Far vehicles first so that near ones cover them.
        active = [v for v in plan if v.start_frame <= f <= v.end_frame]
        active.sort(key=lambda v: -1.0 if v.parked else (f - v.start_frame) / max(1, v.end_frame - v.start_frame))
        for v in active:
            t = 0.45 if v.parked else (f - v.start_frame) / max(1, v.end_frame - v.start_frame)
            # Approaching the camera: moves down and grows.
            cy = height * (0.45 + 0.5 * t)
            cx = width * v.lane_x
            scale = (0.55 + 0.45 * t) * scale_w
            box = _draw_vehicle(frame, v, v._plate, cx, cy, scale)  # type: ignore[attr-defined]
            if box and moving_camera:
                box = _view_box(camera_view(f, fps, width, height), box, width, height)
            if box:
                v.boxes[f] = box
        if moving_camera:
            frame = cv2.warpAffine(frame, camera_view(f, fps, width, height), (width, height),
                                   flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        if noise:
            frame = degrade(np.random.default_rng(seed * 100_003 + f), frame, strength=0.2) if f % 7 == 0 else frame
        writer.write(frame)
    writer.release()
    return plan


def render_still(rng: np.random.Generator, width: int = 1280, height: int = 720,
                 layout: str | None = None) -> tuple[np.ndarray, str, tuple[int, int, int, int]]:
    """One road frame with one vehicle: (BGR frame, plate text, plate box)."""
    frame = road_background(rng, width, height)
    plate = render_plate(rng, layout)
    v = Vehicle(plate.text, plate.layout, 0, 0, lane_x=float(rng.uniform(0.3, 0.7)),
                plate_width=int(rng.uniform(90, 200) * width / 1280),
                color=tuple(int(c) for c in rng.integers(30, 220, 3)))
    box = _draw_vehicle(frame, v, plate, width * v.lane_x, height * rng.uniform(0.55, 0.8), 1.0)
    assert box is not None
    return degrade(rng, frame, strength=0.3), plate.text, box
