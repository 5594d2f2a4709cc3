"""Faults and hostile input in the files and streams alprd parses: each is refused at once in one
line, or skipped and counted, and nothing hangs, recurses, balloons or dies for good.

One test per row of the issue (YAML bombs and deep nesting, oversized and non-regular files, a
policy symlinked to a system file, a decompression-bomb image, a hostile gpsd, impossible NMEA
values, a hotlist with a bad row, duplicate keys); the config loader's own rows are in
test_config_hostile.py."""

from __future__ import annotations

import calendar
import json
import logging
import os
import resource
import socket
import struct
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path

import cv2
import jsonschema
import numpy as np
import pytest
from conftest import wait_until, with_video, write_config

from alprd.config import CameraConfig
from alprd.errors import ConfigError
from alprd.gps.fix import fix_dict
from alprd.gps.nmea import NmeaParser, epoch_sentences, sentence
from alprd.gps.provider import ReplayGps
from alprd.gps.readers import MAX_GPSD_LINE, GpsdReader, LineSplitter, NmeaLog
from alprd.hotlist.hotlist import Hotlist, HotlistError, read_hotlist
from alprd.privacy.policy import load_policy
from alprd.safe_yaml import load_yaml
from alprd.sources.sources import Frame, ImageFolderSource
from alprd.sources.still import MAX_IMAGE_PIXELS, ImageRefused, image_size, load_still

REPO = Path(__file__).resolve().parents[2]
GPS_SCHEMA = json.loads((REPO / "alprd" / "publish" / "schema" / "read-v1.schema.json").read_text())["properties"]["gps"]
T0 = calendar.timegm((2026, 11, 21, 10, 0, 0)) * 1000


def run_alprd(*args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH", "")]))}
    return subprocess.run([sys.executable, "-m", "alprd", *args], capture_output=True, text=True, cwd=cwd, env=env,
                          timeout=timeout)


def one_error_line(res: subprocess.CompletedProcess) -> str:
    assert res.returncode == 2 and "Traceback" not in res.stderr, (res.returncode, res.stderr[-2000:])
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("alprd: error: "), res.stderr
    return lines[0]


def refused(fn, *args, error: type[Exception] = ConfigError) -> str:
    """The one-line message `fn(*args)` is refused with, after checking it came at once."""
    t0 = time.monotonic()
    with pytest.raises(error) as e:
        fn(*args)
    assert time.monotonic() - t0 < 5, "refused, but only after a long time"
    msg = str(e.value)
    assert "\n" not in msg, msg
    return msg


# --- YAML bomb, deep nesting, 200 MB, /dev/zero ------------------------------------------------

BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]\n" for i in range(8))


@pytest.mark.timeout(60)
def test_yaml_bomb_deep_nesting_huge_and_endless_files_are_refused_at_once(tmp_path):
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(BOMB)  # 9^9 strings once expanded
    assert "line 1, column 4: YAML anchors and aliases (& and *) are not allowed" in refused(load_policy, bomb)

    deep = tmp_path / "deep.yaml"
    deep.write_text("custodian: " + "[" * 5000 + "]" * 5000 + "\n")
    assert "nested more than 32 levels deep" in refused(load_policy, deep)
    block = tmp_path / "block.yaml"
    block.write_text("".join(" " * i + "k:\n" for i in range(1000)))  # 5000 block levels would be 12 MB
    assert "nested more than 32 levels deep" in refused(load_policy, block)

    huge = tmp_path / "huge.yaml"
    with open(huge, "wb") as f:  # sparse: 200 MB on paper, nothing on disk
        f.truncate(200 << 20)
    assert f"policy file is too big ({200 << 20} bytes; at most {1 << 20})" in refused(load_policy, huge)

    assert "/dev/zero: cannot read policy file: it is a device, not a regular file" in refused(load_policy, "/dev/zero")
    fifo = tmp_path / "fifo.yaml"
    os.mkfifo(fifo)  # nobody writes: a plain open() would block for ever
    assert "it is a FIFO, not a regular file" in refused(load_policy, fifo)
    assert "it is a folder, not a regular file" in refused(load_policy, tmp_path)

    # The same through the CLI: a config whose policy is /dev/zero is one line, exit 2, no hang.
    cfg = write_config(tmp_path / "alprd.yaml", policy="/dev/zero")
    line = one_error_line(run_alprd("check-config", str(cfg), cwd=tmp_path, timeout=60))
    assert "/dev/zero: cannot read policy file: it is a device" in line

    # The hotlist and the NMEA log are read with the same rules.
    (tmp_path / "h.csv").symlink_to("/dev/zero")
    assert "it is a device, not a regular file" in refused(read_hotlist, tmp_path / "h.csv", error=HotlistError)
    (tmp_path / "h.yaml").write_text("- {plate: AB123, reason: x}\n- *a\n")
    assert "anchors and aliases" in refused(read_hotlist, tmp_path / "h.yaml", error=HotlistError)
    with open(tmp_path / "big.nmea", "wb") as f:
        f.truncate(600 << 20)
    assert "gps.log: cannot read" in refused(NmeaLog, tmp_path / "big.nmea")


