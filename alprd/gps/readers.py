"""Receivers: NMEA from a serial device (a tty read with termios, no extra dependency), gpsd's
JSON over TCP, and an NMEA log replayed in step with a recorded video. Live readers run a thread
that reconnects with backoff and keep a FixHistory indexed by the unit's clock."""

from __future__ import annotations

import json
import logging
import os
import select
import socket
import termios
import threading
import time
import tty
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

from alprd.errors import ConfigError
from alprd.gps.fix import Fix, FixHistory, in_range
from alprd.gps.nmea import DAY_MS, NmeaParser
from alprd.safe_yaml import read_regular_file

log = logging.getLogger(__name__)

BAUD = {4800: termios.B4800, 9600: termios.B9600, 19200: termios.B19200, 38400: termios.B38400,
        57600: termios.B57600, 115200: termios.B115200, 230400: termios.B230400, 460800: termios.B460800}

# gpsd TPV "status": what kind of fix the receiver reports (gpsd 3.20+).
GPSD_STATUS = {0: "gps", 1: "gps", 2: "dgps", 3: "rtk", 4: "float_rtk", 5: "estimated", 6: "estimated",
               7: "none", 8: "simulation"}
GPSD_CLASSES = ("VERSION", "DEVICES", "DEVICE", "WATCH", "TPV", "SKY", "GST", "ATT", "TOFF", "PPS", "OSC",
                "POLL", "ERROR", "RTCM2", "RTCM3", "AIS", "SUBFRAME", "RAW", "IMU")


MAX_GPSD_LINE = 64 << 10  # gpsd's biggest reports (SKY with every satellite) are a few KiB
MAX_NMEA_LINE = 4096  # a sentence is at most 82 characters; no newline in 4 KiB: not NMEA (wrong baud rate?)
MAX_NMEA_LOG_BYTES = 512 << 20  # a day's drive at 10 Hz is about 250 MB


def now_ms() -> int:
    return int(time.time() * 1000)


class LineSplitter:
    """Bytes from a stream cut into lines, none longer than `max_len`: a peer that never sends a
    newline costs at most `max_len` bytes of buffer, and the over-long line is dropped and counted
    (`overlong`), up to the next newline."""

    def __init__(self, max_len: int):
        self.max_len = max_len
        self.overlong = 0
        self._buf = b""
        self._dropping = False  # inside an over-long line: wait for its end

    def feed(self, chunk: bytes) -> list[bytes]:
        buf = self._buf + chunk
        if self._dropping:
            end = buf.find(b"\n")
            if end < 0:
                self._buf = b""
                return []
            buf, self._dropping = buf[end + 1:], False
        *lines, rest = buf.split(b"\n")
        out = []
        for line in lines:
            if len(line) > self.max_len:
                self.overlong += 1
            else:
                out.append(line)
        if len(rest) > self.max_len:
            self.overlong += 1
            rest, self._dropping = b"", True
        self._buf = rest
        return out

    def pending(self) -> int:
        return len(self._buf)


class LiveReader:
    """Base of the serial and gpsd readers: a thread, a history, counters and a state for status."""

    name = "gps"

    def __init__(self, reconnect_max_s: float = 30.0):
        self.history = FixHistory()
        self.counts: Counter[str] = Counter()
        self.state = "starting"
        self.reconnect_max_s = reconnect_max_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"gps-{self.name}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(5)

    def _run(self) -> None:
        delay = 0.5
        while not self._stop.is_set():
            try:
                self._session()
                delay = 0.5
            except OSError as e:
                self.counts["errors"] += 1
                if self.state != "reconnecting":
                    log.warning("gps %s: %s; reconnecting with backoff", self.name, e.strerror or e)
                self.state = "reconnecting"
            except Exception as e:  # a receiver's bytes must never end the thread for good
                self.counts["errors"] += 1
                if self.state != "reconnecting":
                    log.error("gps %s: unexpected %s reading the receiver; reconnecting with backoff",
                              self.name, type(e).__name__)
                self.state = "reconnecting"
            if not self._stop.is_set():
                self._stop.wait(delay)
                delay = min(self.reconnect_max_s, delay * 2)

    def _session(self) -> None:
        raise NotImplementedError

    def stats(self) -> dict[str, Any]:
        return {"state": self.state, **dict(self.counts)}


