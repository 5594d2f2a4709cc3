"""YAML in, a typed and checked Config out.

Every mistake is reported as one line naming the file, the key and what would be valid."""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import types
import typing
from pathlib import Path
from typing import Any, Literal

from alprd.config.mqtt import MqttConfig
from alprd.config.unit import Config
from alprd.errors import ConfigError
from alprd.safe_yaml import load_yaml, shorten_quoted

# Any integer or number setting: far past every sensible value, and inside what the C libraries the
# values reach (SQLite, OpenCV, onnxruntime, threading timeouts) take without overflowing.
INT_LIMIT = 2**31 - 1
FLOAT_LIMIT = 1e9


def _show(value: Any) -> str:
    """A value as an error may quote it: one short line, however long the setting was."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


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
        return build(tp, value, where)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {_show(value)}")
        return value
    if tp is int:
        # A float is refused even when whole (1.0e+26 is not a row count); so is an integer past
        # INT_LIMIT, which would overflow where the setting is used.
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {_show(value)}")
        if abs(value) > INT_LIMIT:
            raise ConfigError(f"{where}: {_show(value)} is out of range; use an integer between {-INT_LIMIT} and {INT_LIMIT}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ConfigError(f"{where}: expected a number, got {_show(value)}")
        if abs(value) > FLOAT_LIMIT:
            raise ConfigError(f"{where}: {_show(value)} is out of range; use a number between -1e9 and 1e9")
        return float(value)
    if tp is str:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {_show(value)}")
        return value
    raise ConfigError(f"{where}: unsupported setting type {tp}")  # pragma: no cover


def build(cls: Any, data: dict[str, Any], where: str) -> Any:
    """A frozen dataclass from a YAML mapping: each value type-checked, an unknown key named with the
    nearest valid one. `where` is the mapping's key path ("" at the top level)."""
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


_build = build  # the name alprd.privacy.policy imports


def _read_yaml(p: Path) -> Any:
    """The file parsed as YAML: regular files only, size and nesting capped, no aliases or duplicate
    keys, and errors that never quote the file's text (alprd.safe_yaml)."""
    return load_yaml(p, what="config")


def load_config(path: str | os.PathLike[str]) -> Config:
    p = Path(path)
    data = _read_yaml(p) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: expected a mapping of settings at the top level")
    if data and not {f.name for f in dataclasses.fields(Config)} & set(map(str, data)):
        # Some other YAML file (a wrong path): its keys are its content, so none is named.
        raise ConfigError(f"{p}: not an alprd config file (none of its {len(data)} top-level keys is a setting "
                          "such as unit_id or cameras)")
    try:
        cfg = build(Config, data, "")
    except ConfigError as e:
        raise ConfigError(f"{p}: {e}") from None
    cfg = dataclasses.replace(cfg, source_file=str(p.resolve()))
    try:
        cfg.validate(p.resolve().parent)
    except ConfigError as e:
        raise ConfigError(f"{p}: {shorten_quoted(str(e))}") from None
    return resolve_paths(cfg, p.resolve().parent)


def resolve_paths(cfg: Config, base: Path) -> Config:
    """Relative file paths in a config are relative to the config file, not the working directory."""

    def rel(s: str) -> str:
        return str((base / s).resolve()) if s and not os.path.isabs(s) else s

    cams = tuple(
        dataclasses.replace(c, source=rel(c.source)) if c.is_path_source() else c for c in cfg.cameras
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
