"""Issue 33, the spool's rows: a disk that fills up under the spool (a tiny tmpfs filled to the last
byte, and SQLite's own failure injected where mounting is not allowed), a read-only folder (a
read-only tmpfs: chmod does not stop root), a corrupt spool.db, and every camera ending in error.
Real mosquitto brokers and `alprd run` for the end-to-end rows; every read is accounted for."""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import random
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_daemon import camera, durable_broker, make_config, spool_rows, statuses
from test_privacy import alprd

from alprd.privacy.audit import verify
from alprd.privacy.keys import audit_key, load_or_create_secret
from alprd.publish import spool as spool_mod
from alprd.publish.spool import Spool, SpoolUnusable

SPOOL_LOG = "alprd.publish.spool"


# --- helpers -------------------------------------------------------------------------------------


@contextlib.contextmanager
def tmpfs(where: Path, options: str) -> Iterator[Path]:
    """A tmpfs of our own (root can mount here and in CI); skipped where mounting is not allowed."""
    where.mkdir(parents=True, exist_ok=True)
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)], capture_output=True, text=True)
    if res.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({res.stderr.strip() or res.returncode}): needs root")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


def remount_ro(where: Path) -> None:
    subprocess.run(["mount", "-o", "remount,ro", str(where)], check=True, capture_output=True)


def fill(folder: Path) -> Path:
    """Write a file until the filesystem has not one byte left."""
    filler = folder / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        for chunk in (1 << 16, 4096, 1):
            try:
                while True:
                    os.write(fd, b"\0" * chunk)
            except OSError as e:
                assert e.errno == errno.ENOSPC, e
    finally:
        os.close(fd)
    return filler


def errors(caplog: pytest.LogCaptureFixture, level: int = logging.ERROR) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == SPOOL_LOG and r.levelno == level]


class FullDisk:
    """The spool's SQLite connection, failing as SQLite does on a full disk while `full` is set:
    COMMIT raises "database or disk is full" after SQLite rolled the transaction back itself (so a
    blind ROLLBACK fails with "no transaction is active"), or an ENOSPC OSError with it still open."""

    def __init__(self, db: sqlite3.Connection, how: str):
        self.db, self.how, self.full = db, how, False

    @property
    def in_transaction(self) -> bool:
        return self.db.in_transaction

    def execute(self, sql: str, *args):
        if self.full and sql.strip().upper() == "COMMIT":
            if self.how == "sqlite":
                self.db.execute("ROLLBACK")
                raise sqlite3.OperationalError("database or disk is full")
            raise OSError(errno.ENOSPC, "No space left on device")
        return self.db.execute(sql, *args)

    def close(self) -> None:
        self.db.close()


def put(sp: Spool, i: int, size: int = 2000) -> None:
    sp.put("alprd/u/cam1/read", json.dumps({"n": i, "pad": "x" * size}).encode(), f"r{i:03d}", 1000 + i)


def file_read_ids(path: Path) -> list[str]:
    return [rid for _, rid in spool_rows(path)]


# --- disk full: the spool alone ------------------------------------------------------------------


def test_disk_full_holds_reads_in_memory_sends_them_and_writes_them_when_space_returns(tmp_path, caplog, monkeypatch):
    monkeypatch.setattr(spool_mod, "RETRY_EVERY_S", 0.0)
    caplog.set_level(logging.INFO, SPOOL_LOG)
    with tmpfs(tmp_path / "fs", "size=1m") as fs:
        sp = Spool(fs / "spool.db")
        for i in range(5):
            put(sp, i)
        filler = fill(fs)
        for i in range(5, 25):
            put(sp, i)  # must not raise: a read that was made is never lost silently
        assert sp.depth() == 25 and sp.dropped() == {"spool_full": 0, "spool_error": 0}
        held = sp.in_memory()
        assert held >= 19, f"only {held} of 20 puts failed on a full disk"  # a WAL page's slack may take one
        lines = errors(caplog)
        assert len(lines) == 1, lines  # one line, not one per read
        assert "cannot write (database or disk is full)" in lines[0] and str(fs / "spool.db") in lines[0]
        assert "cannot rollback" not in caplog.text and "no transaction is active" not in caplog.text

        # The broker's side sees everything, oldest first, from the file and then from memory.
        msgs = sp.pending(100)
        assert [m.read_id for m in msgs] == [f"r{i:03d}" for i in range(25)]
        in_memory = [m for m in msgs if m.seq < 0]
        assert len(in_memory) == held
        sp.ack(in_memory[0].seq)  # published from memory: acknowledged, and kept for the audit
        sp.ack(msgs[0].seq)  # a row in the file: its deletion waits for the disk
        assert sp.depth() == 23
        assert {a.read_id for a in sp.acked()} == {in_memory[0].read_id, "r000"}
        assert "r000" not in [m.read_id for m in sp.pending(100)]

        filler.unlink()
        put(sp, 25)
        assert sp.in_memory() == 0 and sp.depth() == 24
        back = errors(caplog, logging.WARNING)
        assert len(back) == 1 and "writable again" in back[0] and f"{held - 1} message(s) written from memory" in back[0]
        sp.forget(a.id for a in sp.acked())
        assert sp.acked() == []
        sp.close()
        # In the file, in order, nothing lost and nothing twice.
        want = [f"r{i:03d}" for i in range(26) if f"r{i:03d}" not in ("r000", in_memory[0].read_id)]
        assert file_read_ids(fs / "spool.db") == want
        assert len(errors(caplog)) == 1


