"""Store and forward: every outgoing message is written here before it is published, and deleted
only after the broker acknowledged it (PUBACK). Survives broker outages and a killed daemon.

A PUBACK turns the row into a line of the `acked` table (read id and kind, no payload) in the same
transaction, so an acknowledgement survives a SIGKILL until the audit entry naming it is written
(`acked()`, then `forget()`); a run that ended without one has them audited at the next start.

A disk that refuses writes (full, read-only remount, I/O errors) is survived: messages are held in
memory, up to a bound (the oldest beyond it dropped and counted as `spool_error`), also sent from
there when the broker is up, and written to the file as soon as it takes writes again. Messages held
in memory are lost if the process is killed before that; the periodic stats show how many there are
(`spool_in_memory`).

At open, a file SQLite cannot read as a database is moved aside (kept for examination, named in
`moved_aside` for the audit log) and a new spool started; a folder the daemon cannot write in is a
one-line error (`SpoolUnusable`)."""

from __future__ import annotations

import itertools
import json
import logging
import os
import sqlite3
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from alprd.errors import UserError

log = logging.getLogger(__name__)

MEMORY_ROWS = 10_000
MEMORY_BYTES = 64 * 1024 * 1024  # reads with crops are tens of kB: the byte bound is the one that bites
ERROR_EVERY_S = 60.0  # one ERROR line per interval while writes fail, not one per message
RETRY_EVERY_S = 1.0  # how often a failing disk is tried again with what memory holds
_RECOVER_CHUNK = 200
# What a disk refusing writes raises: sqlite's SQLITE_FULL/IOERR/READONLY are OperationalError (a
# DatabaseError); an ENOSPC on the WAL can also surface as OSError.
_WRITE_ERRORS = (sqlite3.DatabaseError, OSError)


class SpoolUnusable(UserError):
    """The spool cannot be opened for writing: a folder, mount or file for the user to fix."""


@dataclass(frozen=True)
class SpooledMessage:
    seq: int  # negative: held in memory while the file refuses writes
    topic: str
    payload: bytes
    read_id: str
    created_ms: int


@dataclass(frozen=True)
class AckedMessage:
    id: int  # negative: the acknowledgement could not be written and is held in memory
    read_id: str
    kind: str
    acked_ms: int


@dataclass(frozen=True)
class MovedAside:
    """A corrupt spool file renamed at open, for the audit log."""

    path: Path
    moved_to: Path
    reason: str


@dataclass(frozen=True)
class _Held:
    topic: str
    payload: bytes
    read_id: str
    created_ms: int
    stored_ms: int
    hit: bool
    crop: bool


class _Corrupt(Exception):
    pass


def _kind(topic: str) -> str:
    return topic.rsplit("/", 1)[-1]


