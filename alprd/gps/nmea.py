"""NMEA 0183: RMC, GGA and VTG sentences from any talker (GP, GN, GL, GA, BD...), checksums
verified. Sentences of one receiver epoch (same UTC time) are merged into one Fix; a broken line is
counted and skipped, never guessed at. A field with a valid checksum but an impossible value (a
negative speed, a latitude over 90, the 31st of February) is counted as out_of_range and marked
invalid on the fix, never published."""

from __future__ import annotations

import calendar
import math
import time
from collections import Counter
from dataclasses import dataclass, field

from alprd.gps.fix import GGA_QUALITY, KNOT_MPS, Fix, in_range

DAY_MS = 86_400_000

# RMC/VTG mode indicator (NMEA 2.3+): what kind of fix the position comes from.
MODE_QUALITY = {"A": "gps", "D": "dgps", "E": "estimated", "F": "float_rtk", "R": "rtk", "M": "manual",
                "S": "simulation", "P": "gps", "N": "none"}


class NmeaError(ValueError):
    """A line that is not a well-formed NMEA sentence; `kind` says which counter it goes to."""

    def __init__(self, kind: str, msg: str):
        super().__init__(msg)
        self.kind = kind


def checksum(body: str) -> int:
    c = 0
    for ch in body.encode("ascii", "replace"):
        c ^= ch
    return c


def sentence(body: str) -> str:
    """`GPRMC,...` -> `$GPRMC,...*hh`: for writers of logs and test receivers."""
    return f"${body}*{checksum(body):02X}"


def split_sentence(line: str) -> list[str]:
    """Fields of a checksummed sentence (address first); raises NmeaError for garbage or a bad checksum."""
    line = line.strip()
    start = line.find("$")
    if start < 0:
        raise NmeaError("garbage", "no '$'")
    line = line[start:]
    star = line.rfind("*")
    if star < 0 or len(line) - star < 3:
        raise NmeaError("garbage", "no checksum")
    body, given = line[1:star], line[star + 1:star + 3]
    try:
        want = int(given, 16)
    except ValueError:
        raise NmeaError("garbage", f"checksum {given!r} is not hex") from None
    if not body or not body.isascii() or not body[0].isalpha():
        raise NmeaError("garbage", "no address field")
    if checksum(body) != want:
        raise NmeaError("bad_checksum", f"checksum {given} != {checksum(body):02X}")
    return body.split(",")


def _f(s: str) -> float | None:
    if not s:
        return None
    v = float(s)
    if not math.isfinite(v):
        raise ValueError(s)
    return v


def _coord(value: str, hemi: str, deg_digits: int) -> float | None:
    if not value or not hemi:
        return None
    head = value[:deg_digits]
    if not head.isdigit() or hemi not in (("N", "S") if deg_digits == 2 else ("E", "W")):
        raise ValueError(value)
    minutes = float(value[deg_digits:])
    if not 0 <= minutes < 60:
        raise ValueError(value)
    v = int(head) + minutes / 60.0
    return -v if hemi in ("S", "W") else v


def _tod_ms(hhmmss: str) -> int | None:
    if not hhmmss:
        return None
    if not hhmmss[:4].isdigit():
        raise ValueError(hhmmss)
    h, m, s = int(hhmmss[0:2]), int(hhmmss[2:4]), float(hhmmss[4:])
    if h > 23 or m > 59 or not 0 <= s < 61:
        raise ValueError(hhmmss)
    return int(round((h * 3600 + m * 60 + s) * 1000))


class OutOfRange(ValueError):
    """A field that parses but cannot be true."""


def _date_ms(ddmmyy: str) -> int | None:
    if not ddmmyy:
        return None
    if len(ddmmyy) != 6 or not ddmmyy.isdigit():
        raise OutOfRange(ddmmyy)
    d, mo, y = int(ddmmyy[0:2]), int(ddmmyy[2:4]), int(ddmmyy[4:6])
    year = 2000 + y if y < 80 else 1900 + y
    # timegm takes the 45th of the 13th month without a word: check the calendar first.
    if not 1 <= mo <= 12 or not 1 <= d <= calendar.monthrange(year, mo)[1]:
        raise OutOfRange(ddmmyy)
    return calendar.timegm((year, mo, d, 0, 0, 0)) * 1000