class SerialNmeaReader(LiveReader):
    """NMEA 0183 from a serial GPS (USB receivers show up as /dev/ttyUSBn or /dev/ttyACMn)."""

    name = "serial"

    def __init__(self, device: str, baud: int = 9600, reconnect_max_s: float = 30.0):
        super().__init__(reconnect_max_s)
        self.device, self.baud = device, baud
        self.parser = NmeaParser()

    def _open(self) -> int:
        fd = os.open(self.device, os.O_RDONLY | os.O_NOCTTY | os.O_NONBLOCK)
        try:
            if os.isatty(fd):
                tty.setraw(fd)
                attrs = termios.tcgetattr(fd)
                attrs[4] = attrs[5] = BAUD[self.baud]  # ispeed, ospeed
                attrs[2] |= termios.CLOCAL | termios.CREAD  # ignore modem lines: receivers have none
                termios.tcsetattr(fd, termios.TCSANOW, attrs)
        except (termios.error, OSError):
            os.close(fd)
            raise
        return fd

    def _session(self) -> None:
        fd = self._open()
        self.state = "running"
        log.info("gps serial: reading %s at %d baud", self.device, self.baud)
        lines = LineSplitter(MAX_NMEA_LINE)
        try:
            while not self._stop.is_set():
                ready, _, _ = select.select([fd], [], [], 0.5)
                if not ready:
                    continue
                chunk = os.read(fd, 4096)
                if not chunk:
                    raise OSError("device closed")
                before = lines.overlong
                for line in lines.feed(chunk):
                    self._line(line)
                self.parser.counts["garbage"] += lines.overlong - before
        finally:
            os.close(fd)

    def _line(self, line: bytes) -> None:
        fix = self.parser.feed(line, now_ms())
        if fix is not None:
            self.history.put(fix, replace_last=not self.parser.new_epoch)

    def stats(self) -> dict[str, Any]:
        return {**super().stats(), **dict(self.parser.counts)}


class GpsdReader(LiveReader):
    """gpsd's JSON protocol: `?WATCH={"enable":true,"json":true}`, then TPV (position) and SKY
    (satellites, dilution) reports."""

    name = "gpsd"

    def __init__(self, host: str = "127.0.0.1", port: int = 2947, reconnect_max_s: float = 30.0):
        super().__init__(reconnect_max_s)
        self.host, self.port = host, port
        self._sky: dict[str, Any] = {}

    def _session(self) -> None:
        with socket.create_connection((self.host, self.port), timeout=5) as s:
            s.sendall(b'?WATCH={"enable":true,"json":true}\n')
            s.settimeout(1.0)
            self.state = "running"
            log.info("gps gpsd: watching %s:%d", self.host, self.port)
            lines = LineSplitter(MAX_GPSD_LINE)
            while not self._stop.is_set():
                try:
                    chunk = s.recv(65536)
                except TimeoutError:
                    continue
                if not chunk:
                    raise OSError("gpsd closed the connection")
                before = lines.overlong
                for line in lines.feed(chunk):
                    self.handle(line, now_ms())
                if lines.overlong > before:
                    self.counts["overlong"] += lines.overlong - before

    def handle(self, line: bytes, received_ms: int) -> Fix | None:
        if not line.strip():
            return None
        try:
            msg = json.loads(line)
        except (ValueError, RecursionError):  # not JSON, not UTF-8, or '[' nested past the parser's limit
            self.counts["garbage"] += 1
            return None
        if not isinstance(msg, dict):
            self.counts["garbage"] += 1
            return None
        cls = msg.get("class")
        if cls not in GPSD_CLASSES:  # a counter per name the peer makes up would grow without bound
            self.counts["unsupported"] += 1
            return None
        self.counts[cls.lower()] += 1
        if cls == "SKY":
            used = msg.get("uSat")
            if used is None and isinstance(msg.get("satellites"), list):
                used = sum(1 for sat in msg["satellites"] if isinstance(sat, dict) and sat.get("used") is True)
            hdop = msg.get("hdop")
            for name, value in (("satellites", used), ("hdop", hdop)):
                if value is not None and not in_range(name, value):
                    self.counts["out_of_range"] += 1
            self._sky = {"satellites": used if in_range("satellites", used) and isinstance(used, int) else None,
                         "hdop": float(hdop) if in_range("hdop", hdop) else None}
            return None
        if cls != "TPV":
            return None
        try:
            fix = self._tpv(msg, received_ms)
        except (TypeError, ValueError):
            self.counts["garbage"] += 1
            return None
        self.history.put(fix)
        return fix

    def _tpv(self, m: dict[str, Any], received_ms: int) -> Fix:
        mode = m.get("mode", 0)
        if not isinstance(mode, int) or isinstance(mode, bool):
            raise ValueError("mode")
        invalid: list[str] = []
        utc = None
        if isinstance(m.get("time"), str):
            utc = int(datetime.fromisoformat(m["time"].replace("Z", "+00:00")).timestamp() * 1000)

        def checked(name: str, value: Any) -> float | None:
            if value is None:
                return None
            if not in_range(name, value):
                invalid.append(name)
                return None
            return float(value)

        lat, lon = m.get("lat"), m.get("lon")
        if mode >= 2 and lat is not None and lon is not None and not (in_range("lat", lat) and in_range("lon", lon)):
            invalid.append("position")
            mode = 0
        if mode < 2 or lat is None or lon is None:
            if invalid:
                self.counts["out_of_range"] += len(invalid)
            return Fix(received_ms, "none", utc_ms=utc, invalid=tuple(invalid))
        status = m.get("status", 1)
        quality = GPSD_STATUS.get(status, "gps") if isinstance(status, int) else "gps"
        speed = checked("speed_mps", m.get("speed"))
        track = checked("heading", m.get("track"))
        alt = checked("altitude_m", m.get("altMSL", m.get("alt"))) if mode == 3 else None
        if invalid:
            self.counts["out_of_range"] += len(invalid)
        return Fix(received_ms, quality, lat=float(lat), lon=float(lon), speed_mps=speed,
                   heading=track % 360 if track is not None else None,
                   satellites=self._sky.get("satellites"), hdop=self._sky.get("hdop"),
                   altitude_m=alt, utc_ms=utc, invalid=tuple(invalid))


