"""Issue 33, the audit log's rows: a SIGKILLed daemon's acknowledged reads are all audited (the
spool keeps each acknowledgement until its audit entry is on disk) and the next start records that
the last run ended without `stop`; an audit log on a full disk holds its entries and writes them,
chained, when space returns."""

from __future__ import annotations

import json
import logging
import signal
import time
from pathlib import Path

import pytest
from test_daemon import camera, make_config, statuses, wait_subscribed
from test_spool_faults import fill, tmpfs

from alprd.privacy.audit import AuditLog, verify
from alprd.privacy.keys import audit_key, load_or_create_secret

KEY = b"k" * 32


def entries(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()]


# --- the log alone ----------------------------------------------------------------------------------


def test_unclean_end_is_the_newest_start_without_a_stop(tmp_path):
    log = AuditLog(tmp_path / "audit.jsonl", KEY, "u")
    assert log.unclean_end() is None  # no log yet
    log.append("start", version="x")
    log.append("published", count=3)
    log.append("export", user="someone")  # `alprd export` writes while the daemon runs or not
    ended = log.unclean_end()
    assert ended == {"run_started_seq": 1, "run_started_ts": entries(log.path)[0]["ts"], "last_seq": 3,
                     "last_event": "export", "last_ts": entries(log.path)[2]["ts"]}
    log.append("stop")
    log.append("export", user="someone")
    assert log.unclean_end() is None  # stopped cleanly, whatever came after
    log.append("start")
    assert log.unclean_end()["run_started_seq"] == 6 and log.unclean_end()["last_event"] == "start"


def test_audit_log_on_a_full_disk_holds_entries_and_writes_them_chained_later(tmp_path, caplog):
    caplog.set_level(logging.INFO, "alprd.privacy.audit")
    with tmpfs(tmp_path / "fs", "size=256k") as fs:
        path = fs / "audit.jsonl"
        log = AuditLog(path, KEY, "u", hold_on_error=True)
        log.append("start")
        filler = fill(fs)
        held = [log.append("published", count=i, pad="x" * 5000) for i in range(5)]
        assert all("seq" not in e for e in held) and log.held() == 5 and not log.retry()
        errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
        assert len(errors) == 1 and "No space left on device" in errors[0] and str(path) in errors[0]
        assert verify(path, KEY).ok and len(entries(path)) == 1  # a half-written line was cut back off

        strict = AuditLog(path, KEY, "u")  # `alprd export`: must not answer unrecorded
        with pytest.raises(OSError):
            strict.append("export", user="x", pad="x" * 5000)
        assert verify(path, KEY).ok and len(entries(path)) == 1

        filler.unlink()
        written = log.append("stop")
        assert written["seq"] == 7 and log.held() == 0
        got = entries(path)
        assert [e["event"] for e in got] == ["start"] + ["published"] * 5 + ["stop"]
        assert [e["count"] for e in got[1:6]] == list(range(5))
        assert [e["ts_ms"] for e in got[1:6]] == [e["ts_ms"] for e in held]  # when it happened, not when written
        assert verify(path, KEY).ok
        assert any("writable again" in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)


def test_audit_entries_beyond_the_memory_bound_are_counted_in_the_log(tmp_path, monkeypatch):
    monkeypatch.setattr(AuditLog, "MAX_HELD", 3)
    with tmpfs(tmp_path / "fs", "size=256k") as fs:
        log = AuditLog(fs / "audit.jsonl", KEY, "u", hold_on_error=True)
        log.append("start")
        filler = fill(fs)
        for i in range(8):
            log.append("published", count=i, pad="x" * 5000)
        assert log.held() == 3
        filler.unlink()
        log.append("stop")
        got = entries(fs / "audit.jsonl")
        assert [e["event"] for e in got] == ["start", "audit_entries_lost", "published", "published", "published",
                                             "stop"]
        assert got[1]["count"] == 5 and [e["count"] for e in got[2:5]] == [5, 6, 7]
        assert verify(fs / "audit.jsonl", KEY).ok


# --- the daemon SIGKILLed ---------------------------------------------------------------------------


def test_sigkill_every_acknowledged_read_is_audited_and_the_unclean_end_recorded(tmp_path, broker, subscriber_factory,
                                                                               traffic_video, models_dir, daemons):
    sub = subscriber_factory(broker.port)
    wait_subscribed(sub, broker.port)
    work = tmp_path / "unit"
    # The default audit window (60 s, 1000 acknowledgements): the run is killed inside it.
    cams = ["cam1", "cam2", "cam3"]
    config = make_config(work, broker.port, models_dir, [camera(c, traffic_video[0]) for c in cams])
    d1 = daemons(config)

    def settled(s) -> bool:
        """Every read the subscriber got is acknowledged, nothing is left to send, the cameras are done."""
        reads = len(s.payloads("/read"))
        return reads > 0 and any(p["published"] == reads and p["spool_depth"] == 0 and p["inflight"] == 0
                                 for p in s.payloads("/stats")[-1:]) \
            and all(v["state"] == "finished" for v in statuses(s)[-1]["cameras"].values())

    # Settled, and still so with the same count a few stats later (frames queued when the camera
    # finished may still make a read).
    deadline = time.monotonic() + 120
    acked = -1
    while time.monotonic() < deadline:
        assert sub.wait_for(settled, max(1.0, deadline - time.monotonic())), d1.output[-3000:]
        if sub.payloads("/stats")[-1]["published"] == acked:
            break
        acked = sub.payloads("/stats")[-1]["published"]
        time.sleep(1.5)
    read_ids = sorted(p["read_id"] for p in sub.payloads("/read"))
    log = work / "audit.jsonl"
    before = entries(log)
    audited_before = sum(e["count"] for e in before if e["event"] == "published")
    d1.proc.send_signal(signal.SIGKILL)
    d1.wait(10)
    assert before[-1]["event"] != "stop"

    # The next start: the unclean end first, then what the killed run had acknowledged, then start.
    images = tmp_path / "no-images"
    images.mkdir()
    config = make_config(work, broker.port, models_dir, [camera("cam1", images)])
    d2 = daemons(config, "--until-sources-end")
    assert d2.wait(120) == 0, d2.output[-3000:]
    assert "Traceback" not in d2.output
    (warned,) = d2.lines(" WARNING ", "ended without stopping")
    after = entries(log)
    new = after[len(before):]
    assert new[0]["event"] == "unclean_end", [e["event"] for e in new]
    assert new[0]["last_seq"] == before[-1]["seq"] and new[0]["last_event"] == before[-1]["event"]
    assert new[0]["run_started_seq"] == max(e["seq"] for e in before if e["event"] == "start")
    assert f"seq {before[-1]['seq']} {before[-1]['event']}" in warned
    recovered = [e for e in new if e["event"] == "published" and e.get("previous_run")]
    events = [e["event"] for e in new]
    assert recovered and events.index("start") > events.index("published")
    # Every read the broker acknowledged before the kill is in the audit log, and no other.
    published = [e for e in after if e["event"] == "published" and e["destination"] == "primary"]
    assert audited_before + sum(e["count"] for e in recovered) == acked == sum(e["count"] for e in published)
    assert min(e["first_read_id"] for e in published) == read_ids[0]
    assert max(e["last_read_id"] for e in published) == read_ids[-1]
    assert verify(log, audit_key(load_or_create_secret(work / "alprd-unit.key"))).ok
    # A clean stop is not an unclean end: the next start says nothing.
    assert after[-1]["event"] == "stop"
    assert AuditLog(log, KEY, "test-unit").unclean_end() is None