def test_disk_full_memory_bound_drops_oldest_and_counts(tmp_path, caplog, monkeypatch):
    monkeypatch.setattr(spool_mod, "RETRY_EVERY_S", 0.0)
    caplog.set_level(logging.INFO, SPOOL_LOG)
    with tmpfs(tmp_path / "fs", "size=1m") as fs:
        sp = Spool(fs / "spool.db", memory_rows=5)
        put(sp, 0)
        filler = fill(fs)
        for i in range(1, 13):
            put(sp, i)
        assert sp.in_memory() == 5 and sp.dropped()["spool_error"] == 7
        assert [m.read_id for m in sp.pending(100)] == ["r000", "r008", "r009", "r010", "r011", "r012"]
        assert len(errors(caplog)) == 1
        filler.unlink()
        put(sp, 13)
        assert sp.in_memory() == 0
        assert sp.counter("dropped_spool_error") == 7  # written with the messages: it survives a restart
        # made == in the spool + dropped
        assert sp.depth() + sp.dropped()["spool_error"] == 14
        sp.close()
        sp = Spool(fs / "spool.db")
        assert sp.dropped() == {"spool_full": 0, "spool_error": 7} and sp.depth() == 7
        sp.close()


@pytest.mark.parametrize("how", ["sqlite", "oserror"])
def test_injected_disk_full_is_survived_without_a_masking_rollback_error(tmp_path, caplog, monkeypatch, how):
    """Where no tmpfs can be mounted: the same failure, injected at the SQLite connection."""
    monkeypatch.setattr(spool_mod, "RETRY_EVERY_S", 0.0)
    caplog.set_level(logging.INFO, SPOOL_LOG)
    sp = Spool(tmp_path / "spool.db")
    sp._db = disk = FullDisk(sp._db, how)  # type: ignore[assignment]
    put(sp, 0)
    disk.full = True
    for i in range(1, 6):
        put(sp, i)
    assert sp.in_memory() == 5 and sp.depth() == 6
    (line,) = errors(caplog)
    assert ("database or disk is full" if how == "sqlite" else "No space left on device") in line
    assert "no transaction is active" not in caplog.text and not disk.in_transaction
    disk.full = False
    put(sp, 6)
    assert sp.in_memory() == 0 and [m.read_id for m in sp.pending(10)] == [f"r{i:03d}" for i in range(7)]
    sp.close()


# --- a corrupt spool.db ----------------------------------------------------------------------------


