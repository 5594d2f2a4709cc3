"""The whole unit's configuration, and the order its sections are checked in.

The order is part of the interface: with several mistakes in one file, the first one found is the
one reported, and that has stayed the same since the checks lived in one function."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from alprd.config.cameras import CameraConfig
from alprd.config.gps import GpsConfig, LocationConfig
from alprd.config.models import ModelsConfig
from alprd.config.mqtt import MqttConfig, validate_destinations
from alprd.config.ops import HttpConfig, WatchdogConfig
from alprd.config.reads import FormatsConfig, HotlistConfig, TrackingConfig
from alprd.config.storage import PrivacyConfig, RetentionConfig, SpoolConfig
from alprd.errors import ConfigError


@dataclass(frozen=True)
class LoggingConfig:
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["text", "json"] = "text"  # json: one object a line, for journald and log shippers


@dataclass(frozen=True)
class Config:
    unit_id: str
    cameras: tuple[CameraConfig, ...]
    models: ModelsConfig = ModelsConfig()
    mqtt: MqttConfig = MqttConfig()
    spool: SpoolConfig = SpoolConfig()
    logging: LoggingConfig = LoggingConfig()
    workers: int = 2
    stats_interval_s: float = 30.0
    policy: str = ""  # the privacy policy file; empty: the permissive built-in default, with a warning
    destinations: tuple[MqttConfig, ...] = ()  # further brokers, each with its own spool and mode
    retention: RetentionConfig = RetentionConfig()
    privacy: PrivacyConfig = PrivacyConfig()
    gps: GpsConfig | None = None
    location: LocationConfig | None = None
    source_file: str = ""  # where this config was loaded from
    tracking: TrackingConfig = TrackingConfig()
    formats: FormatsConfig = FormatsConfig()
    hotlist: HotlistConfig = HotlistConfig()
    http: HttpConfig = HttpConfig()
    watchdog: WatchdogConfig = WatchdogConfig()

    def camera_settings(self, cam: CameraConfig) -> tuple[TrackingConfig, FormatsConfig, HotlistConfig]:
        """A camera's own tracking, formats and hotlist sections, or the unit-wide ones."""
        return cam.tracking or self.tracking, cam.formats or self.formats, cam.hotlist or self.hotlist

    def mqtt_password(self, dest: MqttConfig | None = None) -> str:
        m = dest or self.mqtt
        if m.password_env:
            return os.environ.get(m.password_env, "")
        return m.password

    def validate(self, base: Path) -> None:
        """`base`: the config file's folder, which relative paths are relative to."""
        if not self.unit_id.strip() or any(ch in self.unit_id for ch in "/#+ "):
            raise ConfigError(f"unit_id: {self.unit_id!r} must be non-empty without spaces, '/', '#' or '+'")
        if not self.cameras:
            raise ConfigError("cameras: at least one camera is required")
        ids: set[str] = set()
        for i, c in enumerate(self.cameras):
            c.validate_source(f"cameras[{i}]", ids)
            ids.add(c.id)
        self.mqtt.validate_primary("mqtt", base)
        if self.workers < 1 or self.workers > 64:
            raise ConfigError(f"workers: {self.workers} must be between 1 and 64")
        self.models.validate("models")
        self.spool.validate("spool")
        if self.stats_interval_s <= 0:
            raise ConfigError(f"stats_interval_s: {self.stats_interval_s} must be positive")
        validate_destinations(self.destinations, base)
        self.retention.validate("retention")
        self.privacy.validate("privacy")
        for i, c in enumerate(self.cameras):
            c.validate_gating(f"cameras[{i}]")
        self._validate_position(base)
        self._validate_read_settings(base)
        self.http.validate("http")
        self.watchdog.validate("watchdog")

    def _validate_position(self, base: Path) -> None:
        if self.gps and self.location:
            raise ConfigError("gps and location: set only one (gps for vehicles, location for fixed units)")
        if self.location:
            self.location.validate("location")
        if self.gps:
            self.gps.validate("gps", base, self.cameras)

    def _validate_read_settings(self, base: Path) -> None:
        """Tracking, formats and hotlist sections, unit-wide and then each camera's own."""
        sections = [("", self.tracking, self.formats, self.hotlist)]
        sections += [(f"cameras[{i}].", c.tracking, c.formats, c.hotlist) for i, c in enumerate(self.cameras)]
        for pre, tracking, formats, hotlist in sections:
            if tracking:
                tracking.validate(f"{pre}tracking")
            if formats:
                formats.validate(f"{pre}formats")
            if hotlist:
                hotlist.validate(f"{pre}hotlist", base)


def validate(cfg: Config, base: Path) -> None:
    cfg.validate(base)
