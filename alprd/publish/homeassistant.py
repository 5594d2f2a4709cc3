"""Home Assistant MQTT discovery: the unit as a device, its cameras as entities.

Nothing here publishes a read. Every entity reads a topic the outlet already publishes (its reads
and hits, the status and the stats), through templates, so what Home Assistant can see of a plate is
what that destination's minimisation mode lets out, and the templates take even less: the last-plate
sensor of a pseudonymous destination shows the pseudonym, never `plate`, and a hits_only destination
gets no last-plate sensor at all (its hits are the hit events). Configs are retained and announced
again on every connection and whenever Home Assistant's birth message says `online`.

Keys are Home Assistant's full names, no abbreviations; tests/test_homeassistant.py holds the keys
its discovery schema accepts per component and checks every one published here against them."""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from alprd.config import Config, HomeAssistantConfig
from alprd.publish.mqtt import MqttCommunicator

log = logging.getLogger(__name__)

# A birth message within this long of the last announcement is one Home Assistant already has (the
# configs are retained on this broker); answering each would let anyone on the broker make the unit
# flood it.
REANNOUNCE_MIN_S = 1.0
# Home Assistant's birth payload is "online"; anything much longer is not one.
MAX_BIRTH_BYTES = 64

_OBJECT_ID_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")

# The availability of every entity: the unit's retained status (online: true while it runs; the
# shutdown status and the MQTT last will both carry online: false).
AVAILABLE, NOT_AVAILABLE = "online", "offline"
AVAILABILITY_TEMPLATE = "{{ 'online' if value_json.get('online') else 'offline' }}"

# Read fields a last-plate sensor carries as attributes: never the plate, its per-character detail or
# the crop, in any mode (the plate, where the mode allows it, is the state itself).
_READ_ATTRIBUTES = ("read_id", "camera", "confidence", "timestamp", "event", "format")
_HIT_ATTRIBUTES = ("hit_id", "read_id", "camera", "plate", "reason", "priority", "timestamp")


@dataclass(frozen=True)
class Entity:
    component: str  # sensor, event
    object_id: str
    config: dict[str, Any]


def safe_id(text: str) -> str:
    """`text` as a discovery topic level; a short hash keeps two ids apart that differ only in the
    characters replaced (cameras "a.b" and "a_b")."""
    safe = _OBJECT_ID_UNSAFE.sub("_", text)
    return safe if safe == text else f"{safe}_{hashlib.sha256(text.encode()).hexdigest()[:6]}"


def node_id(ha: HomeAssistantConfig, unit_id: str, outlet: str) -> str:
    if ha.node_id:
        return ha.node_id
    return safe_id(f"alprd_{unit_id}" + ("" if outlet == "primary" else f"_{outlet}"))


def _attributes_template(fields: Iterable[str], extra: str = "") -> str:
    pairs = ", ".join(f"'{f}': value_json.get('{f}')" for f in fields)
    return "{{ {" + pairs + extra + "} | tojson }}"


def last_plate_template(mode: str) -> str:
    """The sensor's state from a read payload, by the destination's mode (hits_only has no sensor)."""
    if mode == "full":
        return "{{ value_json.get('plate', '') }}"
    # Pseudonymous: a non-hit read carries plate_hmac instead of the plate; a read that matched the
    # hotlist carries the plate (hits always do), and the sensor still shows only that it was a hit.
    return "{{ value_json.get('plate_hmac') or 'hit' }}"


