"""A GPS fix and the history that answers "which fix was valid when this frame was taken"."""

from __future__ import annotations

import bisect
import math
import threading
from dataclasses import dataclass
from typing import Any

KNOT_MPS = 1852.0 / 3600.0

# NMEA GGA fix-quality digits, and the names alprd publishes for them.
GGA_QUALITY = {0: "none", 1: "gps", 2: "dgps", 3: "pps", 4: "rtk", 5: "float_rtk", 6: "estimated",
               7: "manual", 8: "simulation"}
QUALITIES = tuple(GGA_QUALITY.values())

# What a receiver can truthfully report; outside these a value is a receiver bug or a forged
# sentence (a valid checksum proves nothing), and is marked invalid instead of published.
MAX_SPEED_MPS = 340.0  # the speed of sound: no vehicle a unit rides in is faster
RANGES: dict[str, tuple[float, float]] = {
    "lat": (-90.0, 90.0), "lon": (-180.0, 180.0), "speed_mps": (0.0, MAX_SPEED_MPS), "heading": (0.0, 360.0),
    # The Dead Sea shore is at -430 m; civilian receivers stop reporting above 18 km.
    "altitude_m": (-1000.0, 18_000.0),
    "hdop": (0.0, 99.99), "satellites": (0, 99),
}


def in_range(name: str, value: object) -> bool:
    """Whether a reported value is one a receiver could truthfully send for field `name`."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    lo, hi = RANGES[name]
    return math.isfinite(value) and lo <= value <= hi


@dataclass(frozen=True)
class Fix:
    """One receiver epoch. `time_ms` is on the clock the history is indexed by: the unit's wall clock
    when the epoch arrived (live), or the receiver's UTC time of the fix (replayed log)."""

    time_ms: int
    quality: str  # one of QUALITIES; "none" when the receiver reports no position
    lat: float | None = None
    lon: float | None = None
    speed_mps: float | None = None  # over ground
    heading: float | None = None  # course over ground, degrees from true north
    satellites: int | None = None
    hdop: float | None = None
    altitude_m: float | None = None
    utc_ms: int | None = None  # the receiver's own time of the fix, when it sent a date
    # Fields the receiver sent out of range (see RANGES), left out above; "position" for a lat or
    # lon, "utc" for an impossible date.
    invalid: tuple[str, ...] = ()

    @property
    def has_position(self) -> bool:
        return self.quality != "none" and self.lat is not None and self.lon is not None


NO_FIX: dict[str, Any] = {"fix": "none"}


def fix_dict(fix: Fix | None, at_ms: int, stale_ms: int, source: str) -> dict[str, Any]:
    """The payload's `gps` object for a frame taken at `at_ms`. Without a position: {"fix": "none"}.
    A position older than `stale_ms` is still given (where the vehicle was last known) but marked
    `stale: true` with its age, so it can never pass for the current one."""
    if fix is None or not fix.has_position:
        none = {**NO_FIX, "source": source}
        return {**none, "invalid": list(fix.invalid)} if fix is not None and fix.invalid else none
    age = max(0, at_ms - fix.time_ms)
    d: dict[str, Any] = {"fix": fix.quality, "lat": round(fix.lat, 7), "lon": round(fix.lon, 7)}  # type: ignore[arg-type]
    if fix.speed_mps is not None:
        d["speed_mps"] = round(fix.speed_mps, 2)
        d["speed_kmh"] = round(fix.speed_mps * 3.6, 1)
    if fix.heading is not None:
        d["heading"] = round(fix.heading, 1)
    if fix.altitude_m is not None:
        d["altitude_m"] = round(fix.altitude_m, 1)
    if fix.satellites is not None:
        d["satellites"] = fix.satellites
    if fix.hdop is not None:
        d["hdop"] = round(fix.hdop, 2)
    if fix.invalid:
        d["invalid"] = list(fix.invalid)  # sent but impossible: not published as fact
    d["age_ms"] = int(age)
    d["stale"] = age > stale_ms
    d["source"] = source
    return d


class FixHistory:
    """Fixes ordered by `time_ms`. Reads are tagged with the fix that was current at their frame's
    time, not the newest one: a frame analysed 200 ms late must not get a position from its future."""

    def __init__(self, max_len: int | None = 4096):
        self._times: list[int] = []
        self._fixes: list[Fix] = []
        self._max = max_len
        self._lock = threading.Lock()

    def put(self, fix: Fix, replace_last: bool = False) -> None:
        """Add a fix; `replace_last` updates the newest entry (more sentences of the same epoch)."""
        with self._lock:
            if replace_last and self._fixes:
                self._times.pop()
                self._fixes.pop()
            i = bisect.bisect_right(self._times, fix.time_ms)
            self._times.insert(i, fix.time_ms)
            self._fixes.insert(i, fix)
            if self._max and len(self._fixes) > self._max:
                del self._times[0], self._fixes[0]

    def at(self, ms: int) -> Fix | None:
        with self._lock:
            i = bisect.bisect_right(self._times, ms)
            return self._fixes[i - 1] if i else None

    def latest(self) -> Fix | None:
        with self._lock:
            return self._fixes[-1] if self._fixes else None

    def __len__(self) -> int:
        return len(self._fixes)

    def fixes(self) -> list[Fix]:
        with self._lock:
            return list(self._fixes)