class Spool:
    def __init__(self, path: str | Path, max_rows: int = 500_000, *, memory_rows: int = MEMORY_ROWS,
                 memory_bytes: int = MEMORY_BYTES):
        self.path = Path(path)
        self.max_rows = max_rows
        self.memory_rows, self.memory_bytes = memory_rows, memory_bytes
        self._lock = threading.Lock()
        self.moved_aside: MovedAside | None = None
        try:
            self._db = self._open()
        except _Corrupt as e:
            self.moved_aside = self._move_aside(str(e))
            self._db = self._open()
        self._depth = self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]
        self._dropped = {name: self._read_counter(f"dropped_{name}") for name in ("spool_full", "spool_error")}
        # While writes fail: messages (negative seq -> message), acknowledgements, and the rows and
        # acked lines whose deletion waits for the disk.
        self._overflow: OrderedDict[int, _Held] = OrderedDict()
        self._overflow_bytes = 0
        self._next_mem = 0
        self._moved: dict[int, int] = {}  # memory seq -> its row once written (a PUBACK may name either)
        self._acks_mem: dict[int, tuple[AckedMessage, int | None]] = {}  # id -> (ack, its outbox row)
        self._acked_rows: set[int] = set()  # outbox rows acknowledged, not yet deleted
        self._deletes: set[int] = set()  # ... of which the acknowledgement is audited: delete when possible
        self._forgets: set[int] = set()  # acked lines audited, not yet deleted
        self._unsaved_error_drops = 0
        self._failing_since: float | None = None
        self._last_error_log = 0.0
        self._next_retry = 0.0
        self._drops_at_log = self._drops_at_fail = self._dropped["spool_error"]
        self._tx_rows = self._tx_full = 0  # rows inserted / dropped for room by the open transaction

    # --- open ------------------------------------------------------------------------------------

    def _open(self) -> sqlite3.Connection:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if not self.path.exists():  # plates live here: only the daemon's user may read it (WAL/SHM follow)
                os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600))
        except OSError as e:
            raise SpoolUnusable(self._unusable(e.strerror or str(e))) from None
        db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            # FULL: a row acknowledged to the pipeline must survive power loss, not only a crash.
            db.execute("PRAGMA synchronous=FULL")
            db.execute("PRAGMA secure_delete=ON")
            # A truncated or overwritten file can open and fail later, on the first row read.
            check = [r[0] for r in db.execute("PRAGMA quick_check(5)")]
            if check != ["ok"]:
                raise _Corrupt(f"integrity check: {check[0]}")
            db.executescript(
                """
                CREATE TABLE IF NOT EXISTS outbox (
                    seq INTEGER PRIMARY KEY AUTOINCREMENT,
                    topic TEXT NOT NULL,
                    payload BLOB NOT NULL,
                    read_id TEXT NOT NULL,
                    created_ms INTEGER NOT NULL
                );
                CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
                CREATE TABLE IF NOT EXISTS acked (
                    id INTEGER PRIMARY KEY AUTOINCREMENT,
                    read_id TEXT NOT NULL,
                    kind TEXT NOT NULL,
                    acked_ms INTEGER NOT NULL
                );
                """
            )
            self._migrate(db)
        except _Corrupt:
            db.close()
            raise
        except sqlite3.DatabaseError as e:
            db.close()
            name = getattr(e, "sqlite_errorname", "")
            if name in ("SQLITE_CORRUPT", "SQLITE_NOTADB") or "malformed" in str(e) or "not a database" in str(e):
                raise _Corrupt(str(e)) from None
            raise SpoolUnusable(self._unusable(str(e))) from None
        return db

    def _unusable(self, why: str) -> str:
        folder = self.path.parent
        if folder.is_dir() and not os.access(folder, os.W_OK | os.X_OK):
            return (f"spool {self.path}: cannot write in {folder} ({why}; the folder is read-only or not the "
                    "daemon user's): make it writable, or set spool.path to a writable folder")
        return f"spool {self.path}: cannot open it for writing ({why}): free space, fix its permissions, or set spool.path"

    def _move_aside(self, reason: str) -> MovedAside:
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        dest = self.path.with_name(f"{self.path.name}.corrupt-{stamp}")
        n = 1
        while dest.exists():
            n += 1
            dest = self.path.with_name(f"{self.path.name}.corrupt-{stamp}-{n}")
        try:
            for suffix in ("", "-wal", "-shm"):  # the same suffixes, so SQLite opens the pair as one
                src = Path(f"{self.path}{suffix}")
                if src.exists():
                    os.replace(src, f"{dest}{suffix}")
        except OSError as e:
            raise SpoolUnusable(f"spool {self.path} is corrupt ({reason}) and cannot be moved aside "
                                f"({e.strerror}): move or delete it, then start again") from None
        log.warning("spool %s is corrupt (%s): moved aside to %s, kept for examination (its messages are not sent; "
                    "it may hold plate reads: delete it when done), and a new spool started", self.path, reason, dest)
        return MovedAside(self.path, dest, reason)

    @staticmethod
    def _migrate(db: sqlite3.Connection) -> None:
        """Retention needs to know each row's age on the unit and what it holds; spools from before
        that get the columns, their rows counted as stored now (their true age is unknown)."""
        have = {r[1] for r in db.execute("PRAGMA table_info(outbox)")}
        for col, decl in (("stored_ms", "INTEGER NOT NULL DEFAULT 0"), ("hit", "INTEGER NOT NULL DEFAULT 0"),
                          ("crop", "INTEGER NOT NULL DEFAULT 0")):
            if col not in have:
                db.execute(f"ALTER TABLE outbox ADD COLUMN {col} {decl}")
        db.execute("UPDATE outbox SET stored_ms = ? WHERE stored_ms = 0", (int(time.time() * 1000),))

    # --- writing, and surviving a disk that refuses it ----------------------------------------------

    def put(self, topic: str, payload: bytes, read_id: str, created_ms: int, *, hit: bool = False,
            crop: bool = False, stored_ms: int | None = None) -> None:
        """Store a message. When the spool is full the oldest rows make room; they are counted. When the
        disk refuses the write, the message is held in memory (see the module's docstring)."""
        msg = _Held(topic, payload, read_id, created_ms, int(time.time() * 1000) if stored_ms is None else stored_ms,
                    hit, crop)
        with self._lock:
            if self._backlog():
                self._recover()
            if self._overflow:  # older messages wait in memory: this one goes behind them
                self._hold(msg)
                return
            try:
                self._db.execute("BEGIN IMMEDIATE")
                self._insert(msg)
                self._commit()
            except _WRITE_ERRORS as e:
                self._rollback()
                self._hold(msg)
                self._failed(e)
                return
            self._writable()

    def _insert(self, msg: _Held) -> int:
        """Inside a transaction: the counts change on _commit()."""
        over = self._depth + self._tx_rows - self._tx_full + 1 - self.max_rows
        if over > 0:
            over = self._db.execute(
                "DELETE FROM outbox WHERE seq IN (SELECT seq FROM outbox ORDER BY seq LIMIT ?)", (over,)).rowcount
            self._bump("dropped_spool_full", over)
            self._tx_full += over
        cur = self._db.execute(
            "INSERT INTO outbox (topic, payload, read_id, created_ms, stored_ms, hit, crop) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (msg.topic, msg.payload, msg.read_id, msg.created_ms, msg.stored_ms, int(msg.hit), int(msg.crop)))
        self._tx_rows += 1
        return int(cur.lastrowid or 0)

    def _commit(self) -> None:
        self._db.execute("COMMIT")
        full, self._depth = self._tx_full, self._depth + self._tx_rows - self._tx_full
        self._tx_rows = self._tx_full = 0
        if full:
            self._dropped["spool_full"] += full
            log.warning("spool full (%d rows): dropped %d oldest message(s)", self.max_rows, full)

    def _rollback(self) -> None:
        """Only when a transaction is open: after SQLITE_FULL SQLite may have rolled back by itself, and a
        ROLLBACK then fails with "no transaction is active", hiding the real error."""
        self._tx_rows = self._tx_full = 0
        if self._db.in_transaction:
            try:
                self._db.execute("ROLLBACK")
            except sqlite3.Error:  # the connection itself is gone: the error being handled says why
                pass

    def _hold(self, msg: _Held) -> None:
        self._next_mem -= 1
        self._overflow[self._next_mem] = msg
        self._overflow_bytes += len(msg.payload)
        while self._overflow and (len(self._overflow) > self.memory_rows or self._overflow_bytes > self.memory_bytes):
            _, old = self._overflow.popitem(last=False)
            self._overflow_bytes -= len(old.payload)
            self._unsaved_error_drops += 1
            self._dropped["spool_error"] += 1

    def _backlog(self) -> bool:
        return bool(self._overflow or self._deletes or self._forgets or self._unsaved_error_drops)

    def _failed(self, e: BaseException) -> None:
        """One ERROR when writes start failing, then one per ERROR_EVERY_S with the counts since."""
        now = time.monotonic()
        self._next_retry = now + RETRY_EVERY_S
        first = self._failing_since is None
        if first:
            self._failing_since = now
        if first or now - self._last_error_log >= ERROR_EVERY_S:
            dropped = self._dropped["spool_error"] - self._drops_at_log
            log.error("spool %s: cannot write (%s): %d message(s) held in memory (up to %d), %d dropped%s; "
                      "retrying, and writing them when the disk takes them", self.path, e or type(e).__name__,
                      len(self._overflow), self.memory_rows, dropped,
                      "" if first else f" in the last {now - self._last_error_log:.0f} s")
            self._last_error_log, self._drops_at_log = now, self._dropped["spool_error"]

    def _recover(self, force: bool = False) -> bool:
        """Write what memory holds: deletions and the drop count first, then the messages, oldest first,
        a chunk per transaction (a disk still full fails on the first small one, not after 64 MiB).
        True when no message is left in memory."""
        if not force and time.monotonic() < self._next_retry:
            return False
        written = 0
        try:
            self._db.execute("BEGIN IMMEDIATE")
            for table, key, todo in (("outbox", "seq", self._deletes), ("acked", "id", self._forgets)):
                if todo:
                    self._db.execute(f"DELETE FROM {table} WHERE {key} IN ({','.join('?' * len(todo))})", tuple(todo))
            if self._unsaved_error_drops:
                self._bump("dropped_spool_error", self._unsaved_error_drops)
            self._commit()
            self._acked_rows -= self._deletes
            self._deletes.clear()
            self._forgets.clear()
            self._unsaved_error_drops = 0
            while self._overflow:
                chunk = list(itertools.islice(self._overflow.items(), _RECOVER_CHUNK))
                self._db.execute("BEGIN IMMEDIATE")
                seqs = [self._insert(msg) for _, msg in chunk]
                self._commit()
                for (mem_seq, msg), seq in zip(chunk, seqs):
                    del self._overflow[mem_seq]
                    self._overflow_bytes -= len(msg.payload)
                    self._moved[mem_seq] = seq  # a PUBACK for the copy sent from memory may still come
                written += len(chunk)
        except _WRITE_ERRORS as e:
            self._rollback()
            self._failed(e)
            return False
        finally:
            while len(self._moved) > self.memory_rows:  # PUBACKs for long-gone memory seqs will not come
                self._moved.pop(next(iter(self._moved)))
        self._writable(written)
        # Acknowledgements held in memory stay there until audited (forget): their rows stay in the file
        # meanwhile, so a kill before the audit entry sends them again rather than leaves them unaudited.
        return True

    def _writable(self, written: int = 0) -> None:
        """A write went through: if writes were failing, say once that they work again."""
        if self._failing_since is None:
            return
        log.warning("spool %s: writable again after %.0f s: %d message(s) written from memory, %d dropped "
                    "while it was not", self.path, time.monotonic() - self._failing_since, written,
                    self._dropped["spool_error"] - self._drops_at_fail)
        self._failing_since = None
        self._drops_at_fail = self._dropped["spool_error"]

    # --- the broker's side ---------------------------------------------------------------------------

    def pending(self, limit: int, exclude: set[int] | frozenset[int] = frozenset()) -> list[SpooledMessage]:
        """Oldest first, skipping messages already in flight; then what memory holds."""
        with self._lock:
            if self._backlog():
                self._recover()
            skip = self._acked_rows | exclude
            rows = self._db.execute(
                "SELECT seq, topic, payload, read_id, created_ms FROM outbox ORDER BY seq LIMIT ?",
                (limit + len(skip),),
            ).fetchall()
            out = [SpooledMessage(*r) for r in rows if r[0] not in skip][:limit]
            for mem_seq, m in self._overflow.items():
                if len(out) >= limit:
                    break
                if mem_seq not in exclude:
                    out.append(SpooledMessage(mem_seq, m.topic, m.payload, m.read_id, m.created_ms))
        return out

    def ack(self, seq: int) -> None:
        """The broker has the message: its row becomes an acknowledgement awaiting its audit entry."""
        now_ms = int(time.time() * 1000)
        with self._lock:
            if seq < 0:
                if seq in self._moved:
                    seq = self._moved.pop(seq)
                else:
                    msg = self._overflow.pop(seq, None)
                    if msg is not None:
                        self._overflow_bytes -= len(msg.payload)
                        self._hold_ack(msg.read_id, _kind(msg.topic), now_ms, None)
                    return
            if seq in self._acked_rows:
                return
            row = self._db.execute("SELECT read_id, topic FROM outbox WHERE seq = ?", (seq,)).fetchone()
            if row is None:  # a duplicate PUBACK, or a row purged meanwhile
                return
            try:
                self._db.execute("BEGIN IMMEDIATE")
                self._db.execute("INSERT INTO acked (read_id, kind, acked_ms) VALUES (?, ?, ?)",
                                 (row[0], _kind(row[1]), now_ms))
                self._db.execute("DELETE FROM outbox WHERE seq = ?", (seq,))
                self._db.execute("COMMIT")
            except _WRITE_ERRORS as e:
                self._rollback()
                self._acked_rows.add(seq)
                self._hold_ack(row[0], _kind(row[1]), now_ms, seq)
                self._failed(e)
            else:
                self._writable()
            self._depth -= 1

    def _hold_ack(self, read_id: str, kind: str, acked_ms: int, row: int | None) -> None:
        self._next_mem -= 1
        self._acks_mem[self._next_mem] = (AckedMessage(self._next_mem, read_id, kind, acked_ms), row)

    def acked(self) -> list[AckedMessage]:
        """Acknowledged messages not yet named by an audit entry, oldest first."""
        with self._lock:
            rows = self._db.execute("SELECT id, read_id, kind, acked_ms FROM acked ORDER BY id").fetchall()
            out = [AckedMessage(*r) for r in rows if r[0] not in self._forgets]
            out += [a for a, _ in self._acks_mem.values()]
        return out

    def forget(self, ids: Iterable[int]) -> None:
        """An audit entry names these acknowledgements: they may go."""
        with self._lock:
            for i in ids:
                if i < 0:
                    held = self._acks_mem.pop(i, None)
                    if held is not None and held[1] is not None:
                        self._deletes.add(held[1])
                else:
                    self._forgets.add(i)
            try:
                self._db.execute("BEGIN IMMEDIATE")
                for table, key, todo in (("outbox", "seq", self._deletes), ("acked", "id", self._forgets)):
                    if todo:
                        self._db.execute(f"DELETE FROM {table} WHERE {key} IN ({','.join('?' * len(todo))})",
                                         tuple(todo))
                self._db.execute("COMMIT")
            except _WRITE_ERRORS as e:
                self._rollback()
                self._failed(e)
                return
            self._acked_rows -= self._deletes
            self._deletes.clear()
            self._forgets.clear()
            self._writable()

    # --- counts --------------------------------------------------------------------------------------

    def depth(self) -> int:
        """Messages not yet acknowledged, in the file and in memory."""
        return self._depth + len(self._overflow)

    def in_memory(self) -> int:
        return len(self._overflow)

    def dropped(self) -> dict[str, int]:
        """Messages lost to the row cap (spool_full) and to a disk that refused writes (spool_error)."""
        with self._lock:
            return dict(self._dropped)

    def _bump(self, name: str, n: int) -> None:
        self._db.execute(
            "INSERT INTO counters (name, value) VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET value = value + ?",
            (name, n, n),
        )

    def _read_counter(self, name: str) -> int:
        row = self._db.execute("SELECT value FROM counters WHERE name = ?", (name,)).fetchone()
        return row[0] if row else 0

    def counter(self, name: str) -> int:
        with self._lock:
            return self._read_counter(name)

    # --- retention and closing -----------------------------------------------------------------------

    def purge(self, now_ms: int, limits_ms: dict[str, int]) -> dict[str, int]:
        """Retention: delete rows older than their limit and strip crops older than theirs. With
        secure_delete on and the WAL checkpointed and truncated, the bytes are gone from the files, not
        only from the table. Returns counts only (zeros, and the ERROR line, when the disk refuses)."""
        counts = {"reads": 0, "hits": 0, "other": 0, "crops": 0}
        with self._lock:
            if self._backlog():
                self._recover()
            try:
                self._db.execute("BEGIN IMMEDIATE")
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
            except _WRITE_ERRORS as e:
                self._rollback()
                self._failed(e)
                return dict.fromkeys(counts, 0)
            if counts["reads"] + counts["hits"] + counts["other"]:
                # Rows acknowledged but not yet deleted may be among them: recount rather than guess.
                self._acked_rows &= {r[0] for r in self._db.execute("SELECT seq FROM outbox")}
                self._depth = self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0] - len(self._acked_rows)
            self._writable()
            # Always: old WAL frames beyond the write position still hold delivered reads' bytes.
            self._checkpoint()
        return counts

    def _checkpoint(self) -> None:
        try:
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except _WRITE_ERRORS as e:  # the WAL keeps the frames until the disk takes the checkpoint
            self._failed(e)

    def close(self) -> None:
        with self._lock:
            try:
                if self._backlog() and not self._recover(force=True) and self._overflow:
                    lost = len(self._overflow)
                    self._dropped["spool_error"] += lost
                    log.error("spool %s: %d message(s) held in memory are lost: the disk never took them "
                              "(counted in dropped.spool_error)", self.path, lost)
                    self._overflow.clear()
                self._checkpoint()
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
