"""The unit's configuration: YAML loaded into typed, frozen objects and validated at load.

Every mistake is reported as one line naming the file, the key and what would be valid."""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from alprd.errors import ConfigError

SOURCE_KINDS = ("auto", "file", "images", "rtsp", "http", "usb")


@dataclass(frozen=True)
class CameraConfig:
    id: str
    source: str
    kind: Literal["auto", "file", "images", "rtsp", "http", "usb"] = "auto"
    enabled: bool = True
    loop: bool = False  # replay a file source forever (bench/demo)
    reconnect_min_s: float = 1.0
    reconnect_max_s: float = 30.0


@dataclass(frozen=True)
class ModelsConfig:
    dir: str = ""  # empty: the models shipped with alprd
    detector: str = "plate_detector"
    ocr: str = "plate_ocr"
    detector_input_width: int = 640
    detection_threshold: float = 0.4
    min_read_confidence: float = 0.5
    min_plate_chars: int = 3
    providers: tuple[str, ...] = ("CPUExecutionProvider",)
    intra_op_threads: int = 1


@dataclass(frozen=True)
class TlsConfig:
    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""
    insecure: bool = False  # skip hostname check: only for lab brokers with IP-only certs


@dataclass(frozen=True)
class MqttConfig:
    host: str = "127.0.0.1"
    port: int = 1883
    protocol: Literal["5", "3.1.1"] = "5"
    topic_prefix: str = "alprd"
    client_id: str = ""  # empty: alprd-<unit_id>, stable across restarts
    username: str = ""
    password: str = field(default="", repr=False)
    password_env: str = ""  # name of an environment variable holding the password
    keepalive_s: int = 30
    tls: TlsConfig | None = None
    include_crop: bool = False
    max_inflight: int = 100
    reconnect_max_s: float = 30.0  # ceiling of the reconnect backoff


@dataclass(frozen=True)
class SpoolConfig:
    path: str = "alprd-spool.db"
    max_rows: int = 500_000


@dataclass(frozen=True)
class LoggingConfig:
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"


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
    source_file: str = ""  # where this config was loaded from

    def mqtt_password(self) -> str:
        if self.mqtt.password_env:
            return os.environ.get(self.mqtt.password_env, "")
        return self.mqtt.password


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin in (tuple, list):
        return f"a list of {_type_name(typing.get_args(tp)[0])}"
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp) if a is not type(None))
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false"}.get(tp, str(tp))


