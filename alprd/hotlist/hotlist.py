"""Hotlist loading, reloading and tolerant matching.

File formats (plate and reason required; priority defaults to 1; expiry optional, ISO date or
date-time in UTC, or Unix seconds):
  CSV:  plate,reason,priority,expires      (a header row is required)
  YAML: a list of {plate, reason, priority, expires}, or {entries: [...]}

Matching maps both sides to confusion classes (O/0/Q/D, I/1/L/T, B/8, S/5, Z/2, G/6, ...) when
`confusables` is on, then allows up to `max_edits` single-character edits. A symmetric-deletion
index keeps a lookup cheap for lists of hundreds of thousands of plates."""

from __future__ import annotations

import csv
import datetime as dt
import io
import logging
import os
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

log = logging.getLogger(__name__)

_CLASSES = ("0OQD", "1ILT", "2Z", "5S", "6G", "8B", "4A")
CANON = {c: group[0] for group in _CLASSES for c in group}


def normalise_plate(text: str) -> str:
    """Upper case, letters and digits only: 'ab-123 cd' -> 'AB123CD'."""
    return re.sub(r"[^0-9A-Z]", "", str(text).upper())


def canonical(text: str) -> str:
    return "".join(CANON.get(c, c) for c in text)


@dataclass(frozen=True)
class HotlistEntry:
    plate: str
    reason: str
    priority: int = 1
    expires_ms: int | None = None  # UTC Unix ms; None: never

    def as_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"plate": self.plate, "reason": self.reason, "priority": self.priority}
        if self.expires_ms is not None:
            d["expires_ms"] = self.expires_ms
        return d


@dataclass(frozen=True)
class HotlistMatch:
    entry: HotlistEntry
    edits: int  # character edits after confusion classes
    exact: bool  # read text equals the listed plate


class HotlistError(ValueError):
    pass


def _parse_expiry(value: Any, where: str) -> int | None:
    if value is None or value == "":
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return int(value * 1000)
    if isinstance(value, dt.datetime):
        d = value
    elif isinstance(value, dt.date):
        d = dt.datetime(value.year, value.month, value.day) + dt.timedelta(days=1)  # through that day
    else:
        s = str(value).strip()
        try:
            if re.fullmatch(r"\d{4}-\d{2}-\d{2}", s):
                d = dt.datetime.fromisoformat(s) + dt.timedelta(days=1)
            else:
                d = dt.datetime.fromisoformat(s.replace("Z", "+00:00"))
        except ValueError:
            raise HotlistError(f"{where}: expires {value!r} is not a date (YYYY-MM-DD), ISO date-time "
                               "or Unix seconds") from None
    if d.tzinfo is None:
        d = d.replace(tzinfo=dt.timezone.utc)
    return int(d.timestamp() * 1000)


def _entry(row: dict[str, Any], where: str) -> HotlistEntry:
    if not isinstance(row, dict):
        raise HotlistError(f"{where}: expected plate, reason, priority, expires; got {row!r}")
    unknown = set(row) - {"plate", "reason", "priority", "expires"}
    if unknown:
        raise HotlistError(f"{where}: unknown column(s) {', '.join(sorted(map(str, unknown)))}; "
                           "valid: plate, reason, priority, expires")
    plate = normalise_plate(row.get("plate") or "")
    if not plate:
        raise HotlistError(f"{where}: plate is missing or has no letters or digits")
    reason = str(row.get("reason") or "").strip()
    if not reason:
        raise HotlistError(f"{where}: reason is missing for plate entry")
    prio = row.get("priority")
    try:
        priority = 1 if prio in (None, "") else int(prio)
    except (TypeError, ValueError):
        raise HotlistError(f"{where}: priority {prio!r} is not an integer") from None
    return HotlistEntry(plate, reason, priority, _parse_expiry(row.get("expires"), where))


