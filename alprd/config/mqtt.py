"""The brokers reads go to: the primary `mqtt` section and any further `destinations`.

The two are checked apart because they always were: a destination skips the primary's checks on
keepalive, reconnect ceiling and password pairing, and reports its own name first."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from alprd.config.homeassistant import HomeAssistantConfig
from alprd.errors import ConfigError


@dataclass(frozen=True)
class TlsConfig:
    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""
    insecure: bool = False  # skip hostname check: only for lab brokers with IP-only certs

    def validate_files(self, where: str, base: Path) -> None:
        for key in ("ca_file", "cert_file", "key_file"):
            value = getattr(self, key)
            if value:
                fp = Path(value) if os.path.isabs(value) else base / value
                if not fp.is_file() or not os.access(fp, os.R_OK):
                    raise ConfigError(f"{where}.{key}: cannot read {fp}; give a readable PEM file")

    def validate_pair(self, where: str) -> None:
        if bool(self.cert_file) != bool(self.key_file):
            raise ConfigError(f"{where}: cert_file and key_file go together; set both or neither")


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
    homeassistant: HomeAssistantConfig = HomeAssistantConfig()  # discovery on this broker; off by default

    def validate_primary(self, where: str, base: Path) -> None:
        self._validate_port(where)
        if not 0.5 <= self.reconnect_max_s <= 3600:
            raise ConfigError(f"{where}.reconnect_max_s: {self.reconnect_max_s} must be between 0.5 and 3600 seconds")
        if not 1 <= self.keepalive_s <= 65535:
            raise ConfigError(f"{where}.keepalive_s: {self.keepalive_s} must be between 1 and 65535")
        self._validate_max_inflight(where)
        if self.password and self.password_env:
            raise ConfigError(f"{where}.password and {where}.password_env: set only one")
        self._validate_password_env(where)
        self._validate_topic_prefix(where)
        if self.tls:
            self.tls.validate_files(f"{where}.tls", base)
            self.tls.validate_pair(f"{where}.tls")
        self.homeassistant.validate(f"{where}.homeassistant")

    def validate_destination(self, where: str, base: Path) -> None:
        """All but the name, which validate_destinations checks against the others."""
        self._validate_port(where)
        self._validate_max_inflight(where)
        self._validate_topic_prefix(where)
        self._validate_password_env(where)
        if self.tls:
            self.tls.validate_files(f"{where}.tls", base)
        self.homeassistant.validate(f"{where}.homeassistant")

    def _validate_port(self, where: str) -> None:
        if not 1 <= self.port <= 65535:
            raise ConfigError(f"{where}.port: {self.port} is not a TCP port (1-65535)")

    def _validate_max_inflight(self, where: str) -> None:
        if self.max_inflight < 1:
            raise ConfigError(f"{where}.max_inflight: {self.max_inflight} must be at least 1")

    def _validate_password_env(self, where: str) -> None:
        if self.password_env and self.password_env not in os.environ:
            raise ConfigError(f"{where}.password_env: environment variable {self.password_env} is not set")

    def _validate_topic_prefix(self, where: str) -> None:
        if any(ch in self.topic_prefix for ch in "#+") or not self.topic_prefix.strip("/"):
            raise ConfigError(f"{where}.topic_prefix: {self.topic_prefix!r} must be a non-empty topic without '#' or '+'")


def validate_destinations(destinations: tuple[MqttConfig, ...], base: Path) -> None:
    names = {"primary"}
    for i, d in enumerate(destinations):
        where = f"destinations[{i}]"
        if not d.name or any(ch in d.name for ch in "/#+ ") or d.name in names:
            raise ConfigError(f"{where}.name: {d.name!r} must be a unique name without spaces, '/', '#' or '+' "
                              "(and not 'primary')")
        names.add(d.name)
        d.validate_destination(where, base)
