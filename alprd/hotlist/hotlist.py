"""Hotlist loading, reloading and tolerant matching.

File formats (plate and reason required; priority defaults to 1; expiry optional, ISO date or
date-time in UTC, or Unix seconds). A bad row is skipped, counted and logged as file:line; the
rest of the list loads:
  CSV:  plate,reason,priority,expires      (a header row is required)
  YAML: a list of {plate, reason, priority, expires}, or {entries: [...]}

Matching maps both sides to confusion classes (O/0/Q/D, I/1/L/T, B/8, S/5, Z/2, G/6, ...) when
`confusables` is on, then allows up to `max_edits` single-character edits. A symmetric-deletion
index keeps a lookup cheap for lists of hundreds of thousands of plates."""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import logging
import os
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alprd.errors import ConfigError
from alprd.safe_yaml import LineDict, decode_text, parse_yaml, read_regular_file

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
    sha256 = ""  # of the file refused, when it could be read


MAX_HOTLIST_BYTES = 64 << 20  # about two million CSV rows
MAX_PLATE_CHARS = 16  # no plate scheme comes near; a longer "plate" would make the edit index explode
MAX_REASON_CHARS = 256  # the reason goes into every hit payload
MAX_PRIORITY = 1_000_000
MAX_REPORTED = 20  # bad rows logged one by one; the rest only counted
COLUMNS = ("plate", "reason", "priority", "expires")
_LATEST_MS = 253_402_300_799_000  # 9999-12-31T23:59:59Z


@dataclass(frozen=True)
class HotlistFile:
    """A hotlist file as loaded: its good entries, and the rows skipped as bad."""

    entries: list[HotlistEntry]
    skipped: int = 0
    problems: tuple[str, ...] = ()  # "file:line: what is wrong" for the first MAX_REPORTED skipped rows
    sha256: str = ""  # of the bytes loaded


def _said(value: Any) -> str:
    """A bad value as a message may show it: short, printable, never a whole row."""
    text = repr(value)
    return text if len(text) <= 24 and text.isprintable() else f"({type(value).__name__} of {len(str(value))} characters)"


def _parse_expiry(value: Any, where: str) -> int | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise HotlistError(f"{where}: expires {value!r} is not a date")
    try:
        if isinstance(value, (int, float)):
            ms = value * 1000
            if not 0 <= ms <= _LATEST_MS:
                raise OverflowError
            return int(ms)
        if isinstance(value, dt.datetime):
            d = value
        elif isinstance(value, dt.date):
            d = dt.datetime(value.year, value.month, value.day) + dt.timedelta(days=1)  # through that day
        else:
            s = str(value).strip()
            if re.fullmatch(r"\d{4}-\d{2}-\d{2}", s):
                d = dt.datetime.fromisoformat(s) + dt.timedelta(days=1)
            else:
                d = dt.datetime.fromisoformat(s.replace("Z", "+00:00"))
        if d.tzinfo is None:
            d = d.replace(tzinfo=dt.timezone.utc)
        return int(d.timestamp() * 1000)
    except (ValueError, OverflowError):
        raise HotlistError(f"{where}: expires {_said(value)} is not a date (YYYY-MM-DD), ISO date-time "
                           "or Unix seconds up to the year 9999") from None


def _entry(row: Any, where: str) -> HotlistEntry:
    """One row; HotlistError naming what is wrong, never the plate (plate text stays out of logs)."""
    if not isinstance(row, dict):
        raise HotlistError(f"{where}: expected a mapping of {', '.join(COLUMNS)}; got a {type(row).__name__}")
    unknown = [str(k) for k in row if k not in COLUMNS]
    if unknown:
        raise HotlistError(f"{where}: unknown column(s) {', '.join(_said(k) for k in sorted(unknown)[:3])}; "
                           f"valid: {', '.join(COLUMNS)}")
    raw_plate = row.get("plate")
    if not isinstance(raw_plate, (str, int)) or isinstance(raw_plate, bool):
        raise HotlistError(f"{where}: plate is missing or has no letters or digits")
    plate = normalise_plate(raw_plate)
    if not plate:
        raise HotlistError(f"{where}: plate is missing or has no letters or digits")
    if len(plate) > MAX_PLATE_CHARS:
        raise HotlistError(f"{where}: plate has {len(plate)} letters and digits; at most {MAX_PLATE_CHARS}")
    reason = str(row.get("reason") or "").strip()
    if not reason:
        raise HotlistError(f"{where}: reason is missing for plate entry")
    if len(reason) > MAX_REASON_CHARS:
        raise HotlistError(f"{where}: reason has {len(reason)} characters; at most {MAX_REASON_CHARS}")
    prio = row.get("priority")
    try:
        if isinstance(prio, bool) or (isinstance(prio, float) and not prio.is_integer()):
            raise ValueError
        priority = 1 if prio in (None, "") else int(prio)
        if abs(priority) > MAX_PRIORITY:
            raise ValueError
    except (TypeError, ValueError, OverflowError):
        raise HotlistError(f"{where}: priority {_said(prio)} is not an integer between {-MAX_PRIORITY} and "
                           f"{MAX_PRIORITY}") from None
    return HotlistEntry(plate, reason, priority, _parse_expiry(row.get("expires"), where))