# --- a policy symlinked to a system file ---------------------------------------------------------

@pytest.mark.parametrize("content", [
    None,  # /etc/passwd itself
    "db_password: hunter2-swordfish\napi_token: 0f3c9a77\n",  # YAML-shaped: keys and values are the secret
    "SECRET-FIRST-LINE\twith a tab: x\n",  # a YAML syntax error, whose message normally quotes the line
    "'SECRET-FIRST-LINE unterminated\n",
    "!SECRET-TAG-VALUE x\n",  # a tag YAML names in its "no constructor" message
    "- SECRET-FIRST-LINE\n- second\n",
])
def test_policy_symlinked_to_a_system_file_never_echoes_it(tmp_path, content):
    target = Path("/etc/passwd")
    if content is not None:
        target = tmp_path / "system-file"
        target.write_text(content)
    link = tmp_path / "policy.yaml"
    link.symlink_to(target)
    text = target.read_text()
    cfg = write_config(tmp_path / "alprd.yaml", policy=str(link))
    line = one_error_line(run_alprd("check-config", str(cfg), cwd=tmp_path))
    said = line.replace(str(link), "")
    assert text.splitlines()[0] not in said and "SECRET" not in said and "hunter2" not in said
    assert "db_password" not in said and "root:x" not in said, line
    # Likewise a hotlist path pointing at it.
    hl = tmp_path / "hotlist.yaml"
    hl.symlink_to(target)
    msg = refused(read_hotlist, hl, error=HotlistError).replace(str(hl), "")
    assert text.splitlines()[0] not in msg and "SECRET" not in msg and "hunter2" not in msg, msg


# --- a decompression-bomb image ----------------------------------------------------------------

def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_bomb(path: Path, width: int = 30000, height: int = 30000) -> Path:
    """A PNG whose header claims width x height RGB: the first rows of zeros, compressed, are
    enough for any decoder to allocate the whole image (2.7 GB) before it finds the data short."""
    rows = zlib.compress(b"\x00" * ((width * 3 + 1) * 64), 9)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
                     + _chunk(b"IDAT", rows) + _chunk(b"IEND", b""))
    return path


def jpeg_bomb(path: Path, width: int = 30000, height: int = 30000) -> Path:
    ok, buf = cv2.imencode(".jpg", np.zeros((8, 8, 3), np.uint8))
    data = bytearray(buf.tobytes())
    sof = data.index(b"\xff\xc0")
    struct.pack_into(">HH", data, sof + 5, height, width)
    path.write_bytes(bytes(data))
    return path


