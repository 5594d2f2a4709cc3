"""Where the reads were made: a vehicle unit's GPS receiver, or a pole unit's fixed position."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from alprd.config.cameras import CameraConfig
from alprd.errors import ConfigError

SERIAL_BAUDS = (4800, 9600, 19200, 38400, 57600, 115200, 230400, 460800)


@dataclass(frozen=True)
class GpsConfig:
    """Where a vehicle unit's position comes from; every read carries the fix valid at its frame."""

    source: Literal["serial", "gpsd", "replay"]
    device: str = ""  # serial: /dev/ttyUSB0, /dev/ttyACM0, ...
    baud: int = 9600
    host: str = "127.0.0.1"  # gpsd
    port: int = 2947
    log: str = ""  # replay: NMEA log file, relative to the config file
    offset_s: float = 0.0  # replay: log time at video time 0, after the log's first fix
    stale_ms: int = 2000  # a fix older than this at the frame's time is marked stale
    reconnect_max_s: float = 30.0

    def validate(self, where: str, base: Path, cameras: tuple[CameraConfig, ...]) -> None:
        """`cameras`: a replayed log runs in step with recorded video, so every camera must play a file."""
        if self.source == "serial" and not self.device:
            raise ConfigError(f"{where}.device: required for {where}.source serial (e.g. /dev/ttyUSB0)")
        if self.source == "serial" and self.baud not in SERIAL_BAUDS:
            raise ConfigError(f"{where}.baud: {self.baud} is not a serial speed; use one of {', '.join(map(str, SERIAL_BAUDS))}")
        if not 1 <= self.port <= 65535:
            raise ConfigError(f"{where}.port: {self.port} is not a TCP port (1-65535)")
        if self.stale_ms < 1:
            raise ConfigError(f"{where}.stale_ms: {self.stale_ms} must be at least 1")
        if self.source == "replay":
            if not self.log:
                raise ConfigError(f"{where}.log: required for {where}.source replay (an NMEA log file)")
            fp = Path(self.log) if os.path.isabs(self.log) else base / self.log
            if not fp.is_file():
                raise ConfigError(f"{where}.log: cannot read {fp}; give an NMEA log file")
            for i, c in enumerate(cameras):
                src = Path(c.source) if os.path.isabs(c.source) else base / c.source
                if c.enabled and (not c.is_path_source() or c.kind == "images" or src.is_dir()):
                    raise ConfigError(f"cameras[{i}].source: {where}.source replay runs in step with recorded video; "
                                      f"{c.source!r} is not a video file")


@dataclass(frozen=True)
class LocationConfig:
    """A pole unit's fixed position, put on every read."""

    lat: float
    lon: float
    heading: float | None = None  # the camera's viewing direction, degrees from true north

    def validate(self, where: str) -> None:
        if not -90.0 <= self.lat <= 90.0:
            raise ConfigError(f"{where}.lat: {self.lat} must be between -90 and 90")
        if not -180.0 <= self.lon <= 180.0:
            raise ConfigError(f"{where}.lon: {self.lon} must be between -180 and 180")
        if self.heading is not None and not 0.0 <= self.heading < 360.0:
            raise ConfigError(f"{where}.heading: {self.heading} must be between 0 and 360")
