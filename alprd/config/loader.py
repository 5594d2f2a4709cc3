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
# The detector's input width (models.detector_input_width and the tools' --input-width): the
# network wants multiples of 32, and outside this range it is either blind or slower than a frame.
INPUT_WIDTH_RULE = "a multiple of 32 between 160 and 2048"


def is_input_width(width: int) -> bool:
    return width % 32 == 0 and 160 <= width <= 2048


@dataclass(frozen=True)
class MotionConfig:
    """Motion gating: the detector runs only on frames (and parts of frames) where something moved."""

    enabled: bool = True
    threshold: int = 18  # grey-level change (0-255) of a low-resolution pixel that counts as motion
    min_area: float = 0.0004  # fraction of the ROI that must change; below it the frame is static
    hold_frames: int = 3  # frames still analysed after motion stops (a vehicle slowing to a halt)
    keyframe_s: float = 2.0  # analyse the whole frame at least this often even when static (0: never)
    regions: bool = True  # detect only around what moved (the full frame on lighting changes)


@dataclass(frozen=True)
class TrackingConfig:
    """One read event per vehicle pass (see README, "Tracking, formats and hotlist")."""

    enabled: bool = True  # false: every confident frame read is its own event (no voting)
    max_missed_s: float = 1.0  # a track ends when not seen this long (video time for files)
    max_missed_frames: int = 0  # ... or this many frames; 0: time only
    parked_missed_s: float = 15.0  # a parked plate hidden by traffic keeps its track this long; 0: off
    min_iou: float = 0.1
    first_read_min_frames: int = 2  # reads agreeing with the vote before the first read goes out
    first_read_min_confidence: float = 0.7  # and the vote's weakest character at least this
    update: Literal["always", "on_change", "never"] = "on_change"
    update_min_gain: float = 0.1  # on_change: a confidence change this big counts as a change
    end_read_min_confidence: float = 0.5  # floor for a track that never got confident
    max_observations: int = 60
    # The same plate read again by this camera within this many seconds of its pass's last sighting
    # is that pass, not a new one (a track broken by occlusion, a missed stretch, a parked car);
    # it gets no event of its own. 0: off.
    repeat_window_s: float = 10.0


@dataclass(frozen=True)
class FormatsConfig:
    presets: tuple[str, ...] = ("us", "br", "eu")  # empty list and no custom: any text passes
    custom: tuple[str, ...] = ()  # regexes over the plate without spaces or dashes
    fix_confusables: bool = True
    max_fixes: int = 1  # two look-alikes in one read are left to the vote over frames
    reject_unmatched: bool = True  # false: publish anyway, with "format": null


@dataclass(frozen=True)
class HotlistConfig:
    path: str = ""  # CSV or YAML; empty: no hotlist
    max_edits: int = 1
    confusables: bool = True
    reload_check_s: float = 2.0  # how often the file's mtime is checked


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


@dataclass(frozen=True)
class ModelsConfig:
    dir: str = ""  # empty: the models shipped with alprd
    detector: str = "plate_detector"
    ocr: str = "plate_ocr"
    detector_input_width: int = 640
    detection_threshold: float = 0.4
    detector_recheck_above: float = 0.2  # boxes scored from here to detection_threshold get a second look; 0: off
    verifier: str = "plate_verifier"  # the manifest's plate verifier; empty: none
    detector_verify_below: float = 0.6  # boxes scored under this are shown to the verifier; 0: off
    min_read_confidence: float = 0.5
    min_plate_chars: int = 3
    reread_below: float = 0.95  # second look (recognizer.REREAD_BOXES) under this mean char confidence; 0: off
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
    mode: Literal["full", "hits_only", "pseudonymous"] = "full"  # minimisation of non-hit reads for this broker
    name: str = ""  # destinations: required and unique; the primary mqtt section is "primary"


@dataclass(frozen=True)
class SpoolConfig:
    path: str = "alprd-spool.db"
    max_rows: int = 500_000


