"""The daemon end to end: a real mosquitto on a free loopback port, `alprd run` as a subprocess, the
synthetic traffic video.

The models are retrained from time to time, so no test knows how many plates a video yields. A
reference run against a stable broker says which reads (camera, frame, plate, box) the current models
make; a stressed run must deliver every one of them (duplicates are allowed, losses are not)."""

from __future__ import annotations

import json
import random
import signal
import sqlite3
import subprocess
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import jsonschema
import paho.mqtt.client as mqtt
import paho.mqtt.publish as mqtt_publish
import pytest
from conftest import Broker, DaemonProcess, Subscriber, free_port, write_config

from alprd import __version__
from alprd.config import ModelsConfig
from alprd.recognition.manifest import load_entry

REPO = Path(__file__).resolve().parents[2]
READ_SCHEMA = json.loads((REPO / "alprd" / "publish" / "schema" / "read-v1.schema.json").read_text())
UNIT = "test-unit"
BASE = f"alprd/{UNIT}"
STATUS = f"{BASE}/status"
NO_READS = "models produce no reads on the synthetic video"

Key = tuple[str, int, str, tuple[int, ...]]  # camera, frame index, plate, box


# --- helpers ------------------------------------------------------------------------------------


def read_key(payload: dict[str, Any]) -> Key:
    return payload["camera"], payload["frame_index"], payload["plate"], tuple(payload["box"])


def read_keys(sub: Subscriber) -> set[Key]:
    return {read_key(p) for p in sub.payloads("/read")}


def statuses(sub: Subscriber) -> list[dict[str, Any]]:
    with sub._lock:
        return [json.loads(p) for t, p, _ in sub.messages if t == STATUS]


def require_reads(reference: set[Key]) -> set[Key]:
    if not reference:
        pytest.fail(NO_READS)
    return reference


def as_camera(keys: Iterable[Key], camera: str) -> set[Key]:
    """The same video on another camera id yields the same reads (recognition is deterministic)."""
    return {(camera, *k[1:]) for k in keys}


def missing_report(expected: set[Key], got: set[Key]) -> str:
    missing = sorted(expected - got)
    return f"{len(missing)} of {len(expected)} expected reads never delivered, e.g. {missing[:5]}"


def wait_subscribed(sub: Subscriber, port: int, timeout: float = 15.0, **publish_kwargs: Any) -> None:
    """Publish probes until the subscriber receives one: its subscription is then in place, and any
    retained messages for it have been delivered before the probe."""
    topic = f"probe/{time.time_ns()}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            mqtt_publish.single(topic, b"probe", qos=1, hostname="127.0.0.1", port=port, **publish_kwargs)
        except OSError:
            pass
        if sub.wait_for(lambda s: any(t == topic for t, _, _ in s.messages), timeout=0.5):
            return
    pytest.fail(f"test subscriber on 127.0.0.1:{port} did not come up")


def spool_rows(path: Path) -> list[tuple[int, str]]:
    """(seq, read_id) of the rows in a daemon's spool, read without writing to it."""
    if not path.exists():
        return []
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    except sqlite3.Error:
        return []
    try:
        return db.execute("SELECT seq, read_id FROM outbox ORDER BY seq").fetchall()
    except sqlite3.OperationalError:  # the daemon has not created the table yet
        return []
    finally:
        db.close()


def camera(cam_id: str, source: str | Path, **extra: Any) -> dict[str, Any]:
    return {"id": cam_id, "source": str(source), **extra}


def make_config(workdir: Path, port: int, models_dir: Path, cameras: list[dict[str, Any]], **overrides: Any) -> Path:
    workdir.mkdir(parents=True, exist_ok=True)
    models = {"dir": str(models_dir), **overrides.pop("models", {})}
    return write_config(workdir / "alprd.yaml", cameras=cameras, models=models,
                        mqtt={"port": port, **overrides.pop("mqtt", {})},
                        spool={"path": str(workdir / "spool.db")}, stats_interval_s=0.5, **overrides)