def entities(unit_id: str, cameras: Iterable[str], comm: MqttCommunicator, mode: str, ha: HomeAssistantConfig,
             version: str, outlet: str = "primary") -> list[Entity]:
    """Every entity this outlet announces: per camera, its last plate (not for hits_only), its hotlist
    hits, its state and its frame rate."""
    node = node_id(ha, unit_id, outlet)
    common: dict[str, Any] = {
        "availability": [{"topic": comm.status_topic, "value_template": AVAILABILITY_TEMPLATE,
                          "payload_available": AVAILABLE, "payload_not_available": NOT_AVAILABLE}],
        "device": {"identifiers": [node], "name": unit_id if outlet == "primary" else f"{unit_id} ({outlet})",
                   "manufacturer": "alprd", "model": "alprd", "sw_version": version},
        "origin": {"name": "alprd", "sw_version": version},
        "qos": 1,
    }
    out: list[Entity] = []

    def add(component: str, cam: str, what: str, **config: Any) -> None:
        object_id = f"{safe_id(cam)}_{what}"
        out.append(Entity(component, object_id, {**config, "unique_id": f"{node}_{object_id}", **common}))

    for cam in cameras:
        key = json.dumps(cam)  # a quoted string literal, the same in JSON and Jinja
        if mode != "hits_only":
            extra = ", 'hit': 'hit' in value_json"
            extra += ", 'plate_hmac_day': value_json.get('plate_hmac_day')" if mode == "pseudonymous" else ""
            add("sensor", cam, "last_plate", name=f"{cam} last plate", icon="mdi:car",
                state_topic=comm.topic(cam, "read"), value_template=last_plate_template(mode),
                json_attributes_topic=comm.topic(cam, "read"),
                json_attributes_template=_attributes_template(_READ_ATTRIBUTES, extra))
        add("event", cam, "hit", name=f"{cam} hotlist hit", icon="mdi:alert", event_types=["hit"],
            state_topic=comm.topic(cam, "hit"),
            value_template=_attributes_template(_HIT_ATTRIBUTES, ", 'event_type': 'hit'"))
        add("sensor", cam, "state", name=f"{cam} state", icon="mdi:cctv", entity_category="diagnostic",
            state_topic=comm.status_topic,
            value_template="{{ value_json.get('cameras', {}).get(" + key + ", {}).get('state', 'offline') }}")
        add("sensor", cam, "fps", name=f"{cam} fps", icon="mdi:speedometer", entity_category="diagnostic",
            state_topic=comm.topic("stats"), unit_of_measurement="fps", state_class="measurement",
            suggested_display_precision=1,
            value_template="{{ value_json.get('fps', {}).get(" + key + ", 0) }}")
    return out


def config_topic(ha: HomeAssistantConfig, component: str, node: str, object_id: str) -> str:
    return f"{ha.discovery_prefix.strip('/')}/{component}/{node}/{object_id}/config"


class Discovery:
    """One outlet's announcements: sent on every connection and on Home Assistant's birth message."""

    def __init__(self, comm: MqttCommunicator, ha: HomeAssistantConfig, unit_id: str, cameras: Iterable[str],
                 mode: str, version: str, outlet: str = "primary"):
        self.comm, self.ha = comm, ha
        self.node = node_id(ha, unit_id, outlet)
        self.entities = entities(unit_id, cameras, comm, mode, ha, version, outlet)
        # A hits_only destination must not keep a last-plate sensor announced while it was in another
        # mode: its retained config is cleared (an empty retained message removes the entity).
        self.removed = [config_topic(ha, "sensor", self.node, f"{safe_id(c)}_last_plate")
                        for c in cameras] if mode == "hits_only" else []
        self.birth_topic = ha.status_topic or f"{ha.discovery_prefix.strip('/')}/status"
        self.announcements = 0
        self._last = float("-inf")

    def attach(self) -> Discovery:
        self.comm.on_connected(self.announce)
        self.comm.subscribe(self.birth_topic, self._on_birth)
        log.info("%s: Home Assistant discovery of %d entities under %s/<component>/%s/", self.comm.tag,
                 len(self.entities), self.ha.discovery_prefix.strip("/"), self.node)
        return self

    def messages(self) -> list[tuple[str, bytes]]:
        """(topic, payload) of every config this outlet announces, and the removals."""
        out = [(config_topic(self.ha, e.component, self.node, e.object_id), json.dumps(e.config).encode())
               for e in self.entities]
        return out + [(t, b"") for t in self.removed]

    def announce(self) -> None:
        for topic, payload in self.messages():
            self.comm.publish_unspooled(topic, payload, qos=1, retain=True)
        self._last = time.monotonic()
        self.announcements += 1

    def _on_birth(self, payload: bytes) -> None:
        if len(payload) > MAX_BIRTH_BYTES or payload.strip() != b"online":
            return
        if time.monotonic() - self._last < REANNOUNCE_MIN_S:
            return
        log.debug("%s: Home Assistant came online; announcing %d entities", self.comm.tag, len(self.entities))
        self.announce()


def attach_discovery(outlets: Iterable[Any], cfg: Config, version: str) -> list[Discovery]:
    """Discovery on every outlet whose broker has `homeassistant.enabled`; `outlets` are the daemon's
    (each with `comm`, `name` and `mode`)."""
    cameras = [c.id for c in cfg.cameras if c.enabled]
    return [Discovery(o.comm, o.comm.cfg.homeassistant, cfg.unit_id, cameras, o.mode, version, o.name).attach()
            for o in outlets if o.comm.cfg.homeassistant.enabled]
