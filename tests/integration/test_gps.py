"""GPS for vehicle units: NMEA parsing, gpsd over a loopback socket, a serial receiver through a
pseudo-terminal, and reads tagged with the right fix when a recorded drive is replayed."""

from __future__ import annotations

import calendar
import json
import os
import socket
import termios
import threading
import time
from pathlib import Path

import jsonschema
import pytest
import yaml
from conftest import wait_until, write_config

from alprd.config import load_config
from alprd.errors import ConfigError
from alprd.geometry import Frame
from alprd.gps.fix import KNOT_MPS, Fix, FixHistory, fix_dict
from alprd.gps.nmea import NmeaParser, drive, drive_log, epoch_sentences, sentence
from alprd.gps.provider import ReplayGps, make_provider
from alprd.gps.readers import GpsdReader, NmeaLog, SerialNmeaReader

REPO = Path(__file__).resolve().parents[2]
READ_SCHEMA = json.loads((REPO / "alprd" / "publish" / "schema" / "read-v1.schema.json").read_text())
T0 = calendar.timegm((2026, 11, 21, 10, 0, 0)) * 1000

# The NMEA 0183 reference examples (checksums as published).
RMC = "$GPRMC,123519,A,4807.038,N,01131.000,E,022.4,084.4,230394,003.1,W*6A"
GGA = "$GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,*47"


# --- NMEA ----------------------------------------------------------------------------------------


def test_rmc_gga_vtg_merge_into_one_fix():
    p = NmeaParser()
    p.feed(RMC, 1000)
    fix = p.feed(GGA, 1010)
    assert fix is not None and p.counts["sentences"] == 2
    assert fix.quality == "gps"
    assert fix.lat == pytest.approx(48 + 7.038 / 60) and fix.lon == pytest.approx(11 + 31.0 / 60)
    assert fix.speed_mps == pytest.approx(22.4 * KNOT_MPS) and fix.heading == pytest.approx(84.4)
    assert fix.satellites == 8 and fix.hdop == pytest.approx(0.9) and fix.altitude_m == pytest.approx(545.4)
    assert fix.utc_ms == calendar.timegm((1994, 3, 23, 12, 35, 19)) * 1000
    assert fix.time_ms == 1000, "an epoch is timed by its first sentence's arrival"
    # VTG refines speed (km/h) and course of the same epoch; southern/western hemispheres are negative.
    fix = p.feed(sentence("GNVTG,054.7,T,034.4,M,005.5,N,010.2,K,A"), 1020)
    assert fix.speed_mps == pytest.approx(10.2 / 3.6) and fix.heading == pytest.approx(54.7)
    fix = p.feed(sentence("GNRMC,123520,A,3351.500,S,15112.600,W,0.0,,230394,,,D"), 2000)
    assert p.new_epoch and fix.quality == "dgps"
    assert fix.lat == pytest.approx(-(33 + 51.5 / 60)) and fix.lon == pytest.approx(-(151 + 12.6 / 60))


def test_bad_checksums_and_garbage_are_counted_and_skipped():
    p = NmeaParser()
    good = p.feed(RMC, 1)
    bad = RMC.replace("4807.038", "4907.038")  # a corrupted digit: the checksum no longer matches
    assert p.feed(bad, 2) is None
    assert p.feed(GGA[:-2] + "00", 3) is None  # wrong checksum
    assert p.feed("$GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,", 4) is None  # none at all
    assert p.feed(b"\x00\xff\xfe garbage \x13", 5) is None
    assert p.feed("GA,123519,4807.038,N*47", 6) is None  # the tail of a line cut by a reconnect
    assert p.feed(sentence("GPGGA,99xx19,abc,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,"), 7) is None  # fields nonsense
    assert p.feed(sentence("GPGSV,3,1,11,03,03,111,00"), 8) is None  # well-formed, not used
    assert p.feed("", 9) is None
    assert p.counts == {"sentences": 1, "bad_checksum": 2, "garbage": 4, "unsupported": 1}
    after = p.feed(GGA, 10)
    assert after.lat == good.lat, "no bad line changed the position"


def test_no_fix_is_none_and_never_the_last_position():
    p = NmeaParser()
    h = FixHistory()
    lines = epoch_sentences(T0, 52.0, 0.1) + epoch_sentences(T0 + 1000, None, None, quality=0)
    for i, line in enumerate(lines):
        fix = p.feed(line, T0 + (0 if i < 3 else 1000))
        if fix:
            h.put(fix, replace_last=not p.new_epoch)
    assert len(h) == 2
    assert fix_dict(h.at(T0 + 500), T0 + 500, 2000, "serial")["fix"] == "gps"
    assert fix_dict(h.at(T0 + 1500), T0 + 1500, 2000, "serial") == {"fix": "none", "source": "serial"}
    assert fix_dict(h.at(T0 - 1), T0 - 1, 2000, "serial") == {"fix": "none", "source": "serial"}


