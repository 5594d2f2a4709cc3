"""Home Assistant MQTT discovery on one broker: `mqtt.homeassistant` or `destinations[].homeassistant`.

Off unless asked for: the entities it announces read the topics that broker already gets, in its own
minimisation mode (docs/homeassistant.md)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from alprd.errors import ConfigError

# What Home Assistant accepts as the node id in <prefix>/<component>/<node_id>/<object_id>/config.
NODE_ID_RE = re.compile(r"[A-Za-z0-9_-]+")


@dataclass(frozen=True)
class HomeAssistantConfig:
    enabled: bool = False
    discovery_prefix: str = "homeassistant"  # Home Assistant's MQTT discovery prefix
    node_id: str = ""  # empty: alprd_<unit_id>, and _<name> for a destination other than the primary
    status_topic: str = ""  # Home Assistant's birth topic; empty: <discovery_prefix>/status

    def validate(self, where: str) -> None:
        if not self.discovery_prefix.strip("/") or any(ch in self.discovery_prefix for ch in "#+ "):
            raise ConfigError(f"{where}.discovery_prefix: {self.discovery_prefix!r} must be a non-empty topic "
                              "without '#', '+' or spaces (Home Assistant's default is homeassistant)")
        if self.node_id and not NODE_ID_RE.fullmatch(self.node_id):
            raise ConfigError(f"{where}.node_id: {self.node_id!r} may hold only letters, digits, '_' and '-' "
                              "(what Home Assistant accepts in a discovery topic)")
        if any(ch in self.status_topic for ch in "#+"):
            raise ConfigError(f"{where}.status_topic: {self.status_topic!r} must be a topic without '#' or '+'")
