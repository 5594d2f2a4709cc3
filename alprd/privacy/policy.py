"""The agency's usage and privacy policy, and the check that a config keeps to it.

The policy is a separate file (config `policy:`), so the people who sign it off need not touch the
unit's config, and its sha256 is in the status message and the audit log. A config that breaks it
does not start: one line names the policy file, the config key, the value and what the policy allows."""

from __future__ import annotations

import dataclasses
import hashlib
import ipaddress
import json
import os
import re
import ssl
from dataclasses import dataclass
from pathlib import Path

from alprd.config import Config, MqttConfig, RetentionConfig, _build
from alprd.errors import ConfigError
from alprd.privacy.minimise import MODES
from alprd.safe_yaml import MAX_CONFIG_BYTES, parse_yaml, read_regular_file

HOUR_MS = 3_600_000
BUILTIN_CAP_H = 720.0  # 30 days: the built-in default, used only without a policy file


@dataclass(frozen=True)
class Custodian:
    name: str = ""
    contact: str = ""


@dataclass(frozen=True)
class AllowedDestination:
    host: str
    port: int = 8883
    modes: tuple[str, ...] = MODES
    include_crop: bool = False
    ca_sha256: str = ""  # sha256 of the CA certificate (DER) that mqtt.tls.ca_file must hold
    cert_sha256: str = ""  # sha256 of the certificate (DER) the broker must present at connect
    description: str = ""


@dataclass(frozen=True)
class RetentionCaps:
    """Hours. The config may ask for less, never more."""

    reads_h: float = 72.0
    hits_h: float = 720.0
    crops_h: float = 24.0
    spool_h: float = 168.0


@dataclass(frozen=True)
class Policy:
    custodian: Custodian = Custodian()
    purposes: tuple[str, ...] = ()
    destinations: tuple[AllowedDestination, ...] = ()
    retention: RetentionCaps = RetentionCaps()
    modes: tuple[str, ...] = MODES
    any_destination: bool = False  # only the built-in default; a policy file always lists its brokers


BUILTIN = Policy(purposes=("any",), any_destination=True,
                 retention=RetentionCaps(BUILTIN_CAP_H, BUILTIN_CAP_H, BUILTIN_CAP_H, BUILTIN_CAP_H))


@dataclass(frozen=True)
class Destination:
    name: str
    key: str  # where it is in the config: "mqtt" or "destinations[i]"
    mqtt: MqttConfig
    cert_sha256: str  # pinned at connect; empty: no pin


@dataclass(frozen=True)
class Enforced:
    """A config that keeps to its policy, with what follows from both."""

    policy: Policy
    source: str  # the policy file, or "built-in"
    sha256: str  # of the policy file's bytes; "" for the built-in default
    config_sha256: str
    retention: RetentionConfig  # effective, hours
    destinations: tuple[Destination, ...]

    def warning(self) -> str:
        """Said at every start of a unit without a policy file."""
        if self.source != "built-in":
            return ""
        # Not the config's path: a path can hold what must not reach a log.
        return ("the config has no policy: key, so the built-in default policy applies (any "
                f"broker, every mode, crops allowed, {BUILTIN_CAP_H:g}-hour retention caps); set policy: "
                "to enforce the agency's policy")

    def retention_ms(self) -> dict[str, int]:
        return {k: int(getattr(self.retention, k) * HOUR_MS) for k in ("reads_h", "hits_h", "crops_h", "spool_h")}


def file_sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _fingerprint(value: str) -> str:
    return value.replace(":", "").strip().lower()


