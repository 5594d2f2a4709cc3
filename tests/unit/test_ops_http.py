"""The `http:` section's checks and the rule that turns a health snapshot into 200 or 503."""

from __future__ import annotations

import time

import pytest
import yaml
from test_config import MODELS

from alprd.config import HttpConfig, load_config
from alprd.errors import ConfigError
from alprd.ops.http import problems


def load(tmp_path, http: object):
    p = tmp_path / "unit.yaml"
    p.write_text(yaml.safe_dump({"unit_id": "pole-1", "cameras": [{"id": "cam1", "source": "v.mp4"}],
                                 "models": {"dir": str(MODELS)}, "http": http}))
    return load_config(p)


def test_off_and_on_loopback_by_default(tmp_path):
    assert HttpConfig().enabled is False
    cfg = load(tmp_path, {"enabled": True})
    assert cfg.http.address() == ("127.0.0.1", 8080)
    assert load(tmp_path, {"listen": "[::1]:9100"}).http.address() == ("::1", 9100)


@pytest.mark.parametrize(("http", "fragments"), [
    ({"listen": "8080"}, ["http.listen", "'8080'", "host:port"]),
    ({"listen": "camera.local:80"}, ["http.listen", "an IP address or localhost"]),
    ({"listen": "127.0.0.1:70000"}, ["http.listen", "between 1 and 65535"]),
    ({"listen": "[127.0.0.1]:80"}, ["http.listen", "IPv6"]),
    ({"broker_unreachable_after_s": 0}, ["http.broker_unreachable_after_s", "more than 0"]),
    ({"listne": "127.0.0.1:1"}, ["http.listne", "did you mean 'listen'"]),
])
def test_bad_settings_are_one_line_errors(tmp_path, http, fragments):
    with pytest.raises(ConfigError) as e:
        load(tmp_path, http)
    msg = str(e.value)
    assert "\n" not in msg and all(f in msg for f in fragments), msg


def health(state: str = "running", connected: bool = True, since_s_ago: float = 0.0) -> dict:
    return {"cameras": {"cam1": {"state": state}, "cam2": {"state": "finished"}},
            "broker": {"connected": connected, "since_ms": int((time.time() - since_s_ago) * 1000)}}


def test_unhealthy_on_camera_error_or_broker_down_too_long():
    assert problems(health(), 60) == []
    assert problems(health("reconnecting"), 60) == []
    assert problems(health("error"), 60) == ["camera cam1: error"]
    assert problems(health(connected=False, since_s_ago=30), 60) == []  # a short outage is not one yet
    assert problems(health(connected=False, since_s_ago=90), 60) == ["broker unreachable for 90s"]
    assert problems(health(connected=True, since_s_ago=90), 60) == []