def _convert(tp: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            return None
        return _convert(args[0], value, where)
    if origin is Literal:
        allowed = typing.get_args(tp)
        sval = str(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else value
        if sval not in allowed:
            raise ConfigError(f"{where}: {value!r} is not valid; use {_type_name(tp)}")
        return sval
    if origin in (tuple, list):
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected {_type_name(tp)}, got {type(value).__name__}")
        (inner,) = typing.get_args(tp)[:1]
        return tuple(_convert(inner, v, f"{where}[{i}]") for i, v in enumerate(value))
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping of settings, got {type(value).__name__}")
        return _build(tp, value, where)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    raise ConfigError(f"{where}: unsupported setting type {tp}")  # pragma: no cover


def _build(cls: Any, data: dict[str, Any], where: str) -> Any:
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.name != "source_file"}
    kwargs = {}
    for key, value in data.items():
        if key not in fields:
            near = difflib.get_close_matches(str(key), list(fields), n=1)
            hint = f"; did you mean '{near[0]}'?" if near else f"; valid keys: {', '.join(fields)}"
            raise ConfigError(f"{where}.{key}: unknown key{hint}".lstrip("."))
        kwargs[key] = _convert(hints[key], value, f"{where}.{key}".lstrip("."))
    for name, f in fields.items():
        if name not in kwargs and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{where}.{name}: required key is missing".lstrip("."))
    return cls(**kwargs)


def load_config(path: str | os.PathLike[str]) -> Config:
    p = Path(path)
    try:
        text = p.read_text()
    except FileNotFoundError:
        raise ConfigError(f"{p}: config file not found") from None
    except OSError as e:
        raise ConfigError(f"{p}: cannot read config file ({e.strerror})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{p}: not a text file (expected UTF-8 YAML)") from None
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{p}: not valid YAML{at}: {getattr(e, 'problem', e)}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: expected a mapping of settings at the top level")
    try:
        cfg = _build(Config, data, "")
    except ConfigError as e:
        raise ConfigError(f"{p}: {e}") from None
    cfg = dataclasses.replace(cfg, source_file=str(p.resolve()))
    try:
        validate(cfg, p.resolve().parent)
    except ConfigError as e:
        raise ConfigError(f"{p}: {e}") from None
    return resolve_paths(cfg, p.resolve().parent)


def resolve_paths(cfg: Config, base: Path) -> Config:
    """Relative file paths in a config are relative to the config file, not the working directory."""

    def rel(s: str) -> str:
        return str((base / s).resolve()) if s and not os.path.isabs(s) else s

    cams = tuple(
        dataclasses.replace(c, source=rel(c.source)) if _is_path_source(c) else c for c in cfg.cameras
    )
    tls = cfg.mqtt.tls
    if tls:
        tls = dataclasses.replace(tls, ca_file=rel(tls.ca_file), cert_file=rel(tls.cert_file), key_file=rel(tls.key_file))
    return dataclasses.replace(
        cfg,
        cameras=cams,
        models=dataclasses.replace(cfg.models, dir=rel(cfg.models.dir)),
        mqtt=dataclasses.replace(cfg.mqtt, tls=tls),
        spool=dataclasses.replace(cfg.spool, path=rel(cfg.spool.path)),
    )


def _is_path_source(c: CameraConfig) -> bool:
    if c.kind in ("file", "images"):
        return True
    return c.kind == "auto" and "://" not in c.source and not c.source.startswith("/dev/") and not c.source.isdigit()


def validate(cfg: Config, base: Path) -> None:
    if not cfg.unit_id.strip() or any(ch in cfg.unit_id for ch in "/#+ "):
        raise ConfigError(f"unit_id: {cfg.unit_id!r} must be non-empty without spaces, '/', '#' or '+'")
    if not cfg.cameras:
        raise ConfigError("cameras: at least one camera is required")
    seen = set()
    for i, c in enumerate(cfg.cameras):
        if not c.id or any(ch in c.id for ch in "/#+ "):
            raise ConfigError(f"cameras[{i}].id: {c.id!r} must be non-empty without spaces, '/', '#' or '+'")
        if c.id in seen:
            raise ConfigError(f"cameras[{i}].id: duplicate camera id {c.id!r}")
        seen.add(c.id)
        if not c.source:
            raise ConfigError(f"cameras[{i}].source: required (a video file, image folder, rtsp://, http:// URL or /dev/videoN)")
        if c.reconnect_min_s <= 0:
            raise ConfigError(f"cameras[{i}].reconnect_min_s: {c.reconnect_min_s} must be positive")
        if c.reconnect_max_s < c.reconnect_min_s:
            raise ConfigError(f"cameras[{i}].reconnect_max_s: {c.reconnect_max_s} must be at least reconnect_min_s "
                              f"({c.reconnect_min_s})")
    if not 1 <= cfg.mqtt.port <= 65535:
        raise ConfigError(f"mqtt.port: {cfg.mqtt.port} is not a TCP port (1-65535)")
    if not 0.5 <= cfg.mqtt.reconnect_max_s <= 3600:
        raise ConfigError(f"mqtt.reconnect_max_s: {cfg.mqtt.reconnect_max_s} must be between 0.5 and 3600 seconds")
    if not 1 <= cfg.mqtt.keepalive_s <= 65535:
        raise ConfigError(f"mqtt.keepalive_s: {cfg.mqtt.keepalive_s} must be between 1 and 65535")
    if cfg.mqtt.max_inflight < 1:
        raise ConfigError(f"mqtt.max_inflight: {cfg.mqtt.max_inflight} must be at least 1")
    if cfg.mqtt.password and cfg.mqtt.password_env:
        raise ConfigError("mqtt.password and mqtt.password_env: set only one")
    if cfg.mqtt.password_env and cfg.mqtt.password_env not in os.environ:
        raise ConfigError(f"mqtt.password_env: environment variable {cfg.mqtt.password_env} is not set")
    if any(ch in cfg.mqtt.topic_prefix for ch in "#+") or not cfg.mqtt.topic_prefix.strip("/"):
        raise ConfigError(f"mqtt.topic_prefix: {cfg.mqtt.topic_prefix!r} must be a non-empty topic without '#' or '+'")
    tls = cfg.mqtt.tls
    if tls:
        for key in ("ca_file", "cert_file", "key_file"):
            value = getattr(tls, key)
            if value:
                fp = Path(value) if os.path.isabs(value) else base / value
                if not fp.is_file() or not os.access(fp, os.R_OK):
                    raise ConfigError(f"mqtt.tls.{key}: cannot read {fp}; give a readable PEM file")
        if bool(tls.cert_file) != bool(tls.key_file):
            raise ConfigError("mqtt.tls: cert_file and key_file go together; set both or neither")
    if cfg.workers < 1 or cfg.workers > 64:
        raise ConfigError(f"workers: {cfg.workers} must be between 1 and 64")
    if cfg.models.detector_input_width % 32 or not 160 <= cfg.models.detector_input_width <= 2048:
        raise ConfigError(f"models.detector_input_width: {cfg.models.detector_input_width} must be a multiple of 32 between 160 and 2048")
    for key in ("detection_threshold", "min_read_confidence"):
        v = getattr(cfg.models, key)
        if not 0.0 <= v <= 1.0:
            raise ConfigError(f"models.{key}: {v} must be between 0 and 1")
    if cfg.models.intra_op_threads < 0:
        raise ConfigError(f"models.intra_op_threads: {cfg.models.intra_op_threads} must be 0 (onnxruntime's choice) or more")
    if cfg.models.min_plate_chars < 1:
        raise ConfigError(f"models.min_plate_chars: {cfg.models.min_plate_chars} must be at least 1")
    if cfg.spool.max_rows < 100:
        raise ConfigError(f"spool.max_rows: {cfg.spool.max_rows} is too small (at least 100)")
    if cfg.stats_interval_s <= 0:
        raise ConfigError(f"stats_interval_s: {cfg.stats_interval_s} must be positive")