def load_policy(path: str | Path) -> tuple[Policy, str]:
    p = Path(path)
    try:
        raw = read_regular_file(p, what="policy", max_bytes=MAX_CONFIG_BYTES)
        data = parse_yaml(raw, source=p, what="policy")
    except ConfigError as e:
        raise ConfigError(f"{e} (config key policy:)") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: expected a mapping at the top level")
    policy_keys = {f.name for f in dataclasses.fields(Policy)} - {"any_destination"}
    if data and not policy_keys & set(map(str, data)):
        # Not the user's policy with a typo but some other file (a wrong path, a symlink to a
        # system file): its keys are its content, so none is named.
        raise ConfigError(f"{p}: not a policy file (none of its {len(data)} top-level keys is one of "
                          f"{', '.join(sorted(policy_keys))}) (config key policy:)")
    if "any_destination" in data:
        raise ConfigError(f"{p}: any_destination: a policy file lists its destinations")
    try:
        pol = _build(Policy, data, "")
    except ConfigError as e:
        raise ConfigError(f"{p}: {e}") from None
    for i, mode in enumerate(pol.modes):
        if mode not in MODES:
            raise ConfigError(f"{p}: modes[{i}]: {mode!r} is not a mode; use {', '.join(MODES)}")
    for i, d in enumerate(pol.destinations):
        for mode in d.modes:
            if mode not in MODES:
                raise ConfigError(f"{p}: destinations[{i}].modes: {mode!r} is not a mode; use {', '.join(MODES)}")
        for key in ("ca_sha256", "cert_sha256"):
            v = _fingerprint(getattr(d, key))
            if v and not re.fullmatch(r"[0-9a-f]{64}", v):
                raise ConfigError(f"{p}: destinations[{i}].{key}: expected 64 hex digits (sha256), got {getattr(d, key)!r}")
    for key in ("reads_h", "hits_h", "crops_h", "spool_h"):
        if getattr(pol.retention, key) < 0:
            raise ConfigError(f"{p}: retention.{key}: must be 0 or more hours")
    return pol, hashlib.sha256(raw).hexdigest()


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def ca_fingerprint(path: str) -> str:
    """sha256 of the first certificate (DER) in a PEM file: what `openssl x509 -noout -fingerprint
    -sha256 -in FILE` prints, stable across PEM re-wrapping."""
    text = read_regular_file(path, what="CA certificate", max_bytes=MAX_CONFIG_BYTES).decode("ascii", "replace")
    m = re.search(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----", text, re.S)
    if not m:
        raise ConfigError(f"{path}: no PEM certificate in the file")
    try:
        der = ssl.PEM_cert_to_DER_cert(m.group(0))
    except ValueError:  # broken base64 between the markers
        raise ConfigError(f"{path}: the PEM certificate in the file is not valid base64") from None
    return hashlib.sha256(der).hexdigest()


def enforce(cfg: Config) -> Enforced:
    """The config checked against its policy; ConfigError (one line) on the first breach."""
    if cfg.policy:
        pol, digest = load_policy(cfg.policy)
        source = cfg.policy
    else:
        pol, source = BUILTIN, "built-in"
        digest = hashlib.sha256(json.dumps(dataclasses.asdict(BUILTIN), sort_keys=True).encode()).hexdigest()

    def breach(key: str, value: object, why: str) -> ConfigError:
        return ConfigError(f"policy {source}: config {key} = {value} breaks the policy: {why}")

    for key in ("reads_h", "hits_h", "crops_h", "spool_h"):
        want, cap = getattr(cfg.retention, key), getattr(pol.retention, key)
        if want > cap:
            raise breach(f"retention.{key}", want, f"the policy's cap is retention.{key} = {cap} hours")
    retention = RetentionConfig(**{k: (getattr(cfg.retention, k) or getattr(pol.retention, k))
                                   for k in ("reads_h", "hits_h", "crops_h", "spool_h")})
    dests = []
    for key, m in [("mqtt", dataclasses.replace(cfg.mqtt, name="primary"))] + [
            (f"destinations[{i}]", d) for i, d in enumerate(cfg.destinations)]:
        addr = f"{m.host}:{m.port}"
        if m.mode not in pol.modes:
            raise breach(f"{key}.mode", m.mode, f"allowed modes are {', '.join(pol.modes) or 'none'}")
        if m.tls is None and not is_loopback(m.host):
            raise breach(f"{key}.tls", "off", f"broker {addr} is not on this machine, so TLS is required "
                         f"(set {key}.tls.ca_file)")
        allowed = next((a for a in pol.destinations if a.host.lower() == m.host.lower() and a.port == m.port), None)
        if allowed is None and not pol.any_destination:
            listed = ", ".join(f"{a.host}:{a.port}" for a in pol.destinations) or "none"
            raise breach(f"{key}.host/port", addr, f"not an allowed destination (allowed: {listed})")
        if allowed is None:
            dests.append(Destination(m.name, key, m, ""))
            continue
        if m.mode not in allowed.modes:
            raise breach(f"{key}.mode", m.mode, f"allowed modes for {addr} are {', '.join(allowed.modes) or 'none'}")
        if m.include_crop and not allowed.include_crop:
            raise breach(f"{key}.include_crop", "true", f"plate crops may not be sent to {addr}")
        if allowed.ca_sha256:
            if m.tls is None or not m.tls.ca_file:
                raise breach(f"{key}.tls.ca_file", "(not set)", f"{addr} must be verified against the CA with "
                             f"sha256 {_fingerprint(allowed.ca_sha256)}")
            got = ca_fingerprint(m.tls.ca_file)
            if got != _fingerprint(allowed.ca_sha256):
                raise breach(f"{key}.tls.ca_file", m.tls.ca_file, f"its certificate's sha256 is {got}, the policy "
                             f"requires {_fingerprint(allowed.ca_sha256)} for {addr}")
        if allowed.cert_sha256 and m.tls is None:
            raise breach(f"{key}.tls", "off", f"{addr} must present the certificate with sha256 "
                         f"{_fingerprint(allowed.cert_sha256)}, which needs TLS")
        dests.append(Destination(m.name, key, m, _fingerprint(allowed.cert_sha256)))
    config_sha = file_sha256(cfg.source_file) if cfg.source_file and os.path.isfile(cfg.source_file) else ""
    return Enforced(pol, source, digest, config_sha, retention, tuple(dests))


def privacy_paths(cfg: Config) -> tuple[Path, Path]:
    """The unit key file and the audit log: by default next to the spool."""
    base = Path(cfg.spool.path).parent
    return (Path(cfg.privacy.key_file) if cfg.privacy.key_file else base / "alprd-unit.key",
            Path(cfg.privacy.audit_log) if cfg.privacy.audit_log else base / "audit.jsonl")


def spool_path(cfg: Config, name: str) -> Path:
    """Each destination has its own spool file, so one broker's outage never holds up another's data."""
    p = Path(cfg.spool.path)
    return p if name == "primary" else p.with_name(f"{p.stem}-{name}{p.suffix or '.db'}")
