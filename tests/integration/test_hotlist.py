"""Hotlist: loading (CSV, YAML, one-line errors), tolerant matching, expiry, reload on change and
SIGHUP keeping the previous list when the new file is broken, and hits end to end through a real
mosquitto."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import jsonschema
import pytest
from conftest import DaemonProcess, write_config

from alprd.hotlist.hotlist import Hotlist, HotlistError, load_hotlist, normalise_plate

REPO = Path(__file__).resolve().parents[2]
HIT_SCHEMA = json.loads((REPO / "alprd" / "publish" / "schema" / "hit-v1.schema.json").read_text())
READ_SCHEMA = json.loads((REPO / "alprd" / "publish" / "schema" / "read-v1.schema.json").read_text())


def test_csv_and_yaml_load_normalised(tmp_path):
    csv = tmp_path / "h.csv"
    csv.write_text("plate,reason,priority,expires\nab-123 cd,stolen,3,2099-01-01\nXYZ9876,wanted,,\n")
    a, b = load_hotlist(csv)
    assert (a.plate, a.reason, a.priority) == ("AB123CD", "stolen", 3) and a.expires_ms > time.time() * 1000
    assert (b.plate, b.priority, b.expires_ms) == ("XYZ9876", 1, None)
    yml = tmp_path / "h.yaml"
    yml.write_text("entries:\n  - {plate: 'abc 1234', reason: amber alert, priority: 5, expires: 2001-01-01T00:00:00Z}\n")
    (c,) = load_hotlist(yml)
    assert c.plate == "ABC1234" and c.expires_ms == 978307200000
    assert normalise_plate(" ab·12-3 ") == "AB123"


@pytest.mark.parametrize("name,body,message", [
    ("h.csv", "plate,reason\n,stolen\n", "h.csv:2: plate is missing"),
    ("h.csv", "plate,reason,priority\nAB123,stolen,high\n", "h.csv:2: priority 'high' is not an integer"),
    ("h.csv", "plate,reason,expires\nAB123,stolen,tomorrow\n", "h.csv:2: expires 'tomorrow' is not a date"),
    ("h.csv", "AB123,stolen\n", "h.csv: the first row must be a header"),
    ("h.csv", "plate,reason,colour\nAB123,stolen,red\n", "h.csv:1: unknown column(s) 'colour'"),
    ("h.yaml", "- {plate: AB123}\n", "h.yaml:1: reason is missing"),
    ("h.yaml", "plates: [1, 2\n", "h.yaml: not valid YAML at line"),
    ("h.txt", "AB123\n", "h.txt: unknown hotlist type; use a .csv or .yaml file"),
    ("missing.csv", None, "missing.csv: hotlist file not found"),
])
def test_broken_files_give_one_line(tmp_path, name, body, message):
    """Files that cannot be used at all (a file whose only row is bad is one of them)."""
    p = tmp_path / name
    if body is not None:
        p.write_text(body)
    with pytest.raises(HotlistError) as e:
        load_hotlist(p)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_match_tolerates_confusables_and_one_edit_and_skips_expired(tmp_path):
    p = tmp_path / "h.csv"
    p.write_text("plate,reason,priority,expires\nABC1234,stolen,2,\nOLD0001,expired,9,2001-01-01\n"
                 "ABC1235,other,7,\n")
    h = Hotlist(str(p))
    m = h.match("ABC1234")
    assert m.entry.reason == "stolen" and m.exact and m.edits == 0  # exact beats a 1-edit higher priority
    assert h.match("A8C1Z34").entry.reason == "stolen"  # B/8 and Z/2 look-alikes: 0 edits
    assert h.match("ABC12345").edits == 1  # one extra character
    assert h.match("XBC1234").entry.plate == "ABC1234"  # one substitution
    assert h.match("XYC1234") is None  # two edits
    assert h.match("OLD0001") is None  # expired
    strict = Hotlist(str(p), max_edits=0, confusables=False)
    assert strict.match("ABC1234") and strict.match("A8C1234") is None and strict.match("ABC12345") is None
    loose = Hotlist(str(p), max_edits=0)
    assert loose.match("A8C1234").entry.plate == "ABC1234"


def test_reload_on_change_keeps_previous_list_when_broken(tmp_path, caplog):
    p = tmp_path / "h.csv"
    p.write_text("plate,reason\nABC1234,stolen\n")
    h = Hotlist(str(p), check_s=0.01)
    assert h.match("ABC1234") and h.status()["entries"] == 1
    p.write_text("plate,reason\nXYZ9876,wanted\nABC1234,stolen\n")
    os.utime(p, (time.time() + 5, time.time() + 5))
    time.sleep(0.02)
    assert h.poll() and h.match("XYZ9876")
    time.sleep(0.02)
    assert not h.poll()  # unchanged: not read again
    p.write_text("plate,reason\nQQQ1111\n")
    os.utime(p, (time.time() + 10, time.time() + 10))
    time.sleep(0.02)
    with caplog.at_level("ERROR"):
        assert not h.poll()
    assert h.match("XYZ9876"), "a broken file must keep the previous list"
    assert "h.csv:2: reason is missing" in h.status()["error"] and h.status()["entries"] == 2
    assert len([r for r in caplog.records if "keeping the previous list" in r.getMessage()]) == 1


# --- end to end: daemon, spool, real mosquitto --------------------------------------------------


def test_hits_published_immediately_and_sighup_reload(tmp_path, broker, subscriber_factory, traffic_video,
                                                      models_dir):
    video, truth = traffic_video
    hotlist = tmp_path / "hotlist.csv"
    hotlist.write_text("plate,reason,priority\n")  # empty at start: no hits
    cfg = write_config(tmp_path / "alprd.yaml", cameras=[{"id": "cam1", "source": str(video), "loop": True}],
                       models={"dir": str(models_dir)}, mqtt={"port": broker.port},
                       hotlist={"path": str(hotlist), "reload_check_s": 3600}, stats_interval_s=0.5,
                       # Every loop of the clip is a pass of its own, so listed plates keep giving hits
                       # however alike the reader reads them (within the default 10 s window a loop
                       # only repeats the last pass, and new hits came from misreads alone).
                       tracking={"repeat_window_s": 0})
    sub = subscriber_factory(broker.port)
    d = DaemonProcess(cfg)
    try:
        assert sub.wait_for(lambda s: len(s.payloads("/cam1/read")) >= 3, 90), d.output[-3000:]
        assert not sub.payloads("/hit")
        # The list changes, but only the SIGHUP makes the daemon read it (mtime polling is hourly here).
        hotlist.write_text("plate,reason,priority\n" + "".join(f"{v.text},test stolen,{i + 1}\n"
                                                               for i, v in enumerate(truth)))
        d.proc.send_signal(signal.SIGHUP)
        assert d.wait_output(lambda p: p.lines("hotlist:", f"{len(truth)} entries loaded"), 20), d.output[-3000:]
        assert sub.wait_for(lambda s: len(s.payloads("/cam1/hit")) >= 2, 90), d.output[-3000:]
        hits = sub.payloads("/cam1/hit")
        reads = {p["read_id"]: p for p in sub.payloads("/cam1/read")}
        plates = {v.text for v in truth}
        hv, rv = jsonschema.Draft202012Validator(HIT_SCHEMA), jsonschema.Draft202012Validator(READ_SCHEMA)
        for h in hits:
            hv.validate(h)
            rv.validate(h["read"])
            assert h["reason"] == "test stolen" and h["hotlist"]["plate"] in plates
            assert h["match"]["edits"] <= 1 and h["read"]["hit"]["hotlist"]["plate"] == h["hotlist"]["plate"]
        # Each hit's read event arrives too, carrying the hit, with the same read_id.
        assert sub.wait_for(lambda s: all(h["read_id"] in {p["read_id"] for p in s.payloads("/cam1/read")}
                                          for h in hits), 30)
        reads = {p["read_id"]: p for p in sub.payloads("/cam1/read")}
        assert all("hit" in reads[h["read_id"]] or reads[h["read_id"]]["event"] == "first" for h in hits)
        # The hit is published ahead of (or with) its read: it is not held back to the track's end.
        with sub._lock:
            order = [(t, json.loads(p)["read_id"]) for t, p, _ in sub.messages if t.endswith(("/hit", "/read"))]
        for h in hits:
            first_hit = next(i for i, (t, rid) in enumerate(order) if t.endswith("/hit") and rid == h["read_id"])
            first_read = next(i for i, (t, rid) in enumerate(order) if t.endswith("/read") and rid == h["read_id"])
            assert first_hit < first_read or reads[h["read_id"]]["track"]["ended"] or \
                h["read"]["event"] == "update"
        # A broken file on SIGHUP: one error line, the previous list stays, the stats say why.
        n = len(hits)
        hotlist.write_text("plate,reason,priority\nAB123\n")
        d.proc.send_signal(signal.SIGHUP)
        assert d.wait_output(lambda p: p.lines("ERROR", "hotlist:", "keeping the previous list"), 20), d.output[-3000:]
        assert sub.wait_for(lambda s: any(h.get("error") for st in s.payloads("/stats") for h in st.get("hotlists", [])),
                            10)
        st = sub.payloads("/stats")[-1]
        assert st["hits"]["cam1"] >= n and st["tracks"]["cam1"] >= 1 and "rejected_format" in st
        assert sub.wait_for(lambda s: len(s.payloads("/cam1/hit")) > n, 90), "hits stopped after a broken reload"
    finally:
        d.terminate()
    assert d.wait(30) == 0
    out = d.output
    assert "Traceback" not in out
    for v in truth:  # plate text never at INFO
        assert v.text not in out
    # Every list the unit matched against is in the audit log: the empty one at start, the SIGHUP
    # reload (with the new file's hash) and the refused broken file (the previous list kept).
    from alprd.config import load_config
    from alprd.privacy.policy import privacy_paths

    audit = privacy_paths(load_config(cfg))[1]
    changes = [e for e in map(json.loads, audit.read_text().splitlines()) if e["event"] == "hotlist_change"]
    assert [c["entries"] for c in changes] == [0, len(truth), len(truth)], changes
    assert len({c["sha256"] for c in changes}) == 3 and [bool(c["error"]) for c in changes] == [False, False, True]


def test_hit_latency_benchmark_runs(tmp_path, models_dir):
    """The benchmark script itself (its figures are printed by `python3 -m alprd.benchmarks.hit_latency`;
    no speed target is asserted here): a short paced clip, real mosquitto, every plate listed."""
    from alprd.benchmarks.hit_latency import measure

    res = measure(tmp_path, seconds=5, vehicles=2, parked=0, fast=0, fps=10, seed=3, models=str(models_dir))
    assert res["hits"] >= 1 and res["hits"] == len(res["per_hit"])
    assert all(h["latency_ms"] > 0 for h in res["per_hit"])
    assert res["hit_latency_ms"]["p95"] >= res["hit_latency_ms"]["p50"] > 0
