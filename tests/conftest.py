"""Shared fixtures: real mosquitto brokers on free loopback ports, an MQTT subscriber, test videos."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
import yaml

from alprd.config import ModelsConfig
from alprd.errors import ModelError
from alprd.recognition.manifest import load_entry

REPO = Path(__file__).resolve().parents[1]
MODELS = REPO / "models"


def wait_until(pred: Callable[[], object], timeout: float = 10.0) -> bool:
    """Poll `pred` until it is true (True) or `timeout` seconds pass (False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.02)
    return False


def leaked(plates: set[str], data: bytes | str) -> list[str]:
    """The plates that `data` (an HTTP body, an MQTT payload, a log line) names.

    A plate counts only as a whole token, so a read that is a run of digits (a partial read such as
    9699) is not found inside a timestamp or a duration; in JSON and Prometheus text a value that is
    such a run only names the plate when quoted, as every string there is (a bare 9699 is a number)."""
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
    found = []
    for plate in plates:
        token = re.escape(plate)
        pattern = rf'["\']{token}["\']' if plate.isdigit() and isinstance(data, bytes) else rf"(?<![\w.]){token}(?![\w.])"
        if re.search(pattern, text):
            found.append(plate)
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port}")


class Broker:
    """A mosquitto of our own on a free port, stoppable and restartable on the same port."""

    def __init__(self, workdir: Path, extra_conf: str = "", port: int | None = None):
        if not shutil.which("mosquitto"):
            pytest.fail("mosquitto is not installed (apt-get install mosquitto)")
        self.port = port or free_port()
        self.workdir = workdir
        self.conf = workdir / f"mosquitto-{self.port}.conf"
        body = extra_conf or f"listener {self.port} 127.0.0.1\nallow_anonymous true\n"
        self.conf.write_text(body + "persistence false\nlog_dest stderr\n")
        self.proc: subprocess.Popen | None = None
        self.log = workdir / f"mosquitto-{self.port}.log"

    def start(self) -> Broker:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(["mosquitto", "-c", str(self.conf)], stdout=log, stderr=log)
        wait_port(self.port)
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


@pytest.fixture
def broker(tmp_path):
    b = Broker(tmp_path).start()
    yield b
    b.stop()


@pytest.fixture
def broker_factory(tmp_path):
    made: list[Broker] = []

    def make(extra_conf: str = "", port: int | None = None) -> Broker:
        b = Broker(tmp_path, extra_conf, port)
        made.append(b)
        return b

    yield make
    for b in made:
        b.stop()