class NmeaLog:
    """An NMEA log (as recorded from a receiver, e.g. `cat /dev/ttyUSB0 > drive.nmea`) indexed by
    the receiver's time of each fix, in ms from the log's first fix."""

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)
        self.parser = NmeaParser()
        self.history = FixHistory(max_len=None)
        try:
            text = read_regular_file(self.path, what="NMEA log", max_bytes=MAX_NMEA_LOG_BYTES)
        except ConfigError as e:
            raise ConfigError(f"gps.log: cannot read {self.path} ({str(e).split(': ', 1)[-1]})") from None
        raw: list[Fix] = []
        base_day = 0
        last_tod = None
        for line in text.splitlines():
            fix = self.parser.feed(line)
            if fix is None:
                continue
            # The log's clock: the receiver's UTC when it sent a date, else time of day (with midnight rollovers).
            if fix.utc_ms is not None:
                t = fix.utc_ms
            else:
                tod = self.parser.tod_ms
                if tod is None:
                    continue
                if last_tod is not None and tod + DAY_MS // 2 < last_tod:
                    base_day += DAY_MS
                last_tod = tod
                t = base_day + tod
            fix = Fix(t, *_rest(fix))
            if raw and not self.parser.new_epoch:
                raw[-1] = fix
            else:
                raw.append(fix)
        first = next((f for f in raw if f.has_position), None)
        if first is None:
            raise ConfigError(f"gps.log: {self.path} holds no position fix "
                              f"({self.parser.counts['sentences']} good sentences, "
                              f"{self.parser.counts['bad_checksum']} bad checksums, {self.parser.counts['garbage']} garbage lines)")
        self.first_fix_ms = first.time_ms
        for f in raw:
            self.history.put(Fix(f.time_ms - self.first_fix_ms, *_rest(f)))
        self.duration_ms = raw[-1].time_ms - self.first_fix_ms

    @property
    def counts(self) -> Counter[str]:
        return self.parser.counts


def _rest(f: Fix) -> tuple:
    return (f.quality, f.lat, f.lon, f.speed_mps, f.heading, f.satellites, f.hdop, f.altitude_m, f.utc_ms, f.invalid)