def test_decompression_bomb_image_is_refused_before_decoding(tmp_path, models_dir, caplog):
    bomb = png_bomb(tmp_path / "bomb.png")
    assert bomb.stat().st_size < 1 << 20 and image_size(bomb.read_bytes()) == (30000, 30000)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    msg = refused(load_still, bomb, error=ImageRefused)
    assert msg == f"{bomb}: 30000x30000 pixels (900 MP) is over the 40 MP image limit; not decoded"
    assert "over the 40 MP image limit" in refused(load_still, jpeg_bomb(tmp_path / "bomb.jpg"), error=ImageRefused)
    # Nothing was allocated for it: a decode would have taken 2.7 GB.
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0 < 200_000, "KiB"
    # One row over the cap is refused; at the cap the header passes (this one is then found short).
    assert "over the 40 MP" in refused(load_still, png_bomb(tmp_path / "over.png", 8000, 5001), error=ImageRefused)
    at_cap = refused(load_still, png_bomb(tmp_path / "at.png", 8000, MAX_IMAGE_PIXELS // 8000), error=ImageRefused)
    assert at_cap.endswith("is not a readable image (corrupt or truncated)"), at_cap
    # A header with no size is not guessed at.
    (tmp_path / "noheader.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    assert "is not a readable image" in refused(load_still, tmp_path / "noheader.png", error=ImageRefused)

    # alprd read: one line for the bomb, the image beside it still read, exit 1.
    good = tmp_path / "good.jpg"
    cv2.imwrite(str(good), np.full((120, 200, 3), 128, np.uint8))
    res = run_alprd("read", "--models", str(models_dir), str(bomb), str(good), cwd=tmp_path)
    assert res.returncode == 1 and "Traceback" not in res.stderr, res.stderr
    assert res.stderr.strip().splitlines() == [f"alprd: error: {msg}"], res.stderr
    (out,) = [json.loads(ln) for ln in res.stdout.splitlines()]
    assert out["image"] == str(good)

    # An images camera: the bomb skipped and counted, one ERROR line, the next image read.
    folder = tmp_path / "cam"
    folder.mkdir()
    cv2.imwrite(str(folder / "a.png"), np.zeros((40, 60, 3), np.uint8))
    png_bomb(folder / "b.png")
    cv2.imwrite(str(folder / "c.png"), np.zeros((40, 60, 3), np.uint8))
    src = ImageFolderSource(CameraConfig(id="cam1", source=str(folder), kind="images"))
    with caplog.at_level(logging.ERROR):
        frames = list(src.frames(threading.Event()))
    assert [f.image.shape for f in frames] == [(40, 60, 3)] * 2 and src.status.errors == 1
    assert src.status.state == "finished"
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [f"camera cam1: {folder / 'b.png'}: 30000x30000 pixels (900 MP) is over the 40 MP image limit; "
                      "not decoded; skipped"]


# --- a hostile gpsd --------------------------------------------------------------------------------

TPV = {"class": "TPV", "mode": 3, "time": "2026-11-21T10:00:00.000Z", "lat": 51.5, "lon": -0.14, "speed": 8.0}


class HostileGpsd:
    """A gpsd on loopback that sends each connection its own list of raw byte strings, then closes."""

    def __init__(self, sessions: list[list[bytes]]):
        self.sessions = sessions
        self.connections = 0
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(4)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                session = self.sessions[min(self.connections, len(self.sessions) - 1)]
                self.connections += 1
                try:
                    conn.recv(4096)  # ?WATCH
                    for data in session:
                        conn.sendall(data)
                    time.sleep(0.3)
                except OSError:
                    pass

    def close(self) -> None:
        self.sock.close()


@pytest.mark.timeout(60)
def test_hostile_gpsd_is_survived_counted_and_reconnected():
    endless = [b"x" * (1 << 20)] * 16  # 16 MB of one line that never ends
    server = HostileGpsd([
        [b"[" * 100_000 + b"\n", b"[" * 60_000 + b"\n", b'{"class": "TPV", "mode": "3", "lat": "x"}\n',
         b'{"class": 1e999}\n', *endless],
        [json.dumps(TPV).encode() + b"\n"],
    ])
    reader = GpsdReader("127.0.0.1", server.port, reconnect_max_s=0.5)
    reader.start()
    try:
        assert wait_until(lambda: reader.history.latest() is not None, 30), reader.stats()
        st = reader.stats()
        # 100000 '[' are over the line cap; 60000 are under it and nest past json's recursion limit.
        assert st["garbage"] == 2 and st["unsupported"] == 1, st
        assert st["overlong"] == 2 and server.connections >= 2 and st["errors"] >= 1, st
        assert reader._thread is not None and reader._thread.is_alive()
        assert reader.history.latest().lat == 51.5
    finally:
        reader.stop()
        server.close()
    # The buffer behind it: never more than a line's cap, however long the line.
    lines = LineSplitter(MAX_GPSD_LINE)
    for _ in range(64):
        assert lines.feed(b"y" * (1 << 20)) == []
        assert lines.pending() <= MAX_GPSD_LINE
    assert lines.feed(b"tail\nnext\n") == [b"next"] and lines.overlong == 1


# --- NMEA with valid checksums and impossible values ------------------------------------------------

def test_impossible_nmea_values_are_marked_invalid_never_published(tmp_path):
    good = epoch_sentences(T0, 51.5, -0.14, speed_mps=10.0, heading=90.0)
    rmc, gga, vtg = epoch_sentences(T0 + 1000, 51.5, -0.14, speed_mps=10.0, heading=90.0)
    bad = [
        sentence(rmc[1:-3].replace(",19.44,90.0,", ",-19.44,400.0,")),  # negative speed, course 400
        sentence(gga[1:-3].replace(",40.0,M,", ",99999.0,M,")),  # altitude 100 km
        sentence(vtg[1:-3].replace("90.0,T", "-5.0,T").replace(",36.00,K", ",-36.00,K")),
    ]
    assert bad[0] != rmc and bad[1] != gga and bad[2] != vtg
    far = epoch_sentences(T0 + 2000, 51.5, -0.14)
    far[0] = sentence(far[0][1:-3].replace("5130.0000,N", "9530.0000,N"))  # latitude 95.5
    far[1] = sentence(far[1][1:-3].replace("5130.0000,N", "9530.0000,N"))
    feb31 = epoch_sentences(T0 + 3000, 51.5, -0.14)
    feb31[0] = sentence(feb31[0][1:-3].replace(",211126,", ",310226,"))
    log = tmp_path / "drive.nmea"
    log.write_text("\r\n".join(good + bad + far + feb31) + "\r\n")

    nmea = NmeaLog(log)
    assert nmea.counts["out_of_range"] == 8, nmea.counts  # speed x2, heading x2, altitude, position x2, date
    fixes = nmea.history.fixes()
    assert len(fixes) == 4
    assert fixes[0].invalid == () and fixes[0].speed_mps == pytest.approx(10.0, abs=0.01)
    assert fixes[1].speed_mps is None and fixes[1].heading is None and fixes[1].altitude_m is None
    assert fixes[1].invalid == ("altitude_m", "heading", "speed_mps") and fixes[1].has_position
    assert not fixes[2].has_position and fixes[2].lat is None and fixes[2].invalid == ("position",)
    # An impossible date is not taken: the clock goes on from the last real one.
    assert fixes[3].invalid == () and fixes[3].utc_ms == T0 + 3000

    # What a read would carry: the impossible values are absent and said to be invalid.
    replay = ReplayGps(nmea, stale_ms=5000)
    replay.observe(Frame("cam", 0, T0, np.zeros((1, 1, 3), np.uint8), video_ms=0))
    validator = jsonschema.Draft202012Validator(GPS_SCHEMA)
    for t, invalid in [(1000, ["altitude_m", "heading", "speed_mps"]), (2000, ["position"])]:
        d = replay.fix_at("cam", T0 + t)
        validator.validate(d)
        assert d["invalid"] == invalid and "speed_mps" not in d and "altitude_m" not in d, d
    assert replay.fix_at("cam", T0 + 2000)["fix"] == "none"

    # gpsd's TPV and SKY go through the same limits.
    reader = GpsdReader()
    reader.handle(json.dumps({"class": "SKY", "hdop": -3, "uSat": 5000}).encode(), T0)
    fix = reader.handle(json.dumps({**TPV, "speed": -4.0, "track": 720.0, "alt": 1e7}).encode(), T0)
    assert fix.speed_mps is None and fix.heading is None and fix.altitude_m is None
    assert fix.satellites is None and fix.hdop is None and fix.lat == 51.5
    assert reader.counts["out_of_range"] == 5
    validator.validate(fix_dict(fix, T0, 2000, "gpsd"))
    nowhere = reader.handle(json.dumps({**TPV, "lat": 123.0}).encode(), T0)
    assert fix_dict(nowhere, T0, 2000, "gpsd") == {"fix": "none", "source": "gpsd", "invalid": ["position"]}

    parser = NmeaParser()  # an unknown fix-quality digit vouches for no position
    line = epoch_sentences(T0, 51.5, -0.14)[1].replace(",1,09,", ",9,09,")
    assert parser.feed(sentence(line[1:-3]), 1).has_position is False and parser.counts["out_of_range"] == 1
    first = epoch_sentences(T0, 51.5, -0.14)[0].replace(",211126,", ",451326,")  # no date known before it
    fix = NmeaParser().feed(sentence(first[1:-3]), 1)
    assert fix.utc_ms is None and fix.invalid == ("utc",) and fix.has_position


# --- a hotlist with one bad row ---------------------------------------------------------------------

def test_hotlist_bad_row_is_skipped_counted_and_check_config_loads_it(tmp_path, caplog):
    hl = tmp_path / "hotlist.csv"
    hl.write_text("plate,reason,priority\nAB123CD,stolen,2\nSECRETPLATE9,wanted,high\nXY98765,wanted,1\n"
                  "QQ11111,amber,1\n")
    with caplog.at_level(logging.INFO):
        h = Hotlist(str(hl))
    assert h.status()["entries"] == 3 and h.status()["skipped"] == 1 and not h.status()["error"]
    assert h.match("XY98765") and h.match("QQ11111") and h.match("AB123CD")
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [f"hotlist: {hl}:3: priority 'high' is not an integer between -1000000 and 1000000; "
                        "row skipped"], warnings
    assert not any("SECRETPLATE9" in r.getMessage() for r in caplog.records), "plate text in the log"
    # Rows after a quoted field that spans lines keep their own line numbers.
    multi = tmp_path / "multi.csv"
    multi.write_text('plate,reason\nAB123,"two\nlines"\n,missing plate\nCD456,ok\n')
    loaded = read_hotlist(multi)
    assert [e.plate for e in loaded.entries] == ["AB123", "CD456"]
    assert loaded.problems == (f"{multi}:4: plate is missing or has no letters or digits",)
    yml = tmp_path / "hotlist.yaml"
    yml.write_text("entries:\n  - {plate: AB123, reason: x}\n  - {plate: CD456}\n  - {plate: EF789, reason: y}\n")
    loaded = read_hotlist(yml)
    assert len(loaded.entries) == 2 and loaded.problems == (f"{yml}:3: reason is missing for plate entry",)

    cfg = write_config(tmp_path / "alprd.yaml", hotlist={"path": str(hl)}, cameras=with_video(tmp_path))
    res = run_alprd("check-config", str(cfg), cwd=tmp_path)
    assert res.returncode == 0 and "Traceback" not in res.stderr, res.stderr
    assert f"; hotlist {hl}: 3 entries, 1 bad row(s) skipped" in res.stdout, res.stdout
    assert res.stderr.strip().splitlines() == [f"alprd: warning: {hl}:3: priority 'high' is not an integer between "
                                               "-1000000 and 1000000; row skipped"]
    assert "SECRETPLATE9" not in res.stdout + res.stderr
    # A file with no good row at all is an error check-config reports, as the daemon keeps its old list.
    hl.write_text("plate,reason\nAB123\nCD456\n")  # a half-written copy
    line = one_error_line(run_alprd("check-config", str(cfg), cwd=tmp_path))
    assert line.startswith(f"alprd: error: hotlist.path: {hl}:2: reason is missing") and "none of its 2 row(s) is valid" in line


# --- duplicate keys ---------------------------------------------------------------------------------

def test_duplicate_yaml_keys_are_refused(tmp_path):
    pol = tmp_path / "policy.yaml"
    pol.write_text("purposes: [a]\nretention:\n  reads_h: 1\n  reads_h: 100000\n")
    assert refused(load_policy, pol) == (f"{pol}: line 4, column 3: duplicate key 'reads_h' (first at line 3) "
                                         "(config key policy:)")
    hl = tmp_path / "h.yaml"
    hl.write_text("- {plate: AB123, reason: x, reason: y}\n")
    assert "line 1, column 29: duplicate key 'reason' (first at line 1)" in refused(read_hotlist, hl, error=HotlistError)
    merged = tmp_path / "m.yaml"
    merged.write_text("a: 1\n<<: {a: 2}\n")
    assert "merge keys (<<) are not allowed" in refused(lambda: load_yaml(merged, what="config"))