@dataclass
class _Epoch:
    tod_ms: int | None
    received_ms: int
    fields: dict[str, object] = field(default_factory=dict)
    invalid: set[str] = field(default_factory=set)  # fields sent out of range in this epoch


class NmeaParser:
    """Feed lines in arrival order; `feed` returns the epoch's fix, updated by that line, or None.
    `counts` has sentences (good ones), bad_checksum, garbage and unsupported (well-formed, not used)."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self._epoch: _Epoch | None = None
        self._date_ms: int | None = None
        self._last_tod: int | None = None
        self._day_offset = 0  # days added after a midnight rollover without a fresh RMC date
        self.new_epoch = False  # the last fix returned began a new epoch

    @property
    def tod_ms(self) -> int | None:
        """UTC time of day of the epoch being received."""
        return self._epoch.tod_ms if self._epoch else None

    def feed(self, line: str | bytes, received_ms: int = 0) -> Fix | None:
        if isinstance(line, bytes):
            line = line.decode("ascii", "replace")
        if not line.strip():
            return None
        try:
            fields = split_sentence(line)
            kind = fields[0][-3:] if len(fields[0]) >= 5 else ""
            handler = {"RMC": self._rmc, "GGA": self._gga, "VTG": self._vtg}.get(kind)
            if handler is None:
                self.counts["unsupported"] += 1
                return None
            fix = handler(fields, received_ms)
        except NmeaError as e:
            self.counts[e.kind] += 1
            return None
        except (ValueError, IndexError):
            self.counts["garbage"] += 1  # checksum fine, fields nonsense: a receiver bug, still not guessed at
            return None
        self.counts["sentences"] += 1
        return fix

    # --- sentences -------------------------------------------------------------------------

    def _bad(self, e: _Epoch, name: str) -> None:
        self.counts["out_of_range"] += 1
        e.invalid.add(name)

    def _put(self, e: _Epoch, name: str, value: float | int | None, first: bool = False) -> None:
        """Set an epoch's field if the value is possible; `first`: keep one already set."""
        if value is None:
            return
        if not in_range(name, value):
            self._bad(e, name)
        elif first:
            e.fields.setdefault(name, value)
        else:
            e.fields[name] = value

    def _position(self, e: _Epoch, lat: float | None, lon: float | None) -> None:
        if lat is None or lon is None:
            return
        if in_range("lat", lat) and in_range("lon", lon):
            e.fields.update(lat=lat, lon=lon)
        else:
            self._bad(e, "position")

    def _course(self, e: _Epoch, course: float | None, first: bool = False) -> None:
        if course is None:
            return
        if not in_range("heading", course):  # -10 or 720 is no course at all
            self._bad(e, "heading")
            return
        self._put(e, "heading", course % 360.0, first)  # 360 is north as much as 0 is

    def _epoch_for(self, tod: int | None, received_ms: int) -> _Epoch:
        if self._epoch is None or tod != self._epoch.tod_ms:
            self._epoch = _Epoch(tod, received_ms)
            self.new_epoch = True
        else:
            self.new_epoch = False
        return self._epoch

    def _rmc(self, f: list[str], received_ms: int) -> Fix | None:
        # RMC: time, status, lat, N/S, lon, E/W, speed kn, course, date, magvar, E/W[, mode]
        if len(f) < 10:
            raise ValueError("short RMC")
        tod = _tod_ms(f[1])
        e = self._epoch_for(tod, received_ms)
        try:
            date = _date_ms(f[9])
        except ValueError:  # OutOfRange included
            # Not taken: the clock goes on from the last real date, or stays unknown without one.
            self._bad(e, "utc")
            date = None
        if date is not None:
            self._date_ms, self._day_offset = date, 0
        mode = f[12][:1] if len(f) > 12 else ""
        valid = f[2] == "A" and mode != "N"
        e.fields["rmc_quality"] = (MODE_QUALITY.get(mode, "gps") if mode else "gps") if valid else "none"
        lat, lon = _coord(f[3], f[4], 2), _coord(f[5], f[6], 3)
        if valid:
            self._position(e, lat, lon)
        kn, course = _f(f[7]), _f(f[8])
        self._put(e, "speed_mps", None if kn is None else kn * KNOT_MPS, first=True)
        self._course(e, course, first=True)
        return self._fix()

    def _gga(self, f: list[str], received_ms: int) -> Fix | None:
        # GGA: time, lat, N/S, lon, E/W, quality, satellites, hdop, altitude, M, geoid, M, ...
        if len(f) < 10:
            raise ValueError("short GGA")
        e = self._epoch_for(_tod_ms(f[1]), received_ms)
        q = int(f[6]) if f[6] else 0
        if q not in GGA_QUALITY:  # no such fix type: the sentence's position is not vouched for
            self._bad(e, "quality")
            return self._fix()
        e.fields["gga_quality"] = GGA_QUALITY[q]
        lat, lon = _coord(f[2], f[3], 2), _coord(f[4], f[5], 3)
        if q:
            self._position(e, lat, lon)
        self._put(e, "satellites", int(f[7]) if f[7] else None)
        self._put(e, "hdop", _f(f[8]))
        self._put(e, "altitude_m", _f(f[9]))
        return self._fix()

    def _vtg(self, f: list[str], received_ms: int) -> Fix | None:
        # VTG: course true, T, course magnetic, M, speed kn, N, speed km/h, K[, mode]. No time of
        # its own: it belongs to the epoch being received.
        if len(f) < 9:
            raise ValueError("short VTG")
        if self._epoch is None:
            self.counts["orphan"] += 1  # before any timed sentence: which epoch it describes is unknown
            return None
        self.new_epoch = False
        course, kmh, kn = _f(f[1]), _f(f[7]), _f(f[5])
        if kmh is not None:
            self._put(self._epoch, "speed_mps", kmh / 3.6)  # km/h is the finer of VTG's two speeds
        elif kn is not None:
            self._put(self._epoch, "speed_mps", kn * KNOT_MPS)
        self._course(self._epoch, course)
        return self._fix()

    def _fix(self) -> Fix:
        e = self._epoch
        assert e is not None
        fl = e.fields
        # GGA's quality digit is the more precise statement; RMC only says valid or not (and a mode).
        quality = str(fl.get("gga_quality") or fl.get("rmc_quality") or "none")
        if quality != "none" and "lat" not in fl:
            quality = "none"
        utc = None
        if e.tod_ms is not None and self._date_ms is not None:
            if self._last_tod is not None and e.tod_ms + DAY_MS // 2 < self._last_tod:
                self._day_offset += 1  # midnight passed since the last RMC date
            utc = self._date_ms + self._day_offset * DAY_MS + e.tod_ms
        if e.tod_ms is not None:
            self._last_tod = e.tod_ms
        # Invalid stays said only while no good value of the same field came in this epoch.
        present = {"position": "lat" in fl, "utc": utc is not None, "quality": "gga_quality" in fl}
        invalid = tuple(sorted(n for n in e.invalid if not present.get(n, n in fl)))
        return Fix(
            time_ms=e.received_ms, quality=quality,
            lat=fl.get("lat") if quality != "none" else None,  # type: ignore[arg-type]
            lon=fl.get("lon") if quality != "none" else None,  # type: ignore[arg-type]
            speed_mps=fl.get("speed_mps"), heading=fl.get("heading"),  # type: ignore[arg-type]
            satellites=fl.get("satellites"), hdop=fl.get("hdop"), altitude_m=fl.get("altitude_m"),  # type: ignore[arg-type]
            utc_ms=utc, invalid=invalid,
        )


