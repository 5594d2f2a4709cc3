"""The audit log: append-only JSON lines, each holding the sha256 of the line before it and an HMAC
under the unit's audit key. Editing, deleting, inserting or reordering a line breaks the chain; cutting
lines off the end is caught against a signed checkpoint, which the daemon publishes to
<prefix>/<unit>/audit so the central side holds a copy the unit cannot take back."""

from __future__ import annotations

import fcntl
import hashlib
import hmac
import json
import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alprd.errors import UserError

log = logging.getLogger(__name__)

GENESIS = "0" * 64
_TAIL_CHUNK = 65536


def _canonical(entry: dict[str, Any]) -> bytes:
    return json.dumps({k: v for k, v in entry.items() if k != "mac"}, sort_keys=True,
                      separators=(",", ":"), ensure_ascii=False).encode()


def entry_mac(key: bytes, entry: dict[str, Any]) -> str:
    return hmac.new(key, _canonical(entry), hashlib.sha256).hexdigest()


def checkpoint_mac(key: bytes, unit: str, seq: int, sha256: str) -> str:
    return hmac.new(key, f"alprd-audit-checkpoint\n{unit}\n{seq}\n{sha256}".encode(), hashlib.sha256).hexdigest()


def _last_line(f: Any) -> bytes:
    f.seek(0, os.SEEK_END)
    end = f.tell()
    pos, buf = end, b""
    while pos > 0:
        step = min(_TAIL_CHUNK, pos)
        pos -= step
        f.seek(pos)
        buf = f.read(step) + buf
        stripped = buf.rstrip(b"\n")
        if b"\n" in stripped:
            return stripped.rsplit(b"\n", 1)[1]
    return buf.rstrip(b"\n")


