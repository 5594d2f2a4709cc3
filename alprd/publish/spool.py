"""Store and forward: every outgoing message is written here before it is published, and deleted
only after the broker acknowledged it (PUBACK). Survives broker outages and a killed daemon."""

from __future__ import annotations

import logging
import sqlite3
import threading
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
        self._depth = self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]

    def put(self, topic: str, payload: bytes, read_id: str, created_ms: int) -> None:
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
                    "INSERT INTO outbox (topic, payload, read_id, created_ms) VALUES (?, ?, ?, ?)",
                    (topic, payload, read_id, created_ms),
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

    def close(self) -> None:
        with self._lock:
            try:
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            finally:
                self._db.close()
