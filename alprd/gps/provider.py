"""Location providers: what the pipeline asks for the `gps` object of a read.

- FixedLocation: a pole unit's configured position.
- LiveGps: a serial or gpsd reader; the fix current at the frame's wall-clock time.
- ReplayGps: an NMEA log in step with a recorded video (video time 0 = the log's first fix, plus
  `gps.offset_s`), so a recorded drive is tagged as the unit would have tagged it live."""

from __future__ import annotations

import threading
from typing import Any, Protocol

from alprd.config import Config, GpsConfig, LocationConfig
from alprd.geometry import Frame
from alprd.gps.fix import fix_dict
from alprd.gps.readers import GpsdReader, LiveReader, NmeaLog, SerialNmeaReader


class LocationProvider(Protocol):
    def observe(self, frame: Frame) -> None:
        """Called with each frame before analysis (replay anchors the log to the video's clock)."""

    def fix_at(self, camera: str, timestamp_ms: int) -> dict[str, Any]:
        """The payload's `gps` object for a frame of `camera` taken at `timestamp_ms`."""

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def stats(self) -> dict[str, Any]: ...


class FixedLocation:
    def __init__(self, loc: LocationConfig):
        self._d: dict[str, Any] = {"fix": "fixed", "lat": loc.lat, "lon": loc.lon, "source": "config"}
        if loc.heading is not None:
            self._d["heading"] = loc.heading

    def observe(self, frame: Frame) -> None:
        pass

    def fix_at(self, camera: str, timestamp_ms: int) -> dict[str, Any]:
        return dict(self._d)

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass

    def stats(self) -> dict[str, Any]:
        return {"source": "config"}


class LiveGps:
    def __init__(self, reader: LiveReader, stale_ms: int):
        self.reader, self.stale_ms = reader, stale_ms

    def observe(self, frame: Frame) -> None:
        pass

    def fix_at(self, camera: str, timestamp_ms: int) -> dict[str, Any]:
        return fix_dict(self.reader.history.at(timestamp_ms), timestamp_ms, self.stale_ms, self.reader.name)

    def start(self) -> None:
        self.reader.start()

    def stop(self) -> None:
        self.reader.stop()

    def stats(self) -> dict[str, Any]:
        return {"source": self.reader.name, **self.reader.stats()}


class ReplayGps:
    def __init__(self, log: NmeaLog, stale_ms: int, offset_s: float = 0.0):
        self.log, self.stale_ms = log, stale_ms
        self.offset_ms = int(round(offset_s * 1000))
        self._anchor: dict[str, int] = {}  # camera -> unit timestamp of video time 0
        self._lock = threading.Lock()

    def observe(self, frame: Frame) -> None:
        if frame.video_ms is None:
            return
        start = frame.timestamp_ms - frame.video_ms
        with self._lock:
            # A looping file source starts its clock again: re-anchor on each new pass.
            if self._anchor.get(frame.camera) is None or frame.video_ms == 0:
                self._anchor[frame.camera] = start

    def log_time(self, camera: str, timestamp_ms: int) -> int | None:
        with self._lock:
            anchor = self._anchor.get(camera)
        return None if anchor is None else timestamp_ms - anchor + self.offset_ms

    def fix_at(self, camera: str, timestamp_ms: int) -> dict[str, Any]:
        t = self.log_time(camera, timestamp_ms)
        if t is None:  # a frame without a video clock: its place in the log is unknown
            return {"fix": "none", "source": "replay"}
        return fix_dict(self.log.history.at(t), t, self.stale_ms, "replay")

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass

    def stats(self) -> dict[str, Any]:
        return {"source": "replay", "log": str(self.log.path), **dict(self.log.counts)}


def make_provider(cfg: Config) -> LocationProvider | None:
    if cfg.location is not None:
        return FixedLocation(cfg.location)
    if cfg.gps is not None:
        return gps_provider(cfg.gps)
    return None


def gps_provider(g: GpsConfig) -> LocationProvider:
    if g.source == "replay":
        return ReplayGps(NmeaLog(g.log), g.stale_ms, g.offset_s)
    if g.source == "serial":
        return LiveGps(SerialNmeaReader(g.device, g.baud, g.reconnect_max_s), g.stale_ms)
    return LiveGps(GpsdReader(g.host, g.port, g.reconnect_max_s), g.stale_ms)