def _corrupt(path: Path, kind: str) -> bytes:
    data = path.read_bytes()
    bad = {"truncated": data[: len(data) // 2],
           "random": random.Random(7).randbytes(len(data)),
           "text": b"this is not a spool, it is a note someone saved over it\n" * 40}[kind]
    path.write_bytes(bad)
    return bad


def _spool_with_rows(path: Path, n: int = 300) -> None:
    sp = Spool(path)
    for i in range(n):
        put(sp, i, 400)
    sp.close()


@pytest.mark.parametrize("kind", ["truncated", "random", "text"])
def test_corrupt_spool_is_moved_aside_and_a_new_one_started(tmp_path, caplog, kind):
    caplog.set_level(logging.INFO, SPOOL_LOG)
    path = tmp_path / "spool.db"
    _spool_with_rows(path)
    bad = _corrupt(path, kind)
    sp = Spool(path)
    moved = sp.moved_aside
    assert moved is not None and moved.path == path
    assert moved.moved_to.name.startswith("spool.db.corrupt-") and moved.moved_to.read_bytes() == bad  # kept as it was
    assert "malformed" in moved.reason or "not a database" in moved.reason
    (line,) = errors(caplog, logging.WARNING)
    assert f"spool {path} is corrupt" in line and str(moved.moved_to) in line
    assert sp.depth() == 0
    put(sp, 1)
    assert [m.read_id for m in sp.pending(10)] == ["r001"]
    sp.close()
    assert (path.stat().st_mode & 0o777) == 0o600
    assert Spool(path).moved_aside is None  # the new one is sound


@pytest.mark.parametrize("kind", ["truncated", "random", "text"])
def test_daemon_with_a_corrupt_spool_moves_it_aside_audits_it_and_runs(tmp_path, broker, models_dir, kind):
    work = tmp_path / "unit"
    images = tmp_path / "no-images"
    images.mkdir()
    config = make_config(work, broker.port, models_dir, [camera("cam1", images)])
    _spool_with_rows(work / "spool.db")
    bad = _corrupt(work / "spool.db", kind)

    res = alprd("run", "-c", str(config), "--until-sources-end", cwd=work)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "Traceback" not in res.stderr
    warned = [ln for ln in res.stderr.splitlines() if " WARNING " in ln and "is corrupt" in ln]
    assert len(warned) == 1, res.stderr[-3000:]
    (aside,) = work.glob("spool.db.corrupt-*")
    assert aside.read_bytes() == bad and str(aside) in warned[0]
    entries = [json.loads(x) for x in (work / "audit.jsonl").read_text().splitlines()]
    (entry,) = [e for e in entries if e["event"] == "spool_corrupt"]
    assert entry["destination"] == "primary" and entry["file"] == str(work / "spool.db")
    assert entry["moved_to"] == str(aside) and ("malformed" in entry["found"] or "not a database" in entry["found"])
    assert [e["event"] for e in entries].index("spool_corrupt") < [e["event"] for e in entries].index("start")
    assert verify(work / "audit.jsonl", audit_key(load_or_create_secret(work / "alprd-unit.key"))).ok
    with sqlite3.connect(work / "spool.db") as db:  # the new spool is a sound, empty one
        assert db.execute("PRAGMA quick_check").fetchone()[0] == "ok"
        assert db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0] == 0


# --- a read-only folder ----------------------------------------------------------------------------


def test_spool_in_a_read_only_folder_is_one_clear_error(tmp_path):
    with tmpfs(tmp_path / "fresh", "ro,size=1m") as ro:
        with pytest.raises(SpoolUnusable) as e:
            Spool(ro / "spool.db")
        assert str(ro / "spool.db") in str(e.value) and "Read-only file system" in str(e.value)
    with tmpfs(tmp_path / "used", "size=1m") as fs:
        _spool_with_rows(fs / "spool.db", 3)
        remount_ro(fs)
        with pytest.raises(SpoolUnusable) as e:
            Spool(fs / "spool.db")
        assert f"cannot write in {fs}" in str(e.value) and "read-only" in str(e.value)


