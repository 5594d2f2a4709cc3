"""`alprd export`: the one way to read local data out of the unit. The audit entry (time, what was
queried, who, purpose, case, row count) is written before a single row is answered, as California
Civil Code 1798.90.52 asks of access logs."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from typing import Any

from alprd.config import Config
from alprd.errors import UserError
from alprd.privacy.audit import AuditLog
from alprd.privacy.keys import audit_key, load_or_create_secret, normalise_plate
from alprd.privacy.policy import Enforced, privacy_paths, spool_path
from alprd.publish.spool import read_rows

CSV_FIELDS = ("read_id", "kind", "timestamp", "timestamp_ms", "unit", "camera", "plate", "plate_hmac",
              "confidence", "event", "hit")


@dataclass(frozen=True)
class Query:
    purpose: str
    case: str
    user: str
    plate: str = ""
    since_ms: int | None = None
    until_ms: int | None = None
    fmt: str = "jsonl"


def collect(cfg: Config, enforced: Enforced, q: Query) -> list[dict[str, Any]]:
    """Every spooled message of every destination, one per (read_id, kind, event): the fullest copy
    wins (a pseudonymised or suppressed destination holds less than a full one)."""
    best: dict[tuple[str, str, str], dict[str, Any]] = {}
    want = normalise_plate(q.plate) if q.plate else ""
    for d in enforced.destinations:
        for topic, payload, read_id, _stored in read_rows(spool_path(cfg, d.name)):
            kind = topic.rsplit("/", 1)[-1]
            if kind not in ("read", "hit"):
                continue
            try:
                p = json.loads(payload)
            except ValueError:
                continue
            p.pop("crop_jpeg", None)  # images stay on the unit; the export is a record, not a gallery
            ts = p.get("timestamp_ms")
            if q.since_ms is not None and (not isinstance(ts, int) or ts < q.since_ms):
                continue
            if q.until_ms is not None and (not isinstance(ts, int) or ts > q.until_ms):
                continue
            if want and normalise_plate(str(p.get("plate", ""))) != want:
                continue
            key = (read_id, kind, str(p.get("event", "")))
            if key not in best or ("plate" in p and "plate" not in best[key]):
                best[key] = {"kind": kind, **p}
    return sorted(best.values(), key=lambda r: (r.get("timestamp_ms", 0), r.get("read_id", "")))


def render(rows: list[dict[str, Any]], fmt: str) -> str:
    if fmt == "jsonl":
        return "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in rows)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CSV_FIELDS, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({**r, "hit": json.dumps(r["hit"]) if r.get("hit") else ""})
    return buf.getvalue()


def export(cfg: Config, enforced: Enforced, q: Query, output: str) -> tuple[str, int]:
    for key, value in (("--purpose", q.purpose), ("--case", q.case), ("--user", q.user)):
        if not value.strip():
            raise UserError(f"{key}: required and non-empty (the access log records it)")
    allowed = enforced.policy.purposes
    if enforced.source != "built-in" and allowed and q.purpose not in allowed:
        raise UserError(f"--purpose: {q.purpose!r} is not a purpose of policy {enforced.source}; "
                        f"use one of: {', '.join(allowed)}")
    key_file, audit_file = privacy_paths(cfg)
    audit = AuditLog(audit_file, audit_key(load_or_create_secret(key_file)), cfg.unit_id)
    rows = collect(cfg, enforced, q)
    query = {"plate": q.plate or None, "since_ms": q.since_ms, "until_ms": q.until_ms, "format": q.fmt,
             "sources": [str(spool_path(cfg, d.name)) for d in enforced.destinations]}
    try:
        audit.append("export", user=q.user, purpose=q.purpose, case=q.case, query=query, rows=len(rows),
                     output=output or "stdout")
    except OSError as e:  # no audit entry, no answer
        raise UserError(f"{audit_file}: cannot write the audit log ({e.strerror}); nothing was exported") from None
    return render(rows, q.fmt), len(rows)
