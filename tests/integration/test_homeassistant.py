"""Home Assistant MQTT discovery (issue 30), with real mosquitto brokers and `alprd run`.

The discovery configs a real subscriber sees are checked against the keys Home Assistant's MQTT
discovery schema accepts (HA_KEYS below, from homeassistant/components/mqtt: schemas.py
MQTT_ENTITY_COMMON_SCHEMA and the availability schemas, config.py MQTT_RO_SCHEMA, sensor.py and
event.py), and their templates are rendered with Jinja2's sandbox, as Home Assistant renders them,
over the very messages the daemon published."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import jinja2.sandbox
import paho.mqtt.publish as mqtt_publish
import pytest
from conftest import Subscriber, leaked, write_config
from test_daemon import NO_READS, STATUS, UNIT, camera, make_config, statuses, wait_subscribed

from alprd.config import HomeAssistantConfig, load_config
from alprd.errors import ConfigError
from alprd.publish.homeassistant import REANNOUNCE_MIN_S, Discovery, entities, safe_id
from alprd.publish.mqtt import MqttCommunicator

# --- Home Assistant's discovery schema: the keys each component accepts (full names) -------------

_AVAILABILITY = {"availability", "availability_mode", "availability_template", "availability_topic",
                 "payload_available", "payload_not_available"}
_ENTITY_COMMON = _AVAILABILITY | {"device", "origin", "enabled_by_default", "entity_category", "icon",
                                  "json_attributes_topic", "json_attributes_template", "unique_id"}
_READ_ONLY = {"qos", "encoding", "state_topic", "value_template"}  # MQTT_BASE_SCHEMA + MQTT_RO_SCHEMA
HA_KEYS: dict[str, set[str]] = {
    "sensor": _ENTITY_COMMON | _READ_ONLY | {"name", "device_class", "expire_after", "force_update",
                                             "last_reset_value_template", "options", "suggested_display_precision",
                                             "state_class", "unit_of_measurement"},
    "event": _ENTITY_COMMON | _READ_ONLY | {"name", "device_class", "event_types"},
}
HA_REQUIRED = {"sensor": {"state_topic"}, "event": {"state_topic", "event_types"}}
HA_AVAILABILITY_ITEM = {"topic", "payload_available", "payload_not_available", "value_template"}
HA_DEVICE = {"identifiers", "connections", "manufacturer", "model", "model_id", "name", "hw_version",
             "serial_number", "sw_version", "via_device", "suggested_area", "configuration_url"}
HA_ORIGIN = {"name", "sw_version", "support_url"}
# homeassistant/components/mqtt/discovery.py TOPIC_MATCHER, after the discovery prefix.
HA_TOPIC = re.compile(r"homeassistant/(?P<component>\w+)/(?:(?P<node_id>[a-zA-Z0-9_-]+)/)?"
                      r"(?P<object_id>[a-zA-Z0-9_-]+)/config")

JINJA = jinja2.sandbox.ImmutableSandboxedEnvironment()


def render(template: str, payload: bytes) -> str:
    """What Home Assistant makes of `payload` with `template` (value and value_json, as it passes them)."""
    return JINJA.from_string(template).render(value=payload.decode(), value_json=json.loads(payload))


def check_schema(component: str, config: dict[str, Any]) -> None:
    unknown = set(config) - HA_KEYS[component]
    assert not unknown, f"{component}: keys Home Assistant's discovery schema does not accept: {unknown}"
    assert HA_REQUIRED[component] <= set(config)
    for item in config["availability"]:
        assert set(item) <= HA_AVAILABILITY_ITEM and "topic" in item
    assert set(config["device"]) <= HA_DEVICE and config["device"]["identifiers"]
    assert set(config["origin"]) <= HA_ORIGIN and config["origin"]["name"]
    assert config["qos"] in (0, 1, 2) and isinstance(config["unique_id"], str)


def configs(sub: Subscriber, node: str) -> dict[str, tuple[bytes, bool]]:
    """topic -> (payload, retained) of the last config message for `node` (non-empty ones only)."""
    out: dict[str, tuple[bytes, bool]] = {}
    with sub._lock:
        for t, p, r in sub.messages:
            if t.startswith("homeassistant/") and t.endswith("/config") and f"/{node}/" in t:
                out[t] = (p, r)
    return {t: v for t, v in out.items() if v[0]}


def announced(sub: Subscriber, node: str) -> int:
    with sub._lock:
        return sum(1 for t, p, _ in sub.messages if t.endswith("/config") and f"/{node}/" in t and p)


def on_topic(sub: Subscriber, topic: str) -> list[bytes]:
    with sub._lock:
        return [p for t, p, _ in sub.messages if t == topic]


def publish(port: int, topic: str, payload: bytes) -> None:
    mqtt_publish.single(topic, payload, qos=1, hostname="127.0.0.1", port=port)


def hotlist(path: Path, plates: list[str]) -> Path:
    path.write_text("plate,reason,priority\n" + "".join(f"{p},test stolen,{i + 1}\n" for i, p in enumerate(plates)))
    return path


# --- configuration -----------------------------------------------------------------------------


def test_config_defaults_off_and_checks_each_key(tmp_path):
    cfg = load_config(write_config(tmp_path / "a.yaml"))
    assert cfg.mqtt.homeassistant == HomeAssistantConfig() and not cfg.mqtt.homeassistant.enabled
    cfg = load_config(write_config(tmp_path / "b.yaml", mqtt={"homeassistant": {"enabled": True, "node_id": "gate_2"}},
                                   destinations=[{"name": "ha", "homeassistant": {"enabled": True}}]))
    assert cfg.mqtt.homeassistant.node_id == "gate_2" and cfg.destinations[0].homeassistant.enabled
    bad = [
        ({"mqtt": {"homeassistant": {"discovery_prefix": "ha/#"}}}, "mqtt.homeassistant.discovery_prefix: 'ha/#'"),
        ({"mqtt": {"homeassistant": {"node_id": "gate 2"}}}, "mqtt.homeassistant.node_id: 'gate 2' may hold only"),
        ({"mqtt": {"homeassistant": {"status_topic": "ha/+"}}}, "mqtt.homeassistant.status_topic: 'ha/+'"),
        ({"mqtt": {"homeassistant": {"enabeld": True}}}, "mqtt.homeassistant.enabeld: unknown key; did you mean 'enabled'?"),
        ({"destinations": [{"name": "x", "homeassistant": {"node_id": "a/b"}}]}, "destinations[0].homeassistant.node_id"),
    ]
    for i, (overrides, message) in enumerate(bad):
        with pytest.raises(ConfigError) as e:
            load_config(write_config(tmp_path / f"bad{i}.yaml", **overrides))
        assert message in str(e.value) and "\n" not in str(e.value)


def test_entities_per_mode_and_odd_camera_ids(tmp_path):
    from alprd.config import MqttConfig
    from alprd.publish.spool import Spool

    comm = MqttCommunicator(MqttConfig(), UNIT, Spool(tmp_path / "s.db"))
    ha = HomeAssistantConfig(enabled=True)
    odd = 'gate "A" {{x}}.ñ'  # quotes, braces and a dot: the template must still find this camera
    cams = ["cam1", odd, "gate_A_x_n"]
    full = entities(UNIT, cams, comm, "full", ha, "9.9")
    assert {(e.component, e.object_id.rsplit("_", 1)[-1]) for e in full} >= {("sensor", "plate"), ("event", "hit")}
    assert len(full) == 4 * len(cams) and len({e.config["unique_id"] for e in full}) == len(full)
    assert len({e.object_id for e in full}) == len(full) and safe_id(odd) != safe_id("gate_A_x_n")
    for e in full:
        check_schema(e.component, e.config)
        assert HA_TOPIC.fullmatch(f"homeassistant/{e.component}/alprd_{UNIT}/{e.object_id}/config")
    status = json.dumps({"online": True, "cameras": {odd: {"state": "reconnecting"}, "cam1": {"state": "running"}}})
    state = next(e for e in full if e.config["name"] == f"{odd} state")
    assert render(state.config["value_template"], status.encode()) == "reconnecting"
    fps = next(e for e in full if e.config["name"] == f"{odd} fps")
    assert render(fps.config["value_template"], json.dumps({"fps": {odd: 7.5}}).encode()) == "7.5"
    assert render(fps.config["value_template"], b"{}") == "0"  # no frames counted yet
    lwt = json.dumps({"online": False, "unit": UNIT}).encode()
    assert render(state.config["value_template"], lwt) == "offline"
    avail = state.config["availability"][0]
    assert render(avail["value_template"], status.encode()) == avail["payload_available"]
    assert render(avail["value_template"], lwt) == avail["payload_not_available"]

    pseudo = entities(UNIT, ["cam1"], comm, "pseudonymous", ha, "9.9")
    plate = next(e for e in pseudo if e.object_id == "cam1_last_plate").config
    read = {"read_id": "r1", "camera": "cam1", "plate_hmac": "ab" * 32, "plate_hmac_day": "2026-01-01", "confidence": 0.9}
    assert render(plate["value_template"], json.dumps(read).encode()) == "ab" * 32
    hit_read = {"read_id": "r2", "camera": "cam1", "plate": "SECRET1", "hit": {"reason": "x"}, "confidence": 0.9}
    assert render(plate["value_template"], json.dumps(hit_read).encode()) == "hit"
    assert "SECRET1" not in render(plate["json_attributes_template"], json.dumps(hit_read).encode())

    hits_only = Discovery(comm, ha, UNIT, ["cam1"], "hits_only", "9.9")
    assert not [e for e in hits_only.entities if e.object_id.endswith("last_plate")]
    assert (f"homeassistant/sensor/alprd_{UNIT}/cam1_last_plate/config", b"") in hits_only.messages()
    assert Discovery(comm, ha, UNIT, ["cam1"], "full", "9.9", outlet="partner").node == f"alprd_{UNIT}_partner"


# --- end to end --------------------------------------------------------------------------------


def test_discovery_states_availability_and_reannounce(tmp_path, broker, subscriber_factory, models_dir,
                                                      traffic_video, daemons):
    video, truth = traffic_video
    node = f"alprd_{UNIT}"
    live = subscriber_factory(broker.port)
    wait_subscribed(live, broker.port)
    cfg = make_config(tmp_path / "unit", broker.port, models_dir, [camera("cam1", video, loop=True)],
                      mqtt={"homeassistant": {"enabled": True}},
                      hotlist={"path": str(hotlist(tmp_path / "hotlist.csv", [v.text for v in truth]))},
                      tracking={"repeat_window_s": 0})  # every loop of the clip is a pass of its own
    d = daemons(cfg)
    assert live.wait_for(lambda s: len(configs(s, node)) == 4, 90), d.output[-3000:]

    # A client that connects later (Home Assistant starting) gets every config retained.
    late = subscriber_factory(broker.port, "homeassistant/#")
    assert late.wait_for(lambda s: len(configs(s, node)) == 4, 15)
    seen = configs(late, node)
    assert all(retained for _, retained in seen.values())
    ents: dict[str, tuple[str, dict[str, Any]]] = {}
    for topic, (payload, _) in seen.items():
        m = HA_TOPIC.fullmatch(topic)
        assert m and m["node_id"] == node, topic
        config = json.loads(payload)
        check_schema(m["component"], config)
        assert config["device"]["identifiers"] == [node] and config["device"]["model"] == "alprd"
        # Availability is the unit's own status topic, with the payloads its template makes of it.
        assert [a["topic"] for a in config["availability"]] == [STATUS]
        ents[m["object_id"]] = (m["component"], config)
    assert {k: c for k, (c, _) in ents.items()} == {"cam1_last_plate": "sensor", "cam1_hit": "event",
                                                     "cam1_state": "sensor", "cam1_fps": "sensor"}

    def ready(s: Subscriber) -> bool:
        return (len(s.payloads("/cam1/read")) >= 2 and bool(s.payloads("/cam1/hit"))
                and any(p["fps"].get("cam1", 0) > 0 for p in s.payloads("/stats")))
    assert live.wait_for(ready, 120), (NO_READS if not live.payloads("/cam1/read") else d.output[-3000:])

    # The states, rendered from what the daemon published on the topics the entities name.
    plate = ents["cam1_last_plate"][1]
    assert plate["state_topic"] == plate["json_attributes_topic"] == f"alprd/{UNIT}/cam1/read"
    for raw in on_topic(live, plate["state_topic"]):
        read = json.loads(raw)
        assert render(plate["value_template"], raw) == read["plate"]
        attrs = json.loads(render(plate["json_attributes_template"], raw))
        assert "plate" not in attrs and attrs["read_id"] == read["read_id"] and attrs["camera"] == "cam1"
        assert attrs["confidence"] == read["confidence"] and attrs["timestamp"] == read["timestamp"]
        assert attrs["hit"] is ("hit" in read)
    hit = ents["cam1_hit"][1]
    for raw in on_topic(live, hit["state_topic"]):
        event = json.loads(render(hit["value_template"], raw))
        assert event.pop("event_type") in hit["event_types"]
        assert event["plate"] == json.loads(raw)["plate"] and event["reason"] == "test stolen"
    fps = ents["cam1_fps"][1]
    for raw in on_topic(live, fps["state_topic"]):
        assert float(render(fps["value_template"], raw)) == json.loads(raw)["fps"].get("cam1", 0)
    state, avail = ents["cam1_state"][1], plate["availability"][0]
    running = on_topic(live, STATUS)
    assert "running" in {render(state["value_template"], raw) for raw in running}
    assert {render(avail["value_template"], raw) for raw in running} == {avail["payload_available"]}

    # Home Assistant restarts: its birth message makes the unit announce again (live, not retained
    # replays). Junk on that topic does nothing, and a burst of births gives one announcement.
    time.sleep(REANNOUNCE_MIN_S + 0.2)
    before = announced(live, node)
    for junk in (b"\xff" * 100_000, b"offline", b"online" * 20):
        publish(broker.port, "homeassistant/status", junk)
    time.sleep(1.0)
    assert announced(live, node) == before, "something other than a birth message made the unit announce"
    for _ in range(3):
        publish(broker.port, "homeassistant/status", b"online")
    assert live.wait_for(lambda s: announced(s, node) >= before + 4, 10), d.output[-3000:]
    time.sleep(0.5)
    assert announced(live, node) == before + 4
    with live._lock:
        again = [(t, r) for t, p, r in live.messages[-400:] if t.endswith("/config") and f"/{node}/" in t]
    assert not any(r for _, r in again[-4:])
    assert d.proc.poll() is None and "Traceback" not in d.output

    # The unit vanishes: the broker publishes its last will, which makes every entity unavailable.
    d.kill()
    assert live.wait_for(lambda s: statuses(s)[-1]["online"] is False, 10)
    assert render(avail["value_template"], on_topic(live, STATUS)[-1]) == avail["payload_not_available"]


def test_pseudonymous_and_hits_only_never_show_a_raw_plate(tmp_path, broker, subscriber_factory, models_dir,
                                                            traffic_video, daemons):
    video, truth = traffic_video
    listed = [v.text for v in truth[:2]]
    sub = subscriber_factory(broker.port)
    wait_subscribed(sub, broker.port)
    # The hits_only destination once ran in full mode: its last-plate sensor is still announced.
    stale = f"homeassistant/sensor/alprd_{UNIT}_hits/cam1_last_plate/config"
    mqtt_publish.single(stale, json.dumps({"state_topic": "hitsonly/x/cam1/read"}), qos=1, retain=True,
                        hostname="127.0.0.1", port=broker.port)
    dests = [{"name": "hits", "port": broker.port, "topic_prefix": "hitsonly", "mode": "hits_only",
              "homeassistant": {"enabled": True}},
             {"name": "ref", "port": broker.port, "topic_prefix": "ref", "mode": "full"}]  # what was read
    cfg = make_config(tmp_path / "unit", broker.port, models_dir, [camera("cam1", video)], destinations=dests,
                      mqtt={"mode": "pseudonymous", "homeassistant": {"enabled": True}},
                      hotlist={"path": str(hotlist(tmp_path / "hotlist.csv", listed))})
    d = daemons(cfg, "--until-sources-end")
    assert d.wait(180) == 0, d.output[-4000:]
    assert sub.wait_for(lambda s: statuses(s) and statuses(s)[-1]["online"] is False, 10)

    reads = [json.loads(p) for p in on_topic(sub, f"ref/{UNIT}/cam1/read")]
    if not reads:
        pytest.fail(NO_READS)
    plates = {r["plate"] for r in reads}
    hit_plates = {r["plate"] for r in reads if r.get("hit")}
    unlisted = plates - hit_plates
    assert unlisted, f"every plate read was a hit ({sorted(plates)}): nothing to show minimised"
    assert hit_plates, f"no read of the listed plates {listed} was made (reads: {sorted(plates)})"

    pseudo_node, hits_node = f"alprd_{UNIT}", f"alprd_{UNIT}_hits"
    late = subscriber_factory(broker.port, "homeassistant/#")
    assert late.wait_for(lambda s: len(configs(s, pseudo_node)) == 4 and len(configs(s, hits_node)) >= 3, 15)
    time.sleep(0.3)  # whatever else is retained there has come in too
    found = {node: configs(late, node) for node in (pseudo_node, hits_node)}
    assert stale not in found[hits_node], "the hits_only destination still announces a last-plate sensor"
    assert {t.rsplit("/", 2)[-2] for t in found[hits_node]} == {"cam1_hit", "cam1_state", "cam1_fps"}
    assert {t.rsplit("/", 2)[-2] for t in found[pseudo_node]} == {"cam1_last_plate", "cam1_hit", "cam1_state",
                                                                  "cam1_fps"}
    checked = 0
    for seen in found.values():
        for topic, (payload, retained) in seen.items():
            assert retained and not leaked(plates, payload), topic
            component = HA_TOPIC.fullmatch(topic)["component"]
            config = json.loads(payload)
            check_schema(component, config)
            if component != "sensor":
                continue  # the hit event reads the hit topic: hits carry the plate in every mode (the policy)
            topics = {config["state_topic"], config.get("json_attributes_topic"), *(a["topic"] for a in config["availability"])}
            for t in filter(None, topics):
                for raw in on_topic(sub, t):
                    # On the topics these sensors read, no plate that was not a hit ever appears ...
                    assert not leaked(unlisted, raw), (t, raw[:200])
            for raw in on_topic(sub, config["state_topic"]):
                # ... and what they show holds no plate at all, not even a hit's.
                shown = render(config["value_template"], raw)
                if "json_attributes_template" in config:
                    shown += render(config["json_attributes_template"], raw)
                assert not leaked(plates, shown), (topic, shown)
                checked += 1
    pseudo_reads = on_topic(sub, f"alprd/{UNIT}/cam1/read")
    plate_sensor = json.loads(found[pseudo_node][f"homeassistant/sensor/{pseudo_node}/cam1_last_plate/config"][0])
    states = [render(plate_sensor["value_template"], raw) for raw in pseudo_reads]
    assert {s for s in states if s != "hit"} == {json.loads(r)["plate_hmac"] for r in pseudo_reads if b"plate_hmac" in r}
    assert "hit" in states and all(re.fullmatch(r"[0-9a-f]{64}|hit", s) for s in states)
    assert checked >= len(pseudo_reads)
    # The shutdown status makes the entities unavailable.
    avail = plate_sensor["availability"][0]
    assert render(avail["value_template"], on_topic(sub, STATUS)[-1]) == avail["payload_not_available"]
    assert "Traceback" not in d.output