class AuditLog:
    """Appends from any number of threads and processes (the daemon and `alprd export`): an exclusive
    file lock covers reading the last line and writing the next, so the chain stays one chain.

    With hold_on_error (the daemon), an entry the disk refuses (full, I/O error) is held in memory, up
    to MAX_HELD (beyond it the oldest are dropped, and an `audit_entries_lost` entry says how many
    when writing resumes), and written, in order and with its own time, by the next append that
    succeeds; one ERROR line per interval says so. Without it (`alprd export`, which must not answer
    unrecorded) the OSError is raised."""

    MAX_HELD = 10_000
    ERROR_EVERY_S = 60.0

    def __init__(self, path: str | Path, key: bytes, unit: str, *, hold_on_error: bool = False):
        self.path = Path(path)
        self.key = key
        self.unit = unit
        self.hold_on_error = hold_on_error
        self._lock = threading.Lock()
        self.last_seq, self.last_sha256 = 0, GENESIS
        self._held: list[tuple[int, str, dict[str, Any]]] = []  # (ts_ms, event, fields) not yet on disk
        self._lost = 0
        self._lost_span: tuple[int, int] = (0, 0)
        self._failing_since: float | None = None
        self._last_error_log = 0.0
        self._check_writable()

    def _check_writable(self) -> None:
        """At open, not at the first entry: a log the daemon cannot write is a one-line error at start
        (exit 2), not a traceback after the cameras were opened."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if self.path.exists():
                os.close(os.open(self.path, os.O_WRONLY | os.O_APPEND))
                return
        except OSError as e:
            raise UserError(f"audit log {self.path}: cannot write it ({e.strerror}): make it and its folder "
                            "writable by the daemon's user, or set privacy.audit_log") from None
        if not os.access(self.path.parent, os.W_OK | os.X_OK):
            raise UserError(f"audit log {self.path}: cannot create it: {self.path.parent} is read-only or not "
                            "writable by the daemon's user; make it writable, or set privacy.audit_log")

    def append(self, event: str, **fields: Any) -> dict[str, Any]:
        """The entry as written; held in memory (hold_on_error), the entry has no seq yet."""
        now_ms = int(time.time() * 1000)
        with self._lock:
            self._held.append((now_ms, event, fields))
            try:
                return self._write_held()[-1]
            except OSError as e:
                if not self.hold_on_error:
                    self._held.pop()
                    raise
                self._bound_held()
                self._failed(e)
                return {"ts": iso_time(now_ms), "ts_ms": now_ms, "unit": self.unit, "event": event, **fields}

    def retry(self) -> bool:
        """Write what memory holds, if anything. True when nothing is held (any more)."""
        with self._lock:
            if not self._held and not self._lost:
                return True
            try:
                self._write_held()
            except OSError as e:
                self._failed(e)
                return False
            return True

    def held(self) -> int:
        """Entries waiting in memory for the disk."""
        return len(self._held)

    def _bound_held(self) -> None:
        while len(self._held) > self.MAX_HELD:
            ts, _, _ = self._held.pop(0)
            self._lost_span = (self._lost_span[0] if self._lost else ts, ts)
            self._lost += 1

    def _failed(self, e: OSError) -> None:
        now = time.monotonic()
        first = self._failing_since is None
        if first:
            self._failing_since = now
        if first or now - self._last_error_log >= self.ERROR_EVERY_S:
            log.error("audit log %s: cannot write (%s): %d entr(ies) held in memory (up to %d), %d lost; "
                      "written when the disk takes them", self.path, e.strerror or e, len(self._held),
                      self.MAX_HELD, self._lost)
            self._last_error_log = now

    def _write_held(self) -> list[dict[str, Any]]:
        """Every held entry, chained, in one write; on a failed write the file is cut back to where it
        was, so a half-written line never breaks the chain."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o640)
        with os.fdopen(fd, "r+b") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            last = _last_line(f)
            if last:
                try:
                    seq = int(json.loads(last)["seq"]) + 1
                except (ValueError, KeyError, TypeError):  # a damaged last line: verify will name it
                    f.seek(0)
                    seq = sum(1 for _ in f) + 1
                prev = hashlib.sha256(last).hexdigest()
            else:
                seq, prev = 1, GENESIS
            todo = list(self._held)
            if self._lost:
                first_ts, last_ts = self._lost_span
                todo.insert(0, (int(time.time() * 1000), "audit_entries_lost",
                                {"count": self._lost, "first_ts": iso_time(first_ts), "last_ts": iso_time(last_ts)}))
            entries, lines = [], []
            for ts_ms, event, fields in todo:
                entry: dict[str, Any] = {"seq": seq, "ts": iso_time(ts_ms), "ts_ms": ts_ms, "unit": self.unit,
                                         "event": event, **fields, "prev": prev}
                entry["mac"] = entry_mac(self.key, entry)
                line = json.dumps(entry, separators=(",", ":"), ensure_ascii=False).encode()
                entries.append(entry)
                lines.append(line)
                seq, prev = seq + 1, hashlib.sha256(line).hexdigest()
            size = f.seek(0, os.SEEK_END)
            data = memoryview(b"".join(ln + b"\n" for ln in lines))
            try:
                while data:  # unbuffered: a buffered file would retry the failed rest when closed
                    data = data[os.write(f.fileno(), data):]
                os.fsync(f.fileno())
            except OSError:
                try:
                    os.ftruncate(f.fileno(), size)
                except OSError:  # nothing more to do: verify names the incomplete line
                    pass
                raise
            self.last_seq, self.last_sha256 = seq - 1, prev
        if self._failing_since is not None:
            log.warning("audit log %s: writable again after %.0f s: %d held entr(ies) written", self.path,
                        time.monotonic() - self._failing_since, len(todo))
            self._failing_since = None
        self._held.clear()
        self._lost = 0
        return entries

    def unclean_end(self) -> dict[str, Any] | None:
        """When the newest start/stop entry is a start, that run ended without its stop entry (killed,
        crashed, power lost): the run's start and the last entry the log holds, for an entry saying so."""
        if not self.path.exists():
            return None
        lifecycle: dict[str, Any] | None = None
        last = b""
        with open(self.path, "rb") as f:
            for line in f:
                if not line.strip():
                    continue
                last = line
                if b'"event":"start"' in line or b'"event":"stop"' in line:
                    try:
                        e = json.loads(line)
                    except ValueError:
                        continue
                    if e.get("event") in ("start", "stop"):
                        lifecycle = e
        if lifecycle is None or lifecycle["event"] == "stop":
            return None
        try:
            tail = json.loads(last)
        except ValueError:
            tail = {}
        return {"run_started_seq": lifecycle.get("seq"), "run_started_ts": lifecycle.get("ts"),
                "last_seq": tail.get("seq"), "last_event": tail.get("event", "(unreadable line)"),
                "last_ts": tail.get("ts")}

    def checkpoint(self) -> dict[str, Any]:
        """A signed statement of the log's head, read from the file (`alprd export` appends too)."""
        with self._lock:
            if self.path.exists():
                with open(self.path, "rb") as f:
                    fcntl.flock(f, fcntl.LOCK_SH)
                    last = _last_line(f)
                try:
                    seq, sha = int(json.loads(last)["seq"]), hashlib.sha256(last).hexdigest()
                except (ValueError, KeyError, TypeError):  # empty or damaged: what this process wrote last
                    seq, sha = self.last_seq, self.last_sha256
            else:
                seq, sha = self.last_seq, self.last_sha256
        now_ms = int(time.time() * 1000)
        return {"unit": self.unit, "seq": seq, "sha256": sha, "ts": iso_time(now_ms), "ts_ms": now_ms,
                "mac": checkpoint_mac(self.key, self.unit, seq, sha)}

    def last_entry(self, event: str) -> dict[str, Any] | None:
        """The newest entry of one kind (for the config and policy hashes of the last start)."""
        if not self.path.exists():
            return None
        found = None
        needle = f'"event":"{event}"'.encode()
        with open(self.path, "rb") as f:
            for line in f:
                if needle in line:
                    try:
                        found = json.loads(line)
                    except ValueError:
                        continue
        return found


