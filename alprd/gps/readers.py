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
from alprd.gps.fix import Fix, FixHistory
from alprd.gps.nmea import DAY_MS, NmeaParser

log = logging.getLogger(__name__)

BAUD = {4800: termios.B4800, 9600: termios.B9600, 19200: termios.B19200, 38400: termios.B38400,
        57600: termios.B57600, 115200: termios.B115200, 230400: termios.B230400, 460800: termios.B460800}

# gpsd TPV "status": what kind of fix the receiver reports (gpsd 3.20+).
GPSD_STATUS = {0: "gps", 1: "gps", 2: "dgps", 3: "rtk", 4: "float_rtk", 5: "estimated", 6: "estimated",
               7: "none", 8: "simulation"}


def now_ms() -> int:
    return int(time.time() * 1000)


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
        buf = b""
        try:
            while not self._stop.is_set():
                ready, _, _ = select.select([fd], [], [], 0.5)
                if not ready:
                    continue
                chunk = os.read(fd, 4096)
                if not chunk:
                    raise OSError("device closed")
                buf += chunk
                *lines, buf = buf.split(b"\n")
                for line in lines:
                    self._line(line)
                if len(buf) > 4096:  # no newline in 4 KiB: not NMEA (wrong baud rate?)
                    self.parser.counts["garbage"] += 1
                    buf = b""
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
            buf = b""
            while not self._stop.is_set():
                try:
                    chunk = s.recv(65536)
                except TimeoutError:
                    continue
                if not chunk:
                    raise OSError("gpsd closed the connection")
                buf += chunk
                *lines, buf = buf.split(b"\n")
                for line in lines:
                    self.handle(line, now_ms())

    def handle(self, line: bytes, received_ms: int) -> Fix | None:
        try:
            msg = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError):
            self.counts["garbage"] += 1
            return None
        if not isinstance(msg, dict):
            self.counts["garbage"] += 1
            return None
        cls = msg.get("class")
        self.counts[f"{str(cls).lower()}"] += 1
        if cls == "SKY":
            used = msg.get("uSat")
            if used is None and isinstance(msg.get("satellites"), list):
                used = sum(1 for sat in msg["satellites"] if isinstance(sat, dict) and sat.get("used"))
            self._sky = {"satellites": used, "hdop": msg.get("hdop")}
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
        mode = int(m.get("mode", 0))
        utc = None
        if isinstance(m.get("time"), str):
            utc = int(datetime.fromisoformat(m["time"].replace("Z", "+00:00")).timestamp() * 1000)
        if mode < 2 or "lat" not in m or "lon" not in m:
            return Fix(received_ms, "none", utc_ms=utc)
        quality = GPSD_STATUS.get(int(m.get("status", 1)), "gps")
        alt = m.get("altMSL", m.get("alt"))
        return Fix(received_ms, quality, lat=float(m["lat"]), lon=float(m["lon"]),
                   speed_mps=float(m["speed"]) if m.get("speed") is not None else None,
                   heading=float(m["track"]) % 360 if m.get("track") is not None else None,
                   satellites=self._sky.get("satellites"), hdop=self._sky.get("hdop"),
                   altitude_m=float(alt) if alt is not None and mode == 3 else None, utc_ms=utc)


class NmeaLog:
    """An NMEA log (as recorded from a receiver, e.g. `cat /dev/ttyUSB0 > drive.nmea`) indexed by
    the receiver's time of each fix, in ms from the log's first fix."""

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)
        self.parser = NmeaParser()
        self.history = FixHistory(max_len=None)
        try:
            text = self.path.read_bytes()
        except OSError as e:
            raise ConfigError(f"gps.log: cannot read {self.path} ({e.strerror})") from None
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
            fix = Fix(t, fix.quality, fix.lat, fix.lon, fix.speed_mps, fix.heading, fix.satellites, fix.hdop,
                      fix.altitude_m, fix.utc_ms)
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
    return (f.quality, f.lat, f.lon, f.speed_mps, f.heading, f.satellites, f.hdop, f.altitude_m, f.utc_ms)