class DurableSubscriber(Subscriber):
    """MQTT 3.1.1 with a persistent session: a broker with persistence keeps the subscription and the
    messages queued for it across its restarts, so reads published while this client is reconnecting
    are delivered late rather than dropped (a loss there would not be the daemon's)."""

    def __init__(self, port: int, topic: str = "#"):
        # Not super().__init__(): that connects a clean MQTT 5 session at once.
        self.messages = []
        self._lock = threading.Lock()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"test-durable-{port}",
                                  protocol=mqtt.MQTTv311, clean_session=False)
        self.client.on_connect = lambda c, u, flags, rc, p: None if flags.session_present else c.subscribe(topic, qos=1)
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(0.1, 0.2)
        self.client.connect_async("127.0.0.1", port)
        self.client.loop_start()


def durable_broker(broker_factory: Callable[..., Broker], workdir: Path, request: Any) -> tuple[Broker, DurableSubscriber]:
    """A broker with persistence and a DurableSubscriber already subscribed to it: the subscriber's
    session (and the reads queued for it) lives through the broker's restarts."""
    broker = broker_factory()
    store = workdir / "mosquitto-store"
    store.mkdir()
    broker.conf.write_text(f"listener {broker.port} 127.0.0.1\nallow_anonymous true\nuser root\n"
                           f"persistence true\npersistence_location {store}/\nautosave_interval 0\n"
                           "max_queued_messages 0\nmax_queued_bytes 0\nlog_dest stderr\n")
    broker.start()
    sub = DurableSubscriber(broker.port)
    request.addfinalizer(sub.close)
    wait_subscribed(sub, broker.port)
    return broker, sub


# --- fixtures -----------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def reference(tmp_path_factory, traffic_video, models_dir) -> set[Key]:
    """The reads the current models make on the synthetic video, from a run against a stable broker."""
    work = tmp_path_factory.mktemp("reference")
    broker = Broker(work).start()
    sub = Subscriber(broker.port)
    d: DaemonProcess | None = None
    try:
        wait_subscribed(sub, broker.port)
        cfg = make_config(work, broker.port, models_dir, [camera("cam1", traffic_video[0])])
        d = DaemonProcess(cfg, "--until-sources-end")
        rc = d.wait(180)
        assert rc == 0, f"reference run failed:\n{d.output[-4000:]}"
        assert sub.wait_for(lambda s: any(st["online"] is False for st in statuses(s)), 10), d.output[-4000:]
        assert not spool_rows(work / "spool.db"), f"reference run left reads in its spool:\n{d.output[-4000:]}"
        return read_keys(sub)
    finally:
        if d is not None:
            d.kill()
        sub.close()
        broker.stop()


# --- tests --------------------------------------------------------------------------------------


