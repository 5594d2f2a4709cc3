"""One camera: where its frames come from, the region and motion gate in front of the detector,
and its own read settings when they differ from the unit's."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from alprd.config.reads import FormatsConfig, HotlistConfig, TrackingConfig
from alprd.errors import ConfigError

SOURCE_KINDS = ("auto", "file", "images", "rtsp", "http", "usb")


@dataclass(frozen=True)
class MotionConfig:
    """Motion gating: the detector runs only on frames (and parts of frames) where something moved."""

    enabled: bool = True
    threshold: int = 18  # grey-level change (0-255) of a low-resolution pixel that counts as motion
    min_area: float = 0.0004  # fraction of the ROI that must change; below it the frame is static
    hold_frames: int = 3  # frames still analysed after motion stops (a vehicle slowing to a halt)
    keyframe_s: float = 2.0  # analyse the whole frame at least this often even when static (0: never)
    regions: bool = True  # detect only around what moved (the full frame on lighting changes)

    def validate(self, where: str) -> None:
        if not 1 <= self.threshold <= 255:
            raise ConfigError(f"{where}.threshold: {self.threshold} must be between 1 and 255")
        if not 0.0 <= self.min_area < 1.0:
            raise ConfigError(f"{where}.min_area: {self.min_area} must be a fraction between 0 and 1")
        if self.hold_frames < 0:
            raise ConfigError(f"{where}.hold_frames: {self.hold_frames} must be 0 or more")
        if self.keyframe_s < 0:
            raise ConfigError(f"{where}.keyframe_s: {self.keyframe_s} must be 0 (never) or more seconds")


@dataclass(frozen=True)
class CameraConfig:
    id: str
    source: str
    kind: Literal["auto", "file", "images", "rtsp", "http", "usb"] = "auto"
    enabled: bool = True
    loop: bool = False  # replay a file source forever (bench/demo)
    reconnect_min_s: float = 1.0
    reconnect_max_s: float = 30.0
    # Region of interest: one polygon of [x, y] points as fractions (0-1) of the frame; empty: all of it.
    # Motion outside it is ignored and plates whose centre lies outside it are not read.
    roi: tuple[tuple[float, ...], ...] = ()
    motion: MotionConfig = MotionConfig()
    # Live sources only: a frame older than this when analysis starts is skipped and counted, if a
    # newer one has been captured (0: never).
    max_lag_ms: int = 500
    tracking: TrackingConfig | None = None  # None: the top-level section
    formats: FormatsConfig | None = None
    hotlist: HotlistConfig | None = None

    def is_path_source(self) -> bool:
        """A file or folder (relative to the config file), not a URL or a device."""
        if self.kind in ("file", "images"):
            return True
        return (self.kind == "auto" and "://" not in self.source and not self.source.startswith("/dev/")
                and not self.source.isdigit())

    def validate_source(self, where: str, earlier_ids: set[str]) -> None:
        """Identity and source; `earlier_ids` are the ids of the cameras listed before this one."""
        if not self.id or any(ch in self.id for ch in "/#+ "):
            raise ConfigError(f"{where}.id: {self.id!r} must be non-empty without spaces, '/', '#' or '+'")
        if self.id in earlier_ids:
            raise ConfigError(f"{where}.id: duplicate camera id {self.id!r}")
        if not self.source:
            raise ConfigError(f"{where}.source: required (a video file, image folder, rtsp://, http:// URL or /dev/videoN)")
        if self.reconnect_min_s <= 0:
            raise ConfigError(f"{where}.reconnect_min_s: {self.reconnect_min_s} must be positive")
        if self.reconnect_max_s < self.reconnect_min_s:
            raise ConfigError(f"{where}.reconnect_max_s: {self.reconnect_max_s} must be at least reconnect_min_s "
                              f"({self.reconnect_min_s})")

    def validate_gating(self, where: str) -> None:
        """The region of interest, the motion gate and the lag limit."""
        if self.roi:
            if len(self.roi) < 3:
                raise ConfigError(f"{where}.roi: a polygon needs at least 3 [x, y] points, got {len(self.roi)}")
            for j, pt in enumerate(self.roi):
                if len(pt) != 2 or not all(0.0 <= v <= 1.0 for v in pt):
                    raise ConfigError(f"{where}.roi[{j}]: {list(pt)} must be [x, y] with both between 0 and 1 "
                                      "(fractions of the frame width and height)")
        self.motion.validate(f"{where}.motion")
        if self.max_lag_ms < 0:
            raise ConfigError(f"{where}.max_lag_ms: {self.max_lag_ms} must be 0 (never skip) or more")