def _yaml_rows(p: Path, raw: bytes) -> list[tuple[Any, str]]:
    try:
        data = parse_yaml(raw, source=p, what="hotlist", max_depth=8, lines=True)
    except ConfigError as e:
        raise HotlistError(str(e)) from None
    if isinstance(data, dict) and "entries" in data:
        data = data["entries"]
    if data is None:
        data = []
    if not isinstance(data, list):
        raise HotlistError(f"{p}: expected a list of entries (plate, reason, priority, expires)")
    return [(row, f"{p}:{row.line}" if isinstance(row, LineDict) else f"{p}: entry {i + 1}")
            for i, row in enumerate(data)]


def _csv_rows(p: Path, raw: bytes) -> list[tuple[Any, str]]:
    try:
        text = decode_text(raw, p, "hotlist")
    except ConfigError as e:
        raise HotlistError(str(e)) from None
    reader = csv.reader(io.StringIO(text))
    try:
        header = [h.strip().lower() for h in next(reader, [])]
    except csv.Error:
        header = []
    if "plate" not in header:
        raise HotlistError(f"{p}: the first row must be a header with plate,reason[,priority,expires]")
    unknown = [h for h in header if h not in COLUMNS]
    if unknown:
        raise HotlistError(f"{p}:1: unknown column(s) {', '.join(_said(h) for h in unknown[:3])}; "
                           f"valid: {', '.join(COLUMNS)}")
    rows: list[tuple[Any, str]] = []
    while True:
        start = reader.line_num + 1  # a quoted field can span lines: the row's first one
        try:
            fields = next(reader)
        except StopIteration:
            break
        except csv.Error as e:  # an over-long field, a stray quote: this row only
            rows.append((ValueError(str(e).split(":")[0]), f"{p}:{start}"))
            continue
        if not fields:
            continue
        rows.append(({k: v.strip() for k, v in zip(header, fields)}, f"{p}:{start}"))
    return rows


def read_hotlist(path: str | Path) -> HotlistFile:
    """The entries of a CSV or YAML hotlist, bad rows skipped and counted. HotlistError (one line)
    when the file itself cannot be used: unreadable, not CSV/YAML, no header, or not one good row."""
    p = Path(path)
    parse = {".yaml": _yaml_rows, ".yml": _yaml_rows, ".csv": _csv_rows}.get(p.suffix.lower())
    if parse is None:
        raise HotlistError(f"{p}: unknown hotlist type; use a .csv or .yaml file")
    try:
        raw = read_regular_file(p, what="hotlist", max_bytes=MAX_HOTLIST_BYTES)
    except ConfigError as e:
        raise HotlistError(str(e)) from None
    digest = hashlib.sha256(raw).hexdigest()
    try:
        return _entries(parse(p, raw), digest)
    except HotlistError as e:
        e.sha256 = digest
        raise


def _entries(rows: list[tuple[Any, str]], digest: str) -> HotlistFile:
    entries: list[HotlistEntry] = []
    problems: list[str] = []
    skipped = 0
    for row, where in rows:
        try:
            if isinstance(row, ValueError):
                raise HotlistError(f"{where}: not a CSV row ({row})")
            entries.append(_entry(row, where))
        except HotlistError as e:
            skipped += 1
            if len(problems) < MAX_REPORTED:
                problems.append(str(e))
    if skipped and not entries:
        # Every row bad is a broken file (a wrong delimiter, a half-written copy), not a list to
        # replace the current one with nothing.
        raise HotlistError(f"{problems[0]}; none of its {skipped} row(s) is valid, so the file is refused")
    return HotlistFile(entries, skipped, tuple(problems), digest)


def load_hotlist(path: str | Path) -> list[HotlistEntry]:
    """Entries of a CSV or YAML hotlist (bad rows skipped); raises HotlistError with one line saying
    what is wrong when the file cannot be used at all."""
    return read_hotlist(path).entries


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
        self.skipped = 0  # bad rows left out of the current list
        self.sha256 = ""  # of the file last read, loaded or refused ("" if it could not be read)
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
            loaded = read_hotlist(self.path)
        except HotlistError as e:
            with self._lock:
                self.error = str(e)
                self.sha256 = e.sha256
            log.error("hotlist: %s; keeping the previous list (%d entries)", e, len(self.entries))
            return False
        entries = loaded.entries
        for problem in loaded.problems:
            log.warning("hotlist: %s; row skipped", problem)
        if loaded.skipped > len(loaded.problems):
            log.warning("hotlist: %d more bad rows in %s skipped", loaded.skipped - len(loaded.problems), self.path)
        index: dict[str, list[HotlistEntry]] = {}
        for e in entries:
            for d in _deletes(self._key(e.plate), self.max_edits):
                index.setdefault(d, []).append(e)
        with self._lock:
            self.entries, self._index = entries, index
            self.skipped = loaded.skipped
            self.sha256 = loaded.sha256
            self.error = ""
            self.loaded_ms = int(time.time() * 1000)
            self.loads += 1
        log.info("hotlist: %d entries loaded from %s%s", len(entries), self.path,
                 f" ({loaded.skipped} bad rows skipped)" if loaded.skipped else "")
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
            return {"path": self.path, "entries": len(self.entries), "skipped": self.skipped,
                    "loaded_ms": self.loaded_ms, "error": self.error}