def test_reads_status_and_stats(tmp_path, broker, subscriber_factory, traffic_video, models_dir, reference, daemons):
    expected = require_reads(reference)
    sub = subscriber_factory(broker.port)
    wait_subscribed(sub, broker.port)
    d = daemons(make_config(tmp_path, broker.port, models_dir, [camera("cam1", traffic_video[0])]))

    assert sub.wait_for(lambda s: expected <= read_keys(s), 120), missing_report(expected, read_keys(sub))
    reads = [(t, json.loads(p), retained) for t, p, retained in list(sub.messages) if t.endswith("/read")]
    validator = jsonschema.Draft202012Validator(READ_SCHEMA)
    for topic, payload, retained in reads:
        assert topic == f"{BASE}/cam1/read"
        assert not retained
        validator.validate(payload)
        assert payload["unit"] == UNIT and payload["camera"] == "cam1"

    online = [st for st in statuses(sub) if st["online"]]
    assert online, "no online status"
    defaults = ModelsConfig()
    versions = {"detector": load_entry(models_dir, defaults.detector, "detector").tag,
                "ocr": load_entry(models_dir, defaults.ocr, "ocr").tag,
                "verifier": load_entry(models_dir, defaults.verifier, "verifier").tag}
    for st in online:
        assert st["version"] == __version__ and st["unit"] == UNIT
        assert st["models"] == versions
        assert set(st["cameras"]) == {"cam1"}
    assert sub.wait_for(lambda s: statuses(s)[-1]["cameras"]["cam1"]["state"] == "finished", 30)

    # A client connecting now gets the retained online status.
    late = subscriber_factory(broker.port, STATUS)
    assert late.wait_for(lambda s: s.messages, 10)
    topic, payload, retained = late.messages[0]
    assert retained and json.loads(payload)["online"] is True

    # Stats come every stats_interval_s (0.5 s here), unspooled; they catch up with the reads, which
    # count vehicle passes (a first read and its update are one).
    passes = len({p["read_id"] for p in sub.payloads("/read")})
    assert sub.wait_for(lambda s: any(p["reads"].get("cam1", 0) >= passes for p in s.payloads("/stats")), 10), \
        sub.payloads("/stats")[-3:]
    # Periodic, not once: a second stats message follows within a few intervals (a fast run may
    # have caught up with the reads on the first one).
    assert sub.wait_for(lambda s: len(s.payloads("/stats")) >= 2, 5), sub.payloads("/stats")
    stats = sub.payloads("/stats")
    assert all(t == f"{BASE}/stats" and not r for t, _, r in list(sub.messages) if t.endswith("/stats"))
    last = stats[-1]
    assert last["unit"] == UNIT and last["mqtt_connected"] is True
    assert last["frames"]["cam1"] > 0 and last["dropped"]["spool_full"] == 0

    d.terminate()
    assert d.wait(30) == 0, d.output[-4000:]
    assert "Traceback" not in d.output
    assert sub.wait_for(lambda s: statuses(s)[-1]["online"] is False, 10), "no offline status after SIGTERM"

    # After the exit: the retained status says offline, and no read was retained.
    after = subscriber_factory(broker.port)
    wait_subscribed(after, broker.port)
    retained_msgs = [(t, p) for t, p, r in list(after.messages) if r]
    # Retained: the status, and the last signed audit checkpoint (issue 5: the central side keeps it).
    assert sorted(t for t, _ in retained_msgs) == sorted([STATUS, f"{BASE}/audit"]), retained_msgs
    retained_msgs = [(t, p) for t, p in retained_msgs if t == STATUS]
    assert read_keys(sub) == expected, "a stable run reads the same plates as the reference run"
    final = json.loads(retained_msgs[0][1])
    assert final["online"] is False
    assert final["cameras"]["cam1"]["state"] == "finished"


def test_no_loss_across_broker_restarts(request, tmp_path, broker_factory, traffic_video, models_dir, reference, daemons):
    """Five broker restarts while the daemon reads and publishes: every reference read still arrives."""
    ref = require_reads(reference)
    # The same clip six times: a run long enough for the restarts (with tracking and motion gating
    # three clips could be read and delivered before the third restart).
    cams = [f"cam{i}" for i in range(1, 7)]
    expected = set().union(*(as_camera(ref, c) for c in cams))
    # Persistence keeps the test subscriber's session (and the reads queued for it) across restarts.
    broker, sub = durable_broker(broker_factory, tmp_path, request)
    cfg = make_config(tmp_path / "unit", broker.port, models_dir,
                      [camera(c, traffic_video[0], loop=False) for c in cams])
    d = daemons(cfg)

    delivered_at_restart = []
    for _ in range(5):
        # Restart only once the daemon is connected again (it publishes its status on every connect).
        n = len(statuses(sub))
        assert sub.wait_for(lambda s, n=n: len(statuses(s)) > n, 30), f"daemon did not reconnect:\n{d.output[-3000:]}"
        time.sleep(0.3)  # let it publish a little
        delivered_at_restart.append(len(read_keys(sub) & expected))
        broker.stop()
        time.sleep(0.2)
        broker.start()
    assert d.proc.poll() is None, d.output[-4000:]

    assert sub.wait_for(lambda s: expected <= read_keys(s), 120), missing_report(expected, read_keys(sub))
    assert d.lines("disconnected from"), "the daemon never saw a broker restart"
    # The restarts hit a running pipeline, not one that had already delivered everything.
    assert delivered_at_restart[2] < len(expected), f"video done before the restarts: {delivered_at_restart}"
    d.terminate()
    assert d.wait(30) == 0, d.output[-4000:]
    assert "Traceback" not in d.output


