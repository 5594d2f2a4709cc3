"""The audit log: append-only JSON lines, each holding the sha256 of the line before it and an HMAC
under the unit's audit key. Editing, deleting, inserting or reordering a line breaks the chain; cutting
lines off the end is caught against a signed checkpoint, which the daemon publishes to
<prefix>/<unit>/audit so the central side holds a copy the unit cannot take back."""

from __future__ import annotations

import fcntl
import hashlib
import hmac
import json
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
    file lock covers reading the last line and writing the next, so the chain stays one chain."""

    def __init__(self, path: str | Path, key: bytes, unit: str):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.key = key
        self.unit = unit
        self._lock = threading.Lock()
        self.last_seq, self.last_sha256 = 0, GENESIS

    def append(self, event: str, **fields: Any) -> dict[str, Any]:
        with self._lock:
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
                now_ms = int(time.time() * 1000)
                entry: dict[str, Any] = {"seq": seq, "ts": _iso(now_ms), "ts_ms": now_ms, "unit": self.unit,
                                         "event": event, **fields, "prev": prev}
                entry["mac"] = entry_mac(self.key, entry)
                line = json.dumps(entry, separators=(",", ":"), ensure_ascii=False).encode()
                f.seek(0, os.SEEK_END)
                f.write(line + b"\n")
                f.flush()
                os.fsync(f.fileno())
                self.last_seq, self.last_sha256 = seq, hashlib.sha256(line).hexdigest()
        return entry

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
        return {"unit": self.unit, "seq": seq, "sha256": sha, "ts": _iso(now_ms), "ts_ms": now_ms,
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


def _iso(ms: int) -> str:
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