def test_spool_refused_by_permissions_is_one_clear_error(tmp_path, monkeypatch):
    """Where no read-only mount can be made: the folder's refusal, injected where the file is created."""
    def refuse(path, *args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", str(path))

    monkeypatch.setattr(spool_mod.os, "open", refuse)
    with pytest.raises(SpoolUnusable) as e:
        Spool(tmp_path / "spool.db")
    assert str(e.value).startswith(f"spool {tmp_path / 'spool.db'}: ") and "(Permission denied)" in str(e.value)
    assert "spool.path" in str(e.value)


@pytest.mark.parametrize("case", ["fresh", "used", "spool-only"])
def test_daemon_on_a_read_only_folder_says_one_line_and_exits_2(tmp_path, models_dir, case):
    """fresh: nothing there yet; used: a unit folder remounted read-only (as ext4 does on errors);
    spool-only: key and audit log elsewhere, only the spool's folder read-only."""
    elsewhere = tmp_path / "rw"
    elsewhere.mkdir()
    with tmpfs(tmp_path / "unit", "size=4m") as fs:
        privacy = ({"key_file": str(elsewhere / "k.key"), "audit_log": str(elsewhere / "audit.jsonl")}
                   if case == "spool-only" else {})
        config = make_config(elsewhere, 1, models_dir, [camera("cam1", elsewhere / "none.mp4")], privacy=privacy)
        text = config.read_text().replace(str(elsewhere / "spool.db"), str(fs / "spool.db"))
        config.write_text(text)
        if case != "fresh":
            _spool_with_rows(fs / "spool.db", 3)
            load_or_create_secret(fs / "alprd-unit.key")
            (fs / "audit.jsonl").write_bytes(b"")
        remount_ro(fs)
        res = alprd("run", "-c", str(config), cwd=elsewhere)
    assert res.returncode == 2, res.stderr[-3000:]
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("alprd: error: "), res.stderr[-3000:]
    assert str(fs) in lines[0] and ("Read-only file system" in lines[0] or "read-only" in lines[0]), lines[0]
    if case == "spool-only":
        assert lines[0].startswith(f"alprd: error: spool {fs / 'spool.db'}: cannot write in {fs}")


# --- disk full under a running daemon, broker down ----------------------------------------------


def test_daemon_survives_a_full_disk_with_the_broker_down_and_loses_nothing(tmp_path, broker_factory, models_dir,
                                                                           traffic_video, daemons, request):
    # Persistence keeps the test subscriber's session while the broker is down: what the daemon
    # publishes once it is back reaches the subscriber however soon it reconnects.
    broker, sub = durable_broker(broker_factory, tmp_path, request)
    broker.stop()

    with tmpfs(tmp_path / "unit", "size=16m") as fs:
        # The clip over and over, each pass read anew (no repeat window): reads keep coming.
        config = make_config(fs, broker.port, models_dir, [camera("cam1", traffic_video[0], loop=True)],
                             mqtt={"reconnect_max_s": 1}, tracking={"repeat_window_s": 0})
        d = daemons(config)
        assert d.wait_output(lambda _: len(spool_rows(fs / "spool.db")) >= 1, 120), d.output[-3000:]
        filler = fill(fs)
        in_file = len(spool_rows(fs / "spool.db"))
        assert d.wait_output(lambda d: d.lines(" ERROR ", "cannot write"), 120), d.output[-3000:]
        time.sleep(3)  # more reads, into memory
        broker.start()
        # Disk still full, broker back: what memory holds goes out from there, and is acknowledged.
        assert sub.wait_for(lambda s: any(p["published"] > in_file for p in s.payloads("/stats")), 60), \
            d.output[-3000:]
        assert filler.exists() and d.proc.poll() is None
        filler.unlink()
        assert d.wait_output(lambda d: d.lines("writable again"), 60), d.output[-3000:]
        d.terminate()
        assert d.wait(60) == 0, d.output[-3000:]
        out = d.output

        assert "Traceback" not in out and "no transaction is active" not in out, out[-3000:]
        assert len(d.lines(" ERROR ", "spool", "cannot write")) == 1, out[-3000:]
        assert len(out.splitlines()) < 40, f"{len(out.splitlines())} log lines:\n{out[-3000:]}"
        assert sub.wait_for(lambda s: any(st["online"] is False for st in statuses(s)), 15)
        final = sub.payloads("/stats")[-1]["privacy"]["destinations"]["primary"]
        dropped = final["dropped"]
        # Every read made is accounted for: published, still in the spool, or dropped (and counted).
        assert final["spooled"] == final["published"] + final["spool_depth"] + dropped["spool_full"] + \
            dropped["spool_error"], final
        assert dropped == {"spool_full": 0, "spool_error": 0} and final["spool_in_memory"] == 0, final
        made = final["spooled"]
        (stopped,) = d.lines("stopped: primary: ")
        assert f"{made} made, {final['published']} published" in stopped and "spool_error 0" in stopped
        with sub._lock:
            received = {p for t, p, _ in sub.messages if t.endswith("/read") or t.endswith("/hit")}
        assert len(received) == final["published"], (len(received), final)
        assert len(spool_rows(fs / "spool.db")) == final["spool_depth"]
        assert verify(fs / "audit.jsonl", audit_key(load_or_create_secret(fs / "alprd-unit.key"))).ok
        audited = sum(e["count"] for e in map(json.loads, (fs / "audit.jsonl").read_text().splitlines())
                      if e["event"] == "published")
        assert audited == final["published"]


# --- every camera in error ---------------------------------------------------------------------------


def test_until_sources_end_with_every_camera_in_error_exits_non_zero(tmp_path, broker, models_dir):
    work = tmp_path / "unit"
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(random.Random(3).randbytes(50_000))
    config = make_config(work, broker.port, models_dir,
                         [camera("gone", tmp_path / "missing.mp4"), camera("broken", corrupt)])
    t0 = time.monotonic()
    res = alprd("run", "-c", str(config), "--until-sources-end", cwd=work)
    assert res.returncode == 1, res.stderr[-3000:]
    assert time.monotonic() - t0 < 60 and "Traceback" not in res.stderr
    (line,) = [ln for ln in res.stderr.splitlines() if "every camera ended in error" in ln]
    assert " ERROR " in line and "gone (video file not found" in line and "broken (" in line
    entries = [json.loads(x) for x in (work / "audit.jsonl").read_text().splitlines()]
    assert entries[-1]["event"] == "stop"  # an orderly end, with an error to report: not an unclean one

    # The control: one camera that reads to its end is a success.
    fine = tmp_path / "images"
    fine.mkdir()
    config = make_config(work, broker.port, models_dir, [camera("gone", tmp_path / "missing.mp4"), camera("ok", fine)])
    res = alprd("run", "-c", str(config), "--until-sources-end", cwd=work)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "every camera ended in error" not in res.stderr