def test_no_loss_when_killed(tmp_path, broker_factory, subscriber_factory, traffic_video, models_dir, reference, daemons):
    """SIGKILL with reads in the spool and no broker: the next start delivers every one of them."""
    ref = require_reads(reference)
    broker = broker_factory()  # not started yet: everything stays in the spool
    cfg = make_config(tmp_path, broker.port, models_dir, [camera("cam1", traffic_video[0], loop=False)])
    spool = tmp_path / "spool.db"
    d1 = daemons(cfg)
    want = max(1, len(ref) // 3)
    deadline = time.monotonic() + 120
    while len(spool_rows(spool)) < want and time.monotonic() < deadline and d1.proc.poll() is None:
        time.sleep(0.05)
    assert len(spool_rows(spool)) >= want, f"no reads in the spool:\n{d1.output[-4000:]}"
    d1.proc.send_signal(signal.SIGKILL)
    d1.wait(10)
    spooled = {read_id for _, read_id in spool_rows(spool)}
    assert len(spooled) >= want

    broker.start()
    sub = subscriber_factory(broker.port)
    wait_subscribed(sub, broker.port)
    d2 = daemons(cfg, "--until-sources-end")
    assert d2.wait(180) == 0, d2.output[-4000:]
    assert sub.wait_for(lambda s: any(st["online"] is False for st in statuses(s)), 10), d2.output[-4000:]
    delivered = {p["read_id"] for p in sub.payloads("/read")}
    assert spooled <= delivered, f"{len(spooled - delivered)} spooled read(s) lost after SIGKILL"
    assert ref <= read_keys(sub), missing_report(ref, read_keys(sub))
    assert not spool_rows(spool)
    assert "Traceback" not in d2.output, d2.output[-4000:]


def test_bad_sources_are_reported_and_the_good_camera_still_reads(tmp_path, broker, subscriber_factory, traffic_video,
                                                                   models_dir, reference, daemons):
    expected = require_reads(reference)
    video = traffic_video[0]
    media = tmp_path / "media"
    media.mkdir()
    corrupt = media / "corrupt.mp4"
    corrupt.write_bytes(random.Random(7).randbytes(200_000))
    data = video.read_bytes()
    truncated = media / "truncated.mp4"
    truncated.write_bytes(data[: len(data) // 2])
    images = media / "images"
    images.mkdir()
    (images / "x.jpg").write_text("this is not a picture\n")
    cams = [
        camera("good", video),
        camera("missing", media / "missing.mp4"),
        camera("corrupt", corrupt),
        camera("truncated", truncated),
        camera("images", images),
        camera("stream", f"rtsp://127.0.0.1:{free_port()}/x", reconnect_min_s=0.5, reconnect_max_s=1.0),
    ]
    sub = subscriber_factory(broker.port)
    wait_subscribed(sub, broker.port)
    d = daemons(make_config(tmp_path / "unit", broker.port, models_dir, cams), "--until-sources-end")
    # --until-sources-end waits for the recorded sources only; the stream keeps reconnecting.
    assert d.wait(180) == 0, d.output[-4000:]
    assert sub.wait_for(lambda s: any(st["online"] is False for st in statuses(s)), 10)
    out = d.output
    assert "Traceback" not in out, out[-4000:]

    undecodable = ("cannot decode video file", "no decodable frames")
    for cam_id, words, level in [("missing", ("video file not found",), "ERROR"), ("corrupt", undecodable, "ERROR"),
                                 ("truncated", undecodable, "ERROR"), ("images", ("is not a readable image",), "ERROR"),
                                 ("stream", ("cannot open rtsp://",), "WARNING")]:
        found = [ln for w in words for ln in d.lines(f" {level} ", f"camera {cam_id}: ", w)]
        assert found, f"camera {cam_id}: no {level} line saying {' or '.join(words)}:\n{out[-3000:]}"
        if cam_id != "stream":  # a stream that stays down is reminded of every tenth retry
            assert len(d.lines(f"camera {cam_id}: ")) == 1, f"camera {cam_id}: one line expected:\n{out[-3000:]}"
    assert not d.lines("camera good:", "ERROR")

    cameras = statuses(sub)[-1]["cameras"]
    states = {c: v["state"] for c, v in cameras.items()}
    assert states == {"good": "finished", "missing": "error", "corrupt": "error", "truncated": "error",
                      "images": "finished", "stream": "reconnecting"}, cameras
    assert cameras["images"]["frames"] == 0
    assert as_camera(expected, "good") <= read_keys(sub)
    assert {k[0] for k in read_keys(sub)} == {"good"}


def test_credentials_never_logged(tmp_path, broker_factory, subscriber_factory, traffic_video, models_dir, daemons):
    secret, stream_secret = "s3cr3t-Pa55word", "rtsp-Pa55"
    passwords = tmp_path / "passwd"
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(passwords), "alprd", secret], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    port = free_port()
    broker = broker_factory(f"listener {port} 127.0.0.1\nallow_anonymous false\nuser root\npassword_file {passwords}\n",
                            port).start()
    sub = subscriber_factory(broker.port, auth=("alprd", secret))
    wait_subscribed(sub, broker.port, auth={"username": "alprd", "password": secret})
    cams = [camera("cam1", traffic_video[0]),
            camera("stream", f"rtsp://viewer:{stream_secret}@127.0.0.1:{free_port()}/x", reconnect_min_s=0.5)]
    for password in (secret, "wrong-" + secret):
        cfg = make_config(tmp_path / password, broker.port, models_dir, cams, logging={"level": "DEBUG"},
                          mqtt={"username": "alprd", "password": password})
        d = daemons(cfg)
        if password == secret:
            assert sub.wait_for(lambda s: any(st["online"] for st in statuses(s)), 30), d.output[-3000:]
        else:
            assert d.wait_output(lambda p: p.lines("refused"), 30), d.output[-3000:]
        assert d.wait_output(lambda p: p.lines("camera stream:"), 30), d.output[-3000:]
        d.terminate()
        assert d.wait(30) == 0, d.output[-4000:]
        for s in (secret, stream_secret):
            assert s not in d.output, f"a password reached the log:\n{d.output}"
    for _, payload, _ in list(sub.messages):
        assert secret.encode() not in payload and stream_secret.encode() not in payload


def test_live_mjpeg_camera_reads_and_reconnects(tmp_path, broker, subscriber_factory, traffic_video, models_dir,
                                                reference, daemons):
    """A real HTTP/MJPEG server on loopback: reads flow, a dropped stream shows as reconnecting in
    the status, and the daemon picks the stream up again when it comes back."""
    from mjpeg_server import MjpegCamera

    require_reads(reference)
    port = free_port()
    cam = MjpegCamera(str(traffic_video[0]), port, fps=10)
    cam.start()
    sub = subscriber_factory(broker.port)
    wait_subscribed(sub, broker.port)
    cams = [camera("live", f"http://127.0.0.1:{port}/stream.mjpg", reconnect_min_s=0.5, reconnect_max_s=1.0)]
    # The camera loops a 6 s clip, so its plates come round again within tracking.repeat_window_s
    # and would rightly count as the same passes; a real camera's traffic would be new cars.
    d = daemons(make_config(tmp_path / "unit", broker.port, models_dir, cams, tracking={"repeat_window_s": 0}))
    try:
        assert sub.wait_for(lambda s: len(s.payloads("/live/read")) >= 3, 60), d.output[-3000:]
        cam.stop()
        assert sub.wait_for(lambda s: statuses(s) and statuses(s)[-1]["cameras"]["live"]["state"] == "reconnecting",
                            20), d.output[-3000:]
        before = len(sub.payloads("/live/read"))
        cam.start()
        assert sub.wait_for(lambda s: statuses(s)[-1]["cameras"]["live"]["state"] == "running", 30), d.output[-3000:]
        assert sub.wait_for(lambda s: len(s.payloads("/live/read")) > before, 60), d.output[-3000:]
        live = statuses(sub)[-1]["cameras"]["live"]
        assert live["reconnects"] >= 1
    finally:
        cam.stop()
        d.terminate()
    assert d.wait(30) == 0
    assert "Traceback" not in d.output
    assert d.lines("camera live: stream dropped")