def iso_time(ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms / 1000)) + f".{ms % 1000:03d}Z"


@dataclass(frozen=True)
class Verdict:
    ok: bool
    message: str
    entries: int


def verify(path: str | Path, key: bytes | None = None, checkpoints: list[dict[str, Any]] | tuple = ()) -> Verdict:
    """Walk the chain; the first broken entry is named by its line number and why."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as e:
        return Verdict(False, f"{p}: cannot read ({e.strerror})", 0)
    if raw and not raw.endswith(b"\n"):
        n = raw.count(b"\n") + 1
        return Verdict(False, f"line {n}: incomplete (no end of line): the log was cut or is being written", n - 1)
    lines = raw.split(b"\n")[:-1] if raw else []
    hashes: dict[int, str] = {}
    prev, expect = GENESIS, 1
    for i, line in enumerate(lines, 1):
        try:
            e = json.loads(line)
            seq = int(e["seq"])
            e_prev = e["prev"]
        except (ValueError, KeyError, TypeError):
            return Verdict(False, f"line {i}: not an audit entry (not JSON with seq and prev)", i - 1)
        if seq != expect:
            why = ("the start of the log is missing" if i == 1 else
                   "an entry before it was deleted" if seq > expect else "entries were reordered or repeated")
            return Verdict(False, f"line {i}: seq {seq}, expected {expect}: {why}", i - 1)
        if e_prev != prev:
            return Verdict(False, f"line {i} (seq {seq}): prev does not match the sha256 of line {i - 1}: "
                                  f"line {i - 1} was edited, or lines were deleted, inserted or reordered", i - 1)
        if key is not None and not hmac.compare_digest(str(e.get("mac", "")), entry_mac(key, e)):
            return Verdict(False, f"line {i} (seq {seq}): HMAC does not match: the entry was edited "
                                  "(or the key is not this unit's)", i - 1)
        prev = hashlib.sha256(line).hexdigest()
        hashes[seq] = prev
        expect += 1
    last = expect - 1
    for cp in checkpoints:
        try:
            cseq, csha = int(cp["seq"]), str(cp["sha256"])
        except (KeyError, ValueError, TypeError):
            return Verdict(False, "checkpoint: not an alprd audit checkpoint (needs seq and sha256)", last)
        if key is not None and not hmac.compare_digest(
                str(cp.get("mac", "")), checkpoint_mac(key, str(cp.get("unit", "")), cseq, csha)):
            return Verdict(False, f"checkpoint seq {cseq}: HMAC does not match: not signed by this unit's key", last)
        if cseq > last:
            return Verdict(False, f"truncated: checkpoint seq {cseq} but the log ends at seq {last} "
                                  f"(line {len(lines)})", last)
        if cseq and hashes.get(cseq) != csha:
            return Verdict(False, f"line {cseq}: differs from the checkpoint for seq {cseq}", last)
    checked = "chain and HMACs" if key is not None else "chain only (HMACs not checked: give --key-file)"
    cps = f", {len(checkpoints)} checkpoint(s) matched" if checkpoints else ""
    head = f", last seq {last} sha256 {prev}" if last else ""
    return Verdict(True, f"OK: {last} entries{head}; {checked}{cps}", last)