class Subscriber:
    """Collects messages from a broker; reconnects by itself while the broker restarts."""

    def __init__(self, port: int, topic: str = "#", auth: tuple[str, str] | None = None, **tls):
        self.messages: list[tuple[str, bytes, bool]] = []
        self._lock = threading.Lock()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"test-sub-{port}-{time.time_ns()}",
                                  protocol=mqtt.MQTTv5)
        if tls:
            self.client.tls_set(**tls)
        if auth:
            self.client.username_pw_set(*auth)
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(topic, qos=1)
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(0.1, 0.5)
        self.client.connect_async("127.0.0.1", port)
        self.client.loop_start()

    def _on_message(self, client, userdata, msg) -> None:
        with self._lock:
            self.messages.append((msg.topic, msg.payload, bool(msg.retain)))

    def payloads(self, suffix: str) -> list[dict]:
        with self._lock:
            return [json.loads(p) for t, p, _ in self.messages if t.endswith(suffix)]

    def wait_for(self, predicate, timeout: float = 30.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate(self):
                return True
            time.sleep(0.1)
        return False

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@pytest.fixture
def subscriber_factory():
    subs: list[Subscriber] = []

    def make(port: int, topic: str = "#", auth: tuple[str, str] | None = None, **tls) -> Subscriber:
        s = Subscriber(port, topic, auth, **tls)
        subs.append(s)
        return s

    yield make
    for s in subs:
        s.close()


@pytest.fixture(scope="session")
def traffic_video(tmp_path_factory):
    """A short synthetic traffic clip with known plates (rendered once per test session)."""
    from alprd.synth.video import write_traffic_video

    path = tmp_path_factory.mktemp("video") / "traffic.mp4"
    truth = write_traffic_video(path, vehicles=4, seconds=6, width=960, height=540, fps=10, seed=7)
    return path, truth


def write_config(path: Path, **overrides) -> Path:
    cfg = {
        "unit_id": "test-unit",
        "cameras": [{"id": "cam1", "source": "missing.mp4"}],
        "models": {"dir": str(MODELS)},
        "mqtt": {"host": "127.0.0.1", "port": 1883, "topic_prefix": "alprd"},
        "spool": {"path": str(path.parent / "spool.db")},
        "workers": 2,
        "stats_interval_s": 1,
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(cfg.get(key), dict):
            cfg[key] = {**cfg[key], **value}
        else:
            cfg[key] = value
    path.write_text(yaml.safe_dump(cfg))
    return path


def with_video(folder: Path, name: str = "video.mp4") -> list[dict]:
    """A cameras section whose file source exists (empty: `alprd check-config` checks the path, not
    the video), for configs that must pass check-config; write_config's default camera has none."""
    (folder / name).touch()
    return [{"id": "cam1", "source": name}]


def shipped_config(tmp_path: Path, name: str) -> Path:
    """A copy of config/ with the demo video each camera of config/NAME reads in place (empty), so
    check-config passes on a shipped example as it does once `alprd synth` has rendered the demo."""
    dst = tmp_path / "config"
    shutil.copytree(REPO / "config", dst)
    for cam in yaml.safe_load((dst / name).read_text())["cameras"]:
        video = (dst / cam["source"]).resolve()
        video.parent.mkdir(parents=True, exist_ok=True)
        video.touch()
    return dst / name


def start_daemon(config: Path, *extra: str, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "alprd", "run", "-c", str(config), *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=config.parent,
        env={**os.environ, **(env or {})},
    )


def snapshot_models(dest: Path, timeout: float = 120.0) -> Path:
    """A copy of models/ whose files match its manifest. Training replaces the models while tests
    run; a reference run and the runs compared with it must use the same ones."""
    deadline = time.monotonic() + timeout
    defaults = ModelsConfig()
    while True:
        shutil.rmtree(dest, ignore_errors=True)
        shutil.copytree(MODELS, dest)
        try:
            load_entry(dest, defaults.detector, "detector")
            load_entry(dest, defaults.ocr, "ocr")
            load_entry(dest, defaults.verifier, "verifier")
            return dest
        except (ModelError, OSError, KeyError) as e:  # caught mid-replacement: copy again
            if time.monotonic() > deadline:
                pytest.fail(f"no consistent model set in {MODELS}: {e}")
            time.sleep(1.0)


class DaemonProcess:
    """`alprd run` in a subprocess; its output is read continuously so a full pipe never blocks it."""

    def __init__(self, config: Path, *extra: str):
        # The source tree's alprd, whether or not it is installed.
        path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH", "")]))
        self.proc = start_daemon(config, *extra, env={"PYTHONPATH": path})
        self._lines: list[str] = []
        self._readers = [threading.Thread(target=self._drain, args=(s,), daemon=True)
                         for s in (self.proc.stderr, self.proc.stdout)]
        for t in self._readers:
            t.start()

    def _drain(self, stream) -> None:
        for raw in iter(stream.readline, b""):
            self._lines.append(raw.decode(errors="replace").rstrip("\n"))

    @property
    def output(self) -> str:
        return "\n".join(self._lines)

    def lines(self, *needles: str) -> list[str]:
        return [ln for ln in list(self._lines) if all(n in ln for n in needles)]

    def wait_output(self, predicate: Callable[[DaemonProcess], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate(self):
                return True
            if self.proc.poll() is not None:
                time.sleep(0.2)  # let the readers take the last lines
                return predicate(self)
            time.sleep(0.1)
        return False

    def wait(self, timeout: float) -> int:
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"daemon did not exit within {timeout:.0f}s; output:\n{self.output[-4000:]}")
        for t in self._readers:
            t.join(5)
        return rc

    def terminate(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory) -> Path:
    return snapshot_models(tmp_path_factory.mktemp("models") / "models")


@pytest.fixture
def daemons():
    started: list[DaemonProcess] = []

    def start(config: Path, *extra: str) -> DaemonProcess:
        d = DaemonProcess(config, *extra)
        started.append(d)
        return d

    yield start
    for d in started:
        d.kill()


# The suite's folders are its kinds: unit (no broker, no daemon process), integration (a real
# mosquitto and/or a daemon), models (the shipped ONNX models on real data), training (alprd-train).
# Everything outside unit/ takes seconds to minutes a file, so it is also `slow`:
# `pytest -m "not slow"` is the quick loop; plain `pytest` runs everything.
_KINDS = ("unit", "integration", "models", "training")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        kind = next((k for k in _KINDS if f"/tests/{k}/" in str(item.path)), None)
        if kind is None:
            continue
        item.add_marker(getattr(pytest.mark, kind))
        if kind != "unit":
            item.add_marker(pytest.mark.slow)