def load_hotlist(path: str | Path) -> list[HotlistEntry]:
    """Entries of a CSV or YAML hotlist; raises HotlistError with one line saying what is wrong."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise HotlistError(f"{p}: hotlist file not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise HotlistError(f"{p}: cannot read hotlist ({e})") from None
    rows: list[Any]
    if p.suffix.lower() in (".yaml", ".yml"):
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            raise HotlistError(f"{p}: not valid YAML{f' at line {mark.line + 1}' if mark else ''}") from None
        if isinstance(data, dict) and "entries" in data:
            data = data["entries"]
        if data is None:
            data = []
        if not isinstance(data, list):
            raise HotlistError(f"{p}: expected a list of entries (plate, reason, priority, expires)")
        rows = data
        where = [f"{p}: entry {i + 1}" for i in range(len(rows))]
    elif p.suffix.lower() == ".csv":
        reader = csv.DictReader(io.StringIO(text))
        if not reader.fieldnames or "plate" not in [f.strip().lower() for f in reader.fieldnames]:
            raise HotlistError(f"{p}: the first row must be a header with plate,reason[,priority,expires]")
        rows = [{(k or "").strip().lower(): (v.strip() if isinstance(v, str) else v) for k, v in r.items()
                 if k is not None} for r in reader]
        where = [f"{p}: line {i + 2}" for i in range(len(rows))]
    else:
        raise HotlistError(f"{p}: unknown hotlist type; use a .csv or .yaml file")
    return [_entry(r, w) for r, w in zip(rows, where)]


def _edit_distance(a: str, b: str, limit: int) -> int:
    if abs(len(a) - len(b)) > limit:
        return limit + 1
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i] + [0] * len(b)
        for j, cb in enumerate(b, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb))
        prev = cur
    return prev[-1]


def _deletes(s: str, n: int) -> set[str]:
    out = {s}
    frontier = {s}
    for _ in range(n):
        frontier = {w[:i] + w[i + 1:] for w in frontier for i in range(len(w))}
        out |= frontier
    return out


class Hotlist:
    """The current list of one file, reloaded when the file changes or on request (SIGHUP). A file
    that fails to load leaves the previous list in place; `error` says why."""

    def __init__(self, path: str, max_edits: int = 1, confusables: bool = True, check_s: float = 2.0):
        self.path = path
        self.check_s = check_s
        self._next_check = 0.0
        self.max_edits = max_edits
        self.confusables = confusables
        self._lock = threading.Lock()
        self._index: dict[str, list[HotlistEntry]] = {}
        self.entries: list[HotlistEntry] = []
        self.error = ""
        self.loaded_ms = 0
        self.loads = 0
        self._mtime: tuple[float, int] | None = None
        self.reload()

    def _key(self, plate: str) -> str:
        return canonical(plate) if self.confusables else plate

    def reload(self, force: bool = True) -> bool:
        """Load the file again (if it changed, unless forced). True when a new list is in place."""
        try:
            st = os.stat(self.path)
            stamp = (st.st_mtime, st.st_size)
        except OSError:
            stamp = None
        if not force and stamp == self._mtime:
            return False
        self._mtime = stamp
        try:
            entries = load_hotlist(self.path)
        except HotlistError as e:
            with self._lock:
                self.error = str(e)
            log.error("hotlist: %s; keeping the previous list (%d entries)", e, len(self.entries))
            return False
        index: dict[str, list[HotlistEntry]] = {}
        for e in entries:
            for d in _deletes(self._key(e.plate), self.max_edits):
                index.setdefault(d, []).append(e)
        with self._lock:
            self.entries, self._index = entries, index
            self.error = ""
            self.loaded_ms = int(time.time() * 1000)
            self.loads += 1
        log.info("hotlist: %d entries loaded from %s", len(entries), self.path)
        return True

    def poll(self) -> bool:
        """Reload if the file changed; checks its mtime at most every `check_s` seconds."""
        now = time.monotonic()
        with self._lock:
            if now < self._next_check:
                return False
            self._next_check = now + self.check_s
        return self.reload(force=False)

    def match(self, text: str, now_ms: int | None = None) -> HotlistMatch | None:
        """The best live entry for a read: fewest edits, then highest priority."""
        now_ms = int(time.time() * 1000) if now_ms is None else now_ms
        plate = normalise_plate(text)
        key = self._key(plate)
        with self._lock:
            index = self._index
        seen: set[int] = set()
        best: HotlistMatch | None = None
        for d in _deletes(key, self.max_edits):
            for e in index.get(d, ()):
                if id(e) in seen:
                    continue
                seen.add(id(e))
                if e.expires_ms is not None and e.expires_ms <= now_ms:
                    continue
                edits = _edit_distance(key, self._key(e.plate), self.max_edits)
                if edits > self.max_edits:
                    continue
                m = HotlistMatch(e, edits, e.plate == plate)
                if best is None or (m.edits, not m.exact, -e.priority) < (best.edits, not best.exact, -best.entry.priority):
                    best = m
        return best

    def status(self) -> dict[str, Any]:
        with self._lock:
            return {"path": self.path, "entries": len(self.entries), "loaded_ms": self.loaded_ms,
                    "error": self.error}