def test_fix_age_and_staleness_at_the_frames_time():
    h = FixHistory()
    h.put(Fix(10_000, "rtk", 52.0, 0.1, 12.5, 90.0, 14, 0.6))
    h.put(Fix(11_000, "rtk", 52.001, 0.1, 13.0, 91.0, 14, 0.6))
    d = fix_dict(h.at(10_400), 10_400, 2000, "gpsd")
    assert d["lat"] == 52.0 and d["age_ms"] == 400 and d["stale"] is False, "a frame gets the fix of its own time"
    assert d["speed_mps"] == 12.5 and d["speed_kmh"] == 45.0 and d["heading"] == 90.0 and d["fix"] == "rtk"
    d = fix_dict(h.at(16_000), 16_000, 2000, "gpsd")
    assert d["lat"] == 52.001 and d["age_ms"] == 5000 and d["stale"] is True
    validator = jsonschema.Draft202012Validator(READ_SCHEMA["properties"]["gps"])
    validator.validate(d)
    validator.validate({"fix": "none"})
    with pytest.raises(jsonschema.ValidationError):
        validator.validate({"fix": "none", "lat": 52.0, "lon": 0.1})  # a position without a fix is refused
    with pytest.raises(jsonschema.ValidationError):
        validator.validate({"fix": "gps"})


# --- gpsd ----------------------------------------------------------------------------------------


class FakeGpsd:
    """A gpsd on loopback speaking its JSON protocol: waits for ?WATCH, then sends the given lines."""

    def __init__(self, lines: list[bytes]):
        self.lines = lines
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(2)
        self.port = self.sock.getsockname()[1]
        self.commands: list[bytes] = []
        self.connections = 0
        self.drop = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            with conn:
                conn.sendall(b'{"class":"VERSION","release":"3.25","proto_major":3,"proto_minor":15}\n')
                self.commands.append(conn.recv(1024))
                for line in self.lines:
                    conn.sendall(line + b"\n")
                self.drop.wait(30)
                self.drop.clear()

    def close(self) -> None:
        self.drop.set()
        self.sock.close()


def test_gpsd_over_a_loopback_socket():
    tpv = {"class": "TPV", "device": "/dev/ttyACM0", "mode": 3, "status": 2, "time": "2026-11-21T10:00:00.000Z",
           "lat": 51.50135, "lon": -0.14189, "altMSL": 12.5, "speed": 8.25, "track": 271.3}
    server = FakeGpsd([
        b'{"class":"DEVICES","devices":[{"path":"/dev/ttyACM0"}]}',
        b'{"class":"SKY","hdop":0.8,"uSat":11,"satellites":[]}',
        b"not json at all",
        json.dumps(tpv).encode(),
    ])
    reader = GpsdReader("127.0.0.1", server.port, reconnect_max_s=0.5)
    reader.start()
    try:
        assert wait_until(lambda: reader.history.latest() is not None), reader.stats()
        assert server.commands[0].startswith(b'?WATCH={"enable":true,"json":true}')
        fix = reader.history.latest()
        assert fix.quality == "dgps" and fix.lat == 51.50135 and fix.lon == -0.14189
        assert fix.speed_mps == 8.25 and fix.heading == pytest.approx(271.3) and fix.altitude_m == 12.5
        assert fix.satellites == 11 and fix.hdop == 0.8, "satellites and dilution come from SKY"
        assert fix.utc_ms == T0
        assert reader.stats()["garbage"] == 1 and reader.stats()["state"] == "running"
        # gpsd goes away and comes back: the reader reconnects by itself.
        server.lines = [json.dumps({"class": "TPV", "mode": 1, "time": "2026-11-21T10:00:05.000Z"}).encode()]
        server.drop.set()
        assert wait_until(lambda: server.connections >= 2 and reader.history.latest().quality == "none", 15), reader.stats()
        now = int(time.time() * 1000)
        assert make_provider_like(reader).fix_at("cam", now) == {"fix": "none", "source": "gpsd"}
    finally:
        reader.stop()
        server.close()


def make_provider_like(reader):
    from alprd.gps.provider import LiveGps

    return LiveGps(reader, 2000)


# --- serial --------------------------------------------------------------------------------------


