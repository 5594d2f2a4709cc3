"""Store and forward: every outgoing message is written here before it is published, and deleted
only after the broker acknowledged it (PUBACK). Survives broker outages and a killed daemon."""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SpooledMessage:
    seq: int
    topic: str
    payload: bytes
    read_id: str
    created_ms: int


class Spool:
    def __init__(self, path: str | Path, max_rows: int = 500_000):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.max_rows = max_rows
        self._lock = threading.Lock()
        if not self.path.exists():  # plates live here: only the daemon's user may read it (WAL/SHM follow)
            os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600))
        self._db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        # FULL: a row acknowledged to the pipeline must survive power loss, not only a crash.
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA secure_delete=ON")
        self._db.executescript(
            """
            CREATE TABLE IF NOT EXISTS outbox (
                seq INTEGER PRIMARY KEY AUTOINCREMENT,
                topic TEXT NOT NULL,
                payload BLOB NOT NULL,
                read_id TEXT NOT NULL,
                created_ms INTEGER NOT NULL
            );
            CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
            """
        )
        self._migrate()
        self._depth = self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]

    def _migrate(self) -> None:
        """Retention needs to know each row's age on the unit and what it holds; spools from before
        that get the columns, their rows counted as stored now (their true age is unknown)."""
        have = {r[1] for r in self._db.execute("PRAGMA table_info(outbox)")}
        for col, decl in (("stored_ms", "INTEGER NOT NULL DEFAULT 0"), ("hit", "INTEGER NOT NULL DEFAULT 0"),
                          ("crop", "INTEGER NOT NULL DEFAULT 0")):
            if col not in have:
                self._db.execute(f"ALTER TABLE outbox ADD COLUMN {col} {decl}")
        self._db.execute("UPDATE outbox SET stored_ms = ? WHERE stored_ms = 0", (int(time.time() * 1000),))

    def put(self, topic: str, payload: bytes, read_id: str, created_ms: int, *, hit: bool = False,
            crop: bool = False, stored_ms: int | None = None) -> None:
        """Store a message. When the spool is full the oldest rows make room; they are counted."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                over = self._depth + 1 - self.max_rows
                if over > 0:
                    self._db.execute(
                        "DELETE FROM outbox WHERE seq IN (SELECT seq FROM outbox ORDER BY seq LIMIT ?)", (over,)
                    )
                    self._bump("dropped_spool_full", over)
                    self._depth -= over
                    log.warning("spool full (%d rows): dropped %d oldest message(s)", self.max_rows, over)
                self._db.execute(
                    "INSERT INTO outbox (topic, payload, read_id, created_ms, stored_ms, hit, crop) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (topic, payload, read_id, created_ms,
                     int(time.time() * 1000) if stored_ms is None else stored_ms, int(hit), int(crop)),
                )
                self._db.execute("COMMIT")
                self._depth += 1
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def pending(self, limit: int, exclude: set[int] | frozenset[int] = frozenset()) -> list[SpooledMessage]:
        """Oldest first, skipping messages already in flight."""
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, topic, payload, read_id, created_ms FROM outbox ORDER BY seq LIMIT ?",
                (limit + len(exclude),),
            ).fetchall()
        return [SpooledMessage(*r) for r in rows if r[0] not in exclude][:limit]

    def ack(self, seq: int) -> None:
        with self._lock:
            cur = self._db.execute("DELETE FROM outbox WHERE seq = ?", (seq,))
            self._depth -= cur.rowcount

    def depth(self) -> int:
        return self._depth

    def _bump(self, name: str, n: int) -> None:
        self._db.execute(
            "INSERT INTO counters (name, value) VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET value = value + ?",
            (name, n, n),
        )

    def counter(self, name: str) -> int:
        with self._lock:
            row = self._db.execute("SELECT value FROM counters WHERE name = ?", (name,)).fetchone()
        return row[0] if row else 0

    def purge(self, now_ms: int, limits_ms: dict[str, int]) -> dict[str, int]:
        """Retention: delete rows older than their limit and strip crops older than theirs. With
        secure_delete on and the WAL checkpointed and truncated, the bytes are gone from the files, not
        only from the table. Returns counts only."""
        counts = {"reads": 0, "hits": 0, "other": 0, "crops": 0}
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                spool_cut = now_ms - limits_ms["spool_h"]
                # The spool cap applies to everything, whatever its kind.
                for hit, topic in self._db.execute("SELECT hit, topic FROM outbox WHERE stored_ms < ?",
                                                   (spool_cut,)).fetchall():
                    counts["hits" if hit else "reads" if topic.endswith("/read") else "other"] += 1
                self._db.execute("DELETE FROM outbox WHERE stored_ms < ?", (spool_cut,))
                counts["hits"] += self._db.execute("DELETE FROM outbox WHERE hit = 1 AND stored_ms < ?",
                                                   (now_ms - limits_ms["hits_h"],)).rowcount
                counts["reads"] += self._db.execute(
                    "DELETE FROM outbox WHERE hit = 0 AND topic LIKE '%/read' AND stored_ms < ?",
                    (now_ms - limits_ms["reads_h"],)).rowcount
                for seq, payload in self._db.execute("SELECT seq, payload FROM outbox WHERE crop = 1 AND stored_ms < ?",
                                                     (now_ms - limits_ms["crops_h"],)).fetchall():
                    try:
                        p = json.loads(payload)
                    except ValueError:
                        continue
                    p.pop("crop_jpeg", None)
                    self._db.execute("UPDATE outbox SET payload = ?, crop = 0 WHERE seq = ?",
                                     (json.dumps(p, separators=(",", ":")).encode(), seq))
                    counts["crops"] += 1
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            gone = counts["reads"] + counts["hits"] + counts["other"]
            self._depth -= gone
            # Always: old WAL frames beyond the write position still hold delivered reads' bytes.
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return counts

    def close(self) -> None:
        with self._lock:
            try:
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            finally:
                self._db.close()


def read_rows(path: str | Path) -> list[tuple[str, bytes, str, int]]:
    """(topic, payload, read_id, stored_ms) of every row, read-only, for `alprd export`."""
    p = Path(path)
    if not p.exists():
        return []
    db = sqlite3.connect(f"file:{p}?mode=ro", uri=True, timeout=10)
    try:
        cols = {r[1] for r in db.execute("PRAGMA table_info(outbox)")}
        stored = "stored_ms" if "stored_ms" in cols else "created_ms"
        return db.execute(f"SELECT topic, payload, read_id, {stored} FROM outbox ORDER BY seq").fetchall()
    except sqlite3.OperationalError:
        return []
    finally:
        db.close()