# --- writing NMEA (drive logs for replay and test receivers) ----------------------------------

def _dm(value: float, deg_digits: int, pos: str, neg: str) -> tuple[str, str]:
    a = abs(value)
    deg = int(a)
    minutes = (a - deg) * 60
    return f"{deg:0{deg_digits}d}{minutes:07.4f}", pos if value >= 0 else neg


def epoch_sentences(utc_ms: int, lat: float | None, lon: float | None, speed_mps: float = 0.0,
                    heading: float = 0.0, quality: int = 1, satellites: int = 9, hdop: float = 0.9,
                    altitude_m: float = 40.0, talker: str = "GP") -> list[str]:
    """RMC, GGA and VTG for one epoch, as a receiver sends them; `quality` 0 writes a no-fix epoch."""
    t = utc_ms % DAY_MS
    hh, mm, ss = t // 3_600_000, t // 60_000 % 60, (t % 60_000) / 1000
    tod = f"{hh:02d}{mm:02d}{ss:05.2f}"
    g = time.gmtime(utc_ms // 1000)
    date = f"{g.tm_mday:02d}{g.tm_mon:02d}{g.tm_year % 100:02d}"
    if quality and lat is not None and lon is not None:
        la, ns = _dm(lat, 2, "N", "S")
        lo, ew = _dm(lon, 3, "E", "W")
        mode = {2: "D", 4: "R", 5: "F", 6: "E"}.get(quality, "A")
        kn = speed_mps / KNOT_MPS
        return [
            sentence(f"{talker}RMC,{tod},A,{la},{ns},{lo},{ew},{kn:.2f},{heading:.1f},{date},,,{mode}"),
            sentence(f"{talker}GGA,{tod},{la},{ns},{lo},{ew},{quality},{satellites:02d},{hdop:.1f},{altitude_m:.1f},M,47.0,M,,"),
            sentence(f"{talker}VTG,{heading:.1f},T,,M,{kn:.2f},N,{speed_mps * 3.6:.2f},K,{mode}"),
        ]
    return [
        sentence(f"{talker}RMC,{tod},V,,,,,,,{date},,,N"),
        sentence(f"{talker}GGA,{tod},,,,,0,{satellites:02d},,,M,,M,,"),
        sentence(f"{talker}VTG,,T,,M,,N,,K,N"),
    ]


def drive(start_utc_ms: int, seconds: float, rate_hz: float = 1.0, lat: float = 52.2053, lon: float = 0.1218,
          speed_mps: float = 12.0, heading: float = 45.0, turn_deg_s: float = 1.5,
          no_fix: tuple[float, float] | None = None) -> list[tuple[int, float | None, float | None, float, float, int]]:
    """A plausible drive: (utc_ms, lat, lon, speed_mps, heading, quality) per epoch, optionally with a
    stretch (start_s, end_s) without a fix (a tunnel)."""
    out = []
    step = 1.0 / rate_hz
    n = int(round(seconds * rate_hz))
    for i in range(n + 1):
        t = i * step
        ms = start_utc_ms + int(round(t * 1000))
        lost = no_fix is not None and no_fix[0] <= t < no_fix[1]
        out.append((ms, None if lost else lat, None if lost else lon, speed_mps, heading, 0 if lost else 1))
        # Advance along the heading on a local flat-earth approximation (fine over a few km).
        d = speed_mps * step
        lat += d * math.cos(math.radians(heading)) / 111_320.0
        lon += d * math.sin(math.radians(heading)) / (111_320.0 * math.cos(math.radians(lat)))
        heading = (heading + turn_deg_s * step) % 360.0
        speed_mps = max(0.0, speed_mps + 0.8 * math.sin(t / 5.0) * step)
    return out


def drive_log(epochs: list[tuple[int, float | None, float | None, float, float, int]]) -> str:
    lines = []
    for ms, lat, lon, spd, hdg, q in epochs:
        lines.extend(epoch_sentences(ms, lat, lon, spd, hdg, q))
    return "\r\n".join(lines) + "\r\n"