def test_serial_gps_through_a_pseudo_terminal():
    master, slave = os.openpty()
    path = os.ttyname(slave)
    reader = SerialNmeaReader(path, 38400, reconnect_max_s=0.5)
    reader.start()
    try:
        assert wait_until(lambda: reader.state == "running")
        attrs = termios.tcgetattr(slave)
        assert attrs[4] == termios.B38400 and attrs[5] == termios.B38400, "the configured speed is set on the tty"
        lines = epoch_sentences(T0, 51.5, -0.14, speed_mps=10.0, heading=45.0, quality=4, satellites=17, hdop=0.7)
        noise = [b"\x00\x7f\xffline noise", (RMC.replace("4807", "4808")).encode()]
        os.write(master, b"\r\n".join(noise + [ln.encode() for ln in lines]) + b"\r\n")
        assert wait_until(lambda: reader.history.latest() is not None and reader.history.latest().satellites == 17), \
            reader.stats()
        assert wait_until(lambda: reader.stats().get("sentences") == 3)
        fix = reader.history.latest()
        assert fix.quality == "rtk" and fix.lat == pytest.approx(51.5, abs=1e-6) and fix.lon == pytest.approx(-0.14, abs=1e-6)
        assert fix.speed_mps == pytest.approx(10.0, abs=0.01) and fix.heading == pytest.approx(45.0)
        assert abs(fix.time_ms - time.time() * 1000) < 5000, "live fixes are timed on the unit's clock"
        st = reader.stats()
        assert st["bad_checksum"] == 1 and st["garbage"] == 1 and len(reader.history) == 1
    finally:
        reader.stop()
        os.close(master)
        os.close(slave)


def test_serial_device_missing_is_retried_not_fatal(tmp_path):
    reader = SerialNmeaReader(str(tmp_path / "ttyUSB9"), 9600, reconnect_max_s=0.2)
    reader.start()
    try:
        assert wait_until(lambda: reader.stats().get("errors", 0) >= 2)
        assert reader.state == "reconnecting"
    finally:
        reader.stop()


# --- replay ---------------------------------------------------------------------------------------


def test_replay_log_is_indexed_from_its_first_fix(tmp_path):
    epochs = drive(T0, 10, rate_hz=2, no_fix=(3.0, 4.0))
    text = sentence("GPGGA,095959.00,,,,,0,00,,,M,,M,,") + "\r\n" + drive_log(epochs)  # cold start: no fix yet
    log_path = tmp_path / "drive.nmea"
    log_path.write_text("garbage\r\n" + text)
    log = NmeaLog(log_path)
    assert log.first_fix_ms == T0 and log.duration_ms == 10_000
    assert log.counts["garbage"] == 1
    rp = ReplayGps(log, stale_ms=2000, offset_s=1.0)
    start = 1_800_000_000_000
    rp.observe(Frame("rear", 5, start + 500, None, video_ms=500))  # type: ignore[arg-type]
    # Video 0.5 s + offset 1.0 s = log 1.5 s: the epoch at 1.5 s, age 0.
    d = rp.fix_at("rear", start + 500)
    assert d["lat"] == pytest.approx(epochs[3][1], abs=1e-6) and d["age_ms"] == 0 and d["source"] == "replay"
    assert rp.fix_at("rear", start + 2100)["fix"] == "none", "inside the tunnel the receiver had no fix"
    assert rp.fix_at("other-camera", start)["fix"] == "none", "a camera without a video clock is not guessed at"
    late = rp.fix_at("rear", start + 30_000)
    assert late["stale"] is True and late["age_ms"] == 30_000 + 1000 - 10_000


def test_vehicle_config_works_as_it_is():
    cfg = load_config(REPO / "config" / "vehicle.yaml")
    assert cfg.gps is not None and cfg.gps.source == "replay" and Path(cfg.gps.log).is_file()
    provider = make_provider(cfg)
    assert isinstance(provider, ReplayGps)
    assert provider.log.duration_ms >= 30_000
    assert provider.log.counts["bad_checksum"] + provider.log.counts["garbage"] >= 1
    assert provider.log.counts["unsupported"] >= 1


@pytest.mark.parametrize("gps, fragment", [
    ({"source": "serial"}, "gps.device: required"),
    ({"source": "serial", "device": "/dev/ttyUSB0", "baud": 1234}, "gps.baud: 1234"),
    ({"source": "replay"}, "gps.log: required"),
    ({"source": "replay", "log": "missing.nmea"}, "gps.log: cannot read"),
    ({"source": "glonass"}, "gps.source: 'glonass' is not valid"),
    ({"source": "gpsd", "prot": 2947}, "did you mean 'port'"),
])
def test_gps_config_mistakes_are_one_line(tmp_path, gps, fragment):
    cfg = write_config(tmp_path / "unit.yaml", gps=gps, cameras=[{"id": "rear", "source": "drive.mp4"}])
    with pytest.raises(ConfigError) as e:
        load_config(cfg)
    assert fragment in str(e.value) and "\n" not in str(e.value)