@dataclass(frozen=True)
class RetentionConfig:
    """How long data may stay on the unit, in hours; 0 = the policy's cap."""

    reads_h: float = 0.0  # non-hit reads not yet delivered
    hits_h: float = 0.0
    crops_h: float = 0.0  # plate crops inside spooled reads (stripped, the read stays)
    spool_h: float = 0.0  # any spooled message


@dataclass(frozen=True)
class PrivacyConfig:
    key_file: str = ""  # empty: alprd-unit.key next to the spool (created 0600 on first start)
    audit_log: str = ""  # empty: audit.jsonl next to the spool
    checkpoint_interval_s: float = 300.0  # signed audit checkpoints to <prefix>/<unit>/audit
    purge_interval_s: float = 300.0
    audit_batch_s: float = 60.0  # one "published" audit entry per destination per window
    audit_batch_n: int = 1000


@dataclass(frozen=True)
class LoggingConfig:
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"


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


@dataclass(frozen=True)
class LocationConfig:
    """A pole unit's fixed position, put on every read."""

    lat: float
    lon: float
    heading: float | None = None  # the camera's viewing direction, degrees from true north


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

    def camera_settings(self, cam: CameraConfig) -> tuple[TrackingConfig, FormatsConfig, HotlistConfig]:
        """A camera's own tracking, formats and hotlist sections, or the unit-wide ones."""
        return cam.tracking or self.tracking, cam.formats or self.formats, cam.hotlist or self.hotlist

    def mqtt_password(self, dest: MqttConfig | None = None) -> str:
        m = dest or self.mqtt
        if m.password_env:
            return os.environ.get(m.password_env, "")
        return m.password


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
    cams = tuple(dataclasses.replace(c, hotlist=dataclasses.replace(c.hotlist, path=rel(c.hotlist.path)))
                 if c.hotlist else c for c in cams)
    def rel_tls(m: MqttConfig) -> MqttConfig:
        tls = m.tls
        if tls:
            tls = dataclasses.replace(tls, ca_file=rel(tls.ca_file), cert_file=rel(tls.cert_file),
                                      key_file=rel(tls.key_file))
        return dataclasses.replace(m, tls=tls)

    return dataclasses.replace(
        cfg,
        cameras=cams,
        models=dataclasses.replace(cfg.models, dir=rel(cfg.models.dir)),
        mqtt=rel_tls(cfg.mqtt),
        spool=dataclasses.replace(cfg.spool, path=rel(cfg.spool.path)),
        policy=rel(cfg.policy),
        destinations=tuple(rel_tls(d) for d in cfg.destinations),
        privacy=dataclasses.replace(cfg.privacy, key_file=rel(cfg.privacy.key_file),
                                    audit_log=rel(cfg.privacy.audit_log)),
        gps=dataclasses.replace(cfg.gps, log=rel(cfg.gps.log)) if cfg.gps else None,
        hotlist=dataclasses.replace(cfg.hotlist, path=rel(cfg.hotlist.path)),
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
    if not is_input_width(cfg.models.detector_input_width):
        raise ConfigError(f"models.detector_input_width: {cfg.models.detector_input_width} must be {INPUT_WIDTH_RULE}")
    for key in ("detection_threshold", "detector_recheck_above", "detector_verify_below", "min_read_confidence",
                "reread_below"):
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
    _validate_privacy(cfg, base)
    for i, c in enumerate(cfg.cameras):
        _validate_camera_gating(c, f"cameras[{i}]")
    _validate_location(cfg, base)
    _validate_reads(cfg, base)


def _validate_privacy(cfg: Config, base: Path) -> None:
    names = {"primary"}
    for i, d in enumerate(cfg.destinations):
        where = f"destinations[{i}]"
        if not d.name or any(ch in d.name for ch in "/#+ ") or d.name in names:
            raise ConfigError(f"{where}.name: {d.name!r} must be a unique name without spaces, '/', '#' or '+' "
                              "(and not 'primary')")
        names.add(d.name)
        if not 1 <= d.port <= 65535:
            raise ConfigError(f"{where}.port: {d.port} is not a TCP port (1-65535)")
        if d.max_inflight < 1:
            raise ConfigError(f"{where}.max_inflight: {d.max_inflight} must be at least 1")
        if any(ch in d.topic_prefix for ch in "#+") or not d.topic_prefix.strip("/"):
            raise ConfigError(f"{where}.topic_prefix: {d.topic_prefix!r} must be a non-empty topic without '#' or '+'")
        if d.password_env and d.password_env not in os.environ:
            raise ConfigError(f"{where}.password_env: environment variable {d.password_env} is not set")
        for key in ("ca_file", "cert_file", "key_file"):
            value = getattr(d.tls, key) if d.tls else ""
            fp = Path(value) if os.path.isabs(value) else base / value
            if value and (not fp.is_file() or not os.access(fp, os.R_OK)):
                raise ConfigError(f"{where}.tls.{key}: cannot read {fp}; give a readable PEM file")
    for key in ("reads_h", "hits_h", "crops_h", "spool_h"):
        if getattr(cfg.retention, key) < 0:
            raise ConfigError(f"retention.{key}: {getattr(cfg.retention, key)} must be 0 (the policy's cap) or more")
    for key in ("checkpoint_interval_s", "purge_interval_s", "audit_batch_s"):
        if getattr(cfg.privacy, key) <= 0:
            raise ConfigError(f"privacy.{key}: {getattr(cfg.privacy, key)} must be positive")
    if cfg.privacy.audit_batch_n < 1:
        raise ConfigError(f"privacy.audit_batch_n: {cfg.privacy.audit_batch_n} must be at least 1")


def _validate_camera_gating(c: CameraConfig, where: str) -> None:
    if c.roi:
        if len(c.roi) < 3:
            raise ConfigError(f"{where}.roi: a polygon needs at least 3 [x, y] points, got {len(c.roi)}")
        for j, pt in enumerate(c.roi):
            if len(pt) != 2 or not all(0.0 <= v <= 1.0 for v in pt):
                raise ConfigError(f"{where}.roi[{j}]: {list(pt)} must be [x, y] with both between 0 and 1 "
                                  "(fractions of the frame width and height)")
    m = c.motion
    if not 1 <= m.threshold <= 255:
        raise ConfigError(f"{where}.motion.threshold: {m.threshold} must be between 1 and 255")
    if not 0.0 <= m.min_area < 1.0:
        raise ConfigError(f"{where}.motion.min_area: {m.min_area} must be a fraction between 0 and 1")
    if m.hold_frames < 0:
        raise ConfigError(f"{where}.motion.hold_frames: {m.hold_frames} must be 0 or more")
    if m.keyframe_s < 0:
        raise ConfigError(f"{where}.motion.keyframe_s: {m.keyframe_s} must be 0 (never) or more seconds")
    if c.max_lag_ms < 0:
        raise ConfigError(f"{where}.max_lag_ms: {c.max_lag_ms} must be 0 (never skip) or more")


def _validate_location(cfg: Config, base: Path) -> None:
    if cfg.gps and cfg.location:
        raise ConfigError("gps and location: set only one (gps for vehicles, location for fixed units)")
    loc = cfg.location
    if loc:
        if not -90.0 <= loc.lat <= 90.0:
            raise ConfigError(f"location.lat: {loc.lat} must be between -90 and 90")
        if not -180.0 <= loc.lon <= 180.0:
            raise ConfigError(f"location.lon: {loc.lon} must be between -180 and 180")
        if loc.heading is not None and not 0.0 <= loc.heading < 360.0:
            raise ConfigError(f"location.heading: {loc.heading} must be between 0 and 360")
    g = cfg.gps
    if not g:
        return
    if g.source == "serial" and not g.device:
        raise ConfigError("gps.device: required for gps.source serial (e.g. /dev/ttyUSB0)")
    if g.source == "serial" and g.baud not in SERIAL_BAUDS:
        raise ConfigError(f"gps.baud: {g.baud} is not a serial speed; use one of {', '.join(map(str, SERIAL_BAUDS))}")
    if not 1 <= g.port <= 65535:
        raise ConfigError(f"gps.port: {g.port} is not a TCP port (1-65535)")
    if g.stale_ms < 1:
        raise ConfigError(f"gps.stale_ms: {g.stale_ms} must be at least 1")
    if g.source == "replay":
        if not g.log:
            raise ConfigError("gps.log: required for gps.source replay (an NMEA log file)")
        fp = Path(g.log) if os.path.isabs(g.log) else base / g.log
        if not fp.is_file():
            raise ConfigError(f"gps.log: cannot read {fp}; give an NMEA log file")
        for i, c in enumerate(cfg.cameras):
            src = Path(c.source) if os.path.isabs(c.source) else base / c.source
            if c.enabled and (not _is_path_source(c) or c.kind == "images" or src.is_dir()):
                raise ConfigError(f"cameras[{i}].source: gps.source replay runs in step with recorded video; "
                                  f"{c.source!r} is not a video file")


SERIAL_BAUDS = (4800, 9600, 19200, 38400, 57600, 115200, 230400, 460800)


def _validate_reads(cfg: Config, base: Path) -> None:
    """Tracking, formats and hotlist sections, unit-wide and per camera."""
    from alprd.formats.formats import FormatChecker

    sections = [("", cfg.tracking, cfg.formats, cfg.hotlist)]
    sections += [(f"cameras[{i}].", c.tracking, c.formats, c.hotlist) for i, c in enumerate(cfg.cameras)]
    for pre, tr, fm, hl in sections:
        if tr:
            if tr.max_missed_s <= 0 or tr.max_missed_frames < 0:
                raise ConfigError(f"{pre}tracking.max_missed_s/max_missed_frames: need a positive time and "
                                  f"0 or more frames, got {tr.max_missed_s} / {tr.max_missed_frames}")
            if tr.first_read_min_frames < 1:
                raise ConfigError(f"{pre}tracking.first_read_min_frames: {tr.first_read_min_frames} must be at least 1")
            for key in ("min_iou", "first_read_min_confidence", "end_read_min_confidence", "update_min_gain"):
                v = getattr(tr, key)
                if not 0.0 <= v <= 1.0:
                    raise ConfigError(f"{pre}tracking.{key}: {v} must be between 0 and 1")
            if tr.max_observations < 1:
                raise ConfigError(f"{pre}tracking.max_observations: {tr.max_observations} must be at least 1")
            if tr.repeat_window_s < 0:
                raise ConfigError(f"{pre}tracking.repeat_window_s: {tr.repeat_window_s} must be 0 (off) or more seconds")
        if fm:
            if not 0 <= fm.max_fixes <= 3:
                raise ConfigError(f"{pre}formats.max_fixes: {fm.max_fixes} must be between 0 and 3")
            FormatChecker(fm.presets, fm.custom, where=f"{pre}formats")  # unknown preset, bad regex
        if hl:
            if hl.max_edits not in (0, 1, 2):
                raise ConfigError(f"{pre}hotlist.max_edits: {hl.max_edits} must be 0, 1 or 2")
            if hl.reload_check_s <= 0:
                raise ConfigError(f"{pre}hotlist.reload_check_s: {hl.reload_check_s} must be positive")
            if hl.path:
                fp = Path(hl.path) if os.path.isabs(hl.path) else base / hl.path
                if fp.suffix.lower() not in (".csv", ".yaml", ".yml"):
                    raise ConfigError(f"{pre}hotlist.path: {hl.path} must be a .csv or .yaml file")