def test_location_and_replay_config_checks(tmp_path):
    with pytest.raises(ConfigError, match="location.lat: 95.0 must be between -90 and 90"):
        load_config(write_config(tmp_path / "a.yaml", location={"lat": 95, "lon": 0}))
    (tmp_path / "d.nmea").write_text(drive_log(drive(T0, 3)))
    with pytest.raises(ConfigError, match="is not a video file"):
        load_config(write_config(tmp_path / "b.yaml", gps={"source": "replay", "log": "d.nmea"},
                                 cameras=[{"id": "c", "source": "rtsp://10.0.0.2/s"}]))
    cfg = load_config(write_config(tmp_path / "c.yaml", location={"lat": 52.2, "lon": 0.12, "heading": 270}))
    assert make_provider(cfg).fix_at("cam1", 0) == {"fix": "fixed", "lat": 52.2, "lon": 0.12, "heading": 270.0,
                                                     "source": "config"}


def test_replayed_drive_tags_every_read_with_the_fix_of_its_frame(tmp_path, traffic_video, models_dir):
    """The test clip (10 fps) replayed with a 5 Hz drive log: each read carries the epoch at or
    before its video time, with the right age; reads inside a GPS outage say so."""
    from alprd.bench.runner import run_bench

    video, _truth = traffic_video
    epochs = drive(T0, 8, rate_hz=5, speed_mps=14.0, no_fix=(2.0, 3.0))
    (tmp_path / "drive.nmea").write_text(drive_log(epochs))
    data = yaml.safe_load(write_config(tmp_path / "unit.yaml", cameras=[{"id": "rear", "source": str(video)}],
                                       models={"dir": str(models_dir)}).read_text())
    data["gps"] = {"source": "replay", "log": "drive.nmea", "stale_ms": 150}
    # Every confident frame read its own event (no voting): reads on many frames, inside and
    # outside the outage, each tagged with the fix of its own frame.
    data["tracking"] = {"enabled": False}
    (tmp_path / "unit.yaml").write_text(yaml.safe_dump(data))
    res = run_bench(video, load_config(tmp_path / "unit.yaml"), thumbnails=False)
    assert res.reads, "models produce no reads on the synthetic video"
    validator = jsonschema.Draft202012Validator(READ_SCHEMA)
    outage = tagged = 0
    for p in res.reads:
        validator.validate(p)
        video_ms = p["frame_index"] * 100  # 10 fps
        g = p["gps"]
        i = video_ms // 200  # the epoch at or before the frame (5 Hz)
        lat, lon, spd, hdg, q = epochs[i][1:]
        if q == 0:
            assert g == {"fix": "none", "source": "replay"}, (video_ms, g)
            outage += 1
            continue
        tagged += 1
        assert g["lat"] == pytest.approx(lat, abs=2e-6) and g["lon"] == pytest.approx(lon, abs=2e-6), (video_ms, g)
        assert g["speed_mps"] == pytest.approx(spd, abs=0.01) and g["heading"] == pytest.approx(hdg, abs=0.1)
        assert g["age_ms"] == video_ms - i * 200 and g["stale"] is (g["age_ms"] > 150)
        assert g["fix"] == "gps" and g["satellites"] == 9 and g["source"] == "replay"
    assert tagged and outage, f"the clip's reads should fall both in and out of the outage ({tagged}, {outage})"


def test_daemon_publishes_reads_with_the_replayed_fix_and_gate_stats(tmp_path, broker, subscriber_factory, daemons,
                                                                     traffic_video, models_dir):
    """`alprd run` with gps.source replay: every published read carries a schema-valid `gps` object
    from the log, and the stats show the motion gate's counts and the GPS source."""
    import paho.mqtt.publish as mqtt_publish

    video, _ = traffic_video
    (tmp_path / "drive.nmea").write_text(drive_log(drive(T0, 10, rate_hz=5)))
    cfg = write_config(tmp_path / "vehicle.yaml", cameras=[{"id": "rear", "source": str(video)}],
                       models={"dir": str(models_dir)}, mqtt={"port": broker.port}, stats_interval_s=0.3,
                       gps={"source": "replay", "log": "drive.nmea"})
    sub = subscriber_factory(broker.port)
    probe = f"probe/{time.time_ns()}"
    assert wait_until(lambda: (mqtt_publish.single(probe, b"x", hostname="127.0.0.1", port=broker.port) or True)
                      and any(t == probe for t, _, _ in sub.messages), 15)
    d = daemons(cfg, "--until-sources-end")
    assert d.wait(120) == 0, d.output[-3000:]
    assert sub.wait_for(lambda s: s.payloads("/rear/read") and s.payloads("/stats"), 10), d.output[-3000:]
    reads = sub.payloads("/rear/read")
    validator = jsonschema.Draft202012Validator(READ_SCHEMA)
    for p in reads:
        validator.validate(p)
        assert p["gps"]["source"] == "replay" and p["gps"]["fix"] == "gps" and p["gps"]["age_ms"] < 200
    stats = sub.payloads("/stats")[-1]
    assert stats["gate"]["rear"]["analysed"] > 0 and stats["gps"]["source"] == "replay"
