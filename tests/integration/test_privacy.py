"""Issue 5 without a daemon run: the policy check (each kind of breach refuses to start with one line
naming the policy file, the key and the value), pseudonyms, minimisation per mode, retention purge
down to the SQLite file's bytes, the audit chain under tampering, and the audited export."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import jsonschema
import pytest
import yaml
from conftest import REPO, shipped_config, with_video, write_config

from alprd.privacy.audit import AuditLog, verify
from alprd.privacy.keys import audit_key, load_or_create_secret, pseudonym
from alprd.privacy.minimise import minimise
from alprd.publish.spool import Spool

READ_SCHEMA = json.loads((REPO / "alprd" / "publish" / "schema" / "read-v1.schema.json").read_text())
HOUR_MS = 3_600_000


def alprd(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH", "")]))}
    return subprocess.run([sys.executable, "-m", "alprd", *args], capture_output=True, text=True, timeout=60,
                          cwd=cwd, env=env)


def write_policy(path: Path, **overrides) -> Path:
    pol = {
        "custodian": {"name": "Test Agency", "contact": "privacy@test"},
        "purposes": ["stolen-vehicle", "criminal-investigation"],
        "modes": ["full", "hits_only", "pseudonymous"],
        "destinations": [{"host": "127.0.0.1", "port": 1883, "modes": ["full", "hits_only", "pseudonymous"]}],
        "retention": {"reads_h": 72, "hits_h": 720, "crops_h": 24, "spool_h": 168},
    }
    pol.update(overrides)
    path.write_text(yaml.safe_dump(pol))
    return path


def read_payload(plate: str = "AB123CD", read_id: str = "01a1ff22-ed71-700c-b732-fb472f458ebc", **extra) -> dict:
    return {"schema": "alprd.read/1", "read_id": read_id, "unit": "u1", "camera": "cam1", "plate": plate,
            "confidence": 0.9, "char_confidences": [0.9] * len(plate), "detection_confidence": 0.8,
            "timestamp": "2026-11-21T08:00:00.000Z", "timestamp_ms": 1795248000000, "frame_index": 3,
            "box": [1, 2, 30, 12], "frame": {"width": 640, "height": 480},
            "models": {"detector": "d", "ocr": "o"}, **extra}


# --- policy: every kind of breach refuses to start ----------------------------------------------



def _ca(tmp_path: Path) -> Path:
    from test_tls_auth import make_ca

    path, _, _ = make_ca(tmp_path, "unit-ca")
    return path


BREACHES = [
    # (policy overrides, config overrides, fragments of the one error line)
    ({}, {"mqtt": {"host": "127.0.0.1", "port": 1884}},
     ["mqtt.host/port = 127.0.0.1:1884", "not an allowed destination", "allowed: 127.0.0.1:1883"]),
    ({}, {"destinations": [{"name": "partner", "host": "127.0.0.1", "port": 1999}]},
     ["destinations[0].host/port = 127.0.0.1:1999", "not an allowed destination"]),
    ({}, {"retention": {"reads_h": 100}}, ["retention.reads_h = 100", "cap is retention.reads_h = 72"]),
    ({}, {"retention": {"hits_h": 10000}}, ["retention.hits_h = 10000", "cap is retention.hits_h = 720"]),
    ({}, {"mqtt": {"include_crop": True}}, ["mqtt.include_crop = true", "crops may not be sent to 127.0.0.1:1883"]),
    ({"modes": ["hits_only"]}, {"mqtt": {"mode": "full"}}, ["mqtt.mode = full", "allowed modes are hits_only"]),
    ({"destinations": [{"host": "127.0.0.1", "port": 1883, "modes": ["pseudonymous"]}]}, {"mqtt": {"mode": "full"}},
     ["mqtt.mode = full", "allowed modes for 127.0.0.1:1883 are pseudonymous"]),
    ({"destinations": [{"host": "10.9.8.7", "port": 1883}]}, {"mqtt": {"host": "10.9.8.7"}},
     ["mqtt.tls = off", "10.9.8.7:1883 is not on this machine, so TLS is required"]),
]


@pytest.mark.parametrize("pol, cfg, fragments", BREACHES, ids=[
    "broker-not-allowed", "second-destination-not-allowed", "reads-retention-over-cap", "hits-retention-over-cap",
    "crop-forbidden", "mode-not-allowed", "mode-not-allowed-for-broker", "tls-off-beyond-loopback"])
def test_policy_breach_refuses_to_start(tmp_path, pol, cfg, fragments):
    policy = write_policy(tmp_path / "policy.yaml", **pol)
    config = write_config(tmp_path / "unit.yaml", policy=str(policy), **cfg)
    res = alprd("run", "-c", str(config), cwd=tmp_path)
    assert res.returncode == 2, (res.stdout, res.stderr)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("alprd: error: policy "), res.stderr
    assert str(policy) in lines[0] and "breaks the policy" in lines[0]
    for f in fragments:
        assert f in lines[0], lines[0]
    # Refused before anything was opened: no spool, no key, no audit entry.
    assert not (tmp_path / "spool.db").exists() and not (tmp_path / "audit.jsonl").exists()


def test_ca_fingerprint_mismatch_refuses_to_start(tmp_path):
    ca = _ca(tmp_path)
    policy = write_policy(tmp_path / "policy.yaml", destinations=[
        {"host": "127.0.0.1", "port": 8883, "ca_sha256": "ab" * 32}])
    config = write_config(tmp_path / "unit.yaml", policy=str(policy), cameras=with_video(tmp_path),
                          mqtt={"port": 8883, "tls": {"ca_file": str(ca)}})
    res = alprd("run", "-c", str(config), cwd=tmp_path)
    assert res.returncode == 2, res.stderr
    assert len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert f"mqtt.tls.ca_file = {ca}" in res.stderr and "ab" * 32 in res.stderr
    # The right fingerprint (colons and case as openssl prints them) passes.
    from alprd.privacy.policy import ca_fingerprint

    fp = ":".join(ca_fingerprint(str(ca))[i:i + 2] for i in range(0, 64, 2)).upper()
    write_policy(tmp_path / "policy.yaml", destinations=[{"host": "127.0.0.1", "port": 8883, "ca_sha256": fp}])
    res = alprd("check-config", str(config), cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert f"policy {tmp_path / 'policy.yaml'}" in res.stdout


def test_pinned_certificate_needs_tls(tmp_path):
    policy = write_policy(tmp_path / "policy.yaml", destinations=[
        {"host": "127.0.0.1", "port": 1883, "cert_sha256": "cd" * 32}])
    res = alprd("check-config", str(write_config(tmp_path / "unit.yaml", policy=str(policy))), cwd=tmp_path)
    assert res.returncode == 2 and "mqtt.tls = off" in res.stderr and "cd" * 32 in res.stderr, res.stderr


def test_bad_policy_files_are_one_line(tmp_path):
    config = write_config(tmp_path / "unit.yaml", policy=str(tmp_path / "nope.yaml"))
    res = alprd("check-config", str(config), cwd=tmp_path)
    assert res.returncode == 2 and "nope.yaml: policy file not found" in res.stderr, res.stderr
    write_policy(tmp_path / "nope.yaml", retention={"reads_hours": 3})
    res = alprd("check-config", str(config), cwd=tmp_path)
    assert res.returncode == 2 and "retention.reads_hours: unknown key; did you mean 'reads_h'" in res.stderr, res.stderr
    write_policy(tmp_path / "nope.yaml", modes=["everything"])
    res = alprd("check-config", str(config), cwd=tmp_path)
    assert res.returncode == 2 and "modes[0]: 'everything' is not a mode" in res.stderr, res.stderr


def test_no_policy_runs_under_the_builtin_default(tmp_path):
    """A config without policy: still loads (existing units keep working); check-config says so."""
    res = alprd("check-config", str(write_config(tmp_path / "unit.yaml", cameras=with_video(tmp_path))), cwd=tmp_path)
    assert res.returncode == 0 and "policy built-in" in res.stdout, res.stderr
    res = alprd("check-config", str(write_config(tmp_path / "unit.yaml", mqtt={"host": "192.0.2.1"})), cwd=tmp_path)
    assert res.returncode == 2 and "TLS is required" in res.stderr, res.stderr


def test_shipped_pole_config_keeps_to_the_shipped_policy(tmp_path):
    res = alprd("check-config", str(shipped_config(tmp_path, "pole.yaml")))
    assert res.returncode == 0, res.stderr
    assert f"policy {tmp_path / 'config' / 'policy.yaml'}" in res.stdout


# --- unit key and pseudonyms --------------------------------------------------------------------


def test_unit_key_created_private_and_stable(tmp_path):
    path = tmp_path / "keys" / "unit.key"
    k1 = load_or_create_secret(path)
    assert (path.stat().st_mode & 0o777) == 0o600 and len(k1) == 32
    assert load_or_create_secret(path) == k1
    path.chmod(0o644)
    from alprd.errors import ConfigError

    with pytest.raises(ConfigError, match="readable by others"):
        load_or_create_secret(path)


def test_pseudonyms_stable_within_a_day_different_across_days():
    secret, other = os.urandom(32), os.urandom(32)
    day1 = pseudonym(secret, "AB123CD", "2026-11-21")
    assert day1 == pseudonym(secret, "ab 123-cd", "2026-11-21")  # the normalised plate
    assert day1 != pseudonym(secret, "AB123CD", "2026-11-22")
    assert day1 != pseudonym(secret, "AB123CE", "2026-11-21")
    assert day1 != pseudonym(other, "AB123CD", "2026-11-21")  # keyed: no table of all plates' hashes
    import hashlib

    assert day1 != hashlib.sha256(b"AB123CD").hexdigest()


def test_minimisation_per_mode():
    secret = os.urandom(32)
    validator = jsonschema.Draft202012Validator(READ_SCHEMA)
    p = read_payload(crop_jpeg="AAAA")
    noon = 1795262400.0  # 2026-11-21T12:00:00Z
    assert minimise("full", "read", p, secret, include_crop=True) == p
    assert "crop_jpeg" not in minimise("full", "read", p, secret, include_crop=False)
    assert minimise("hits_only", "read", p, secret, include_crop=False) is None
    ps = minimise("pseudonymous", "read", p, secret, include_crop=True, now_s=noon)
    validator.validate(ps)
    assert "plate" not in ps and "crop_jpeg" not in ps and ps["char_confidences"] == []
    assert ps["plate_hmac"] == pseudonym(secret, "AB123CD", "2026-11-21") and ps["plate_hmac_day"] == "2026-11-21"
    assert "AB123CD" not in json.dumps(ps)
    next_day = minimise("pseudonymous", "read", p, secret, include_crop=True, now_s=noon + 86400)
    assert next_day["plate_hmac"] != ps["plate_hmac"]
    # Hits always carry the plate: a hit message, and a read that matched the hotlist.
    hit_read = read_payload(hit={"list": "stolen", "entry": "AB123CD"})
    for mode in ("hits_only", "pseudonymous"):
        assert minimise(mode, "read", hit_read, secret, include_crop=False)["plate"] == "AB123CD"
        assert minimise(mode, "hit", {"plate": "AB123CD", "read_id": "x"}, secret, include_crop=False)["plate"] == "AB123CD"
    # A hit carries its whole read: a destination without crops gets neither crop.
    hit = {"plate": "AB123CD", "read_id": "x", "read": read_payload(crop_jpeg="AAAA")}
    bare = minimise("full", "hit", hit, secret, include_crop=False)
    assert "crop_jpeg" not in bare["read"] and bare["read"]["plate"] == "AB123CD" and "crop_jpeg" in hit["read"]
    assert minimise("full", "hit", hit, secret, include_crop=True)["read"]["crop_jpeg"] == "AAAA"


# --- retention ----------------------------------------------------------------------------------


def _raw(path: Path) -> bytes:
    return b"".join(p.read_bytes() for p in (path, Path(f"{path}-wal")) if p.exists())


def test_retention_purge_removes_the_bytes_from_the_sqlite_files(tmp_path):
    db = tmp_path / "spool.db"
    sp = Spool(db)
    now = int(time.time() * 1000)
    old_read, old_hit, young = b"OLDREAD7Q", b"OLDHIT4K", b"YOUNGR9X"
    sp.put("a/u/cam1/read", json.dumps(read_payload(old_read.decode())).encode(), "r1", 0, stored_ms=now - 80 * HOUR_MS)
    sp.put("a/u/cam1/hit", json.dumps({"plate": old_hit.decode()}).encode(), "r2", 0, hit=True,
           stored_ms=now - 800 * HOUR_MS)
    sp.put("a/u/cam1/hit", json.dumps({"plate": "SPOOLCAP1"}).encode(), "r3", 0, hit=True,
           stored_ms=now - 200 * HOUR_MS)
    sp.put("a/u/cam1/hit", json.dumps({"plate": "KEEPHIT1"}).encode(), "r5", 0, hit=True, stored_ms=now - 80 * HOUR_MS)
    crop = json.dumps(read_payload(young.decode(), crop_jpeg="CROPBYTESXYZ")).encode()
    sp.put("a/u/cam1/read", crop, "r4", 0, crop=True, stored_ms=now - 30 * HOUR_MS)
    for marker in (old_read, old_hit, b"CROPBYTESXYZ"):  # the control: the bytes are there before
        assert marker in _raw(db)
    limits = {"reads_h": 72 * HOUR_MS, "hits_h": 720 * HOUR_MS, "crops_h": 24 * HOUR_MS, "spool_h": 168 * HOUR_MS}
    counts = sp.purge(now, limits)
    # r2 is past both the hits cap and the spool cap (counted once); r3 is within the hits cap but
    # past the spool cap, which applies to everything.
    assert counts == {"reads": 1, "hits": 2, "other": 0, "crops": 1}, counts
    assert [m.read_id for m in sp.pending(10)] == ["r5", "r4"] and sp.depth() == 2
    assert b"SPOOLCAP1" not in _raw(db) and b"KEEPHIT1" in _raw(db)
    for marker in (old_read, old_hit, b"CROPBYTESXYZ"):
        assert marker not in _raw(db), f"{marker!r} still in the file bytes after the purge"
    assert young in _raw(db)  # the read stays; only its crop went
    sp.close()
    for marker in (old_read, old_hit, b"CROPBYTESXYZ"):
        assert marker not in _raw(db)
    assert sqlite3.connect(db).execute("SELECT COUNT(*) FROM outbox").fetchone()[0] == 2


def test_old_spool_gets_the_retention_columns(tmp_path):
    db = tmp_path / "spool.db"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT, topic TEXT NOT NULL, "
                "payload BLOB NOT NULL, read_id TEXT NOT NULL, created_ms INTEGER NOT NULL)")
    con.execute("INSERT INTO outbox (topic, payload, read_id, created_ms) VALUES ('a/u/c/read', x'00', 'r0', 0)")
    con.commit()
    con.close()
    sp = Spool(db)
    now = int(time.time() * 1000)
    # Its rows count as stored now, so an upgrade does not purge them at once.
    assert sp.purge(now, dict.fromkeys(("reads_h", "hits_h", "crops_h", "spool_h"), HOUR_MS))["reads"] == 0
    assert sp.depth() == 1
    sp.close()


# --- audit log ----------------------------------------------------------------------------------


@pytest.fixture
def audit_log(tmp_path):
    key_file = tmp_path / "unit.key"
    log = AuditLog(tmp_path / "audit.jsonl", audit_key(load_or_create_secret(key_file)), "u1")
    log.append("start", config_sha256="c" * 64, policy_sha256="p" * 64)
    for i in range(4):
        log.append("published", destination="primary", count=10 + i, first_read_id=f"a{i}", last_read_id=f"b{i}")
    log.append("purge", counts={"primary": {"reads": 2}})
    log.append("stop")
    cp = tmp_path / "checkpoints.jsonl"
    cp.write_text(json.dumps(log.checkpoint()) + "\n")
    return log.path, key_file, cp


def _verify(path: Path, key_file: Path | None = None, cp: Path | None = None) -> subprocess.CompletedProcess:
    args = ["audit", "verify", str(path)] + (["--key-file", str(key_file)] if key_file else []) + \
        (["--checkpoint", str(cp)] if cp else [])
    return alprd(*args)


def test_audit_verify_ok(audit_log):
    path, key_file, cp = audit_log
    res = _verify(path, key_file, cp)
    assert res.returncode == 0 and "OK: 7 entries" in res.stdout and "1 checkpoint(s) matched" in res.stdout, res
    res = _verify(path)
    assert res.returncode == 0 and "chain only" in res.stdout


@pytest.mark.parametrize("line", range(1, 8))
def test_audit_edit_of_any_line_is_detected(audit_log, line):
    path, key_file, _ = audit_log
    lines = path.read_bytes().split(b"\n")
    e = json.loads(lines[line - 1])
    e["count" if "count" in e else "event"] = 999 if "count" in e else "tampered"
    lines[line - 1] = json.dumps(e, separators=(",", ":")).encode()
    path.write_bytes(b"\n".join(lines))
    res = _verify(path, key_file)
    assert res.returncode == 1, res.stdout
    assert f"line {line} (seq {line}): HMAC does not match" in res.stdout, res.stdout
    if line < 7:  # without the key, the next line's prev names the edit
        res = _verify(path)
        assert res.returncode == 1 and f"line {line + 1} (seq {line + 1}): prev does not match" in res.stdout, res.stdout


@pytest.mark.parametrize("line", range(1, 7))
def test_audit_deletion_is_detected(audit_log, line):
    path, key_file, _ = audit_log
    lines = path.read_bytes().split(b"\n")
    del lines[line - 1]
    path.write_bytes(b"\n".join(lines))
    res = _verify(path)
    assert res.returncode == 1, res.stdout
    assert f"line {line}: seq {line + 1}, expected {line}" in res.stdout, res.stdout


def test_audit_deletion_with_renumbering_is_detected(audit_log):
    """A forger who deletes a line and renumbers the rest still breaks the hash chain."""
    path, _, _ = audit_log
    lines = [json.loads(x) for x in path.read_bytes().split(b"\n") if x]
    del lines[2]
    for i, e in enumerate(lines, 1):
        e["seq"] = i
    path.write_text("".join(json.dumps(e, separators=(",", ":")) + "\n" for e in lines))
    res = _verify(path)
    assert res.returncode == 1 and "line 3 (seq 3): prev does not match the sha256 of line 2" in res.stdout, res.stdout


@pytest.mark.parametrize("a, b", [(1, 2), (3, 4), (6, 7), (2, 6)])
def test_audit_reorder_is_detected(audit_log, a, b):
    path, _, _ = audit_log
    lines = path.read_bytes().split(b"\n")
    lines[a - 1], lines[b - 1] = lines[b - 1], lines[a - 1]
    path.write_bytes(b"\n".join(lines))
    res = _verify(path)
    assert res.returncode == 1 and f"line {a}: seq {b}, expected {a}" in res.stdout, res.stdout


def test_audit_truncation_is_detected_against_a_checkpoint(audit_log):
    path, key_file, cp = audit_log
    lines = path.read_bytes().split(b"\n")
    path.write_bytes(b"\n".join(lines[:5]) + b"\n")  # the last two entries cut off
    assert _verify(path, key_file).returncode == 0  # the chain alone cannot know...
    res = _verify(path, key_file, cp)  # ...the checkpoint the central side holds can
    assert res.returncode == 1 and "truncated: checkpoint seq 7 but the log ends at seq 5" in res.stdout, res.stdout
    # A forged checkpoint (without the unit key) is named as such.
    fake = json.loads(cp.read_text())
    fake["seq"] = 5
    cp.write_text(json.dumps(fake))
    res = _verify(path, key_file, cp)
    assert res.returncode == 1 and "HMAC does not match: not signed by this unit's key" in res.stdout, res.stdout


def test_audit_appends_from_two_writers_keep_one_chain(tmp_path):
    key = os.urandom(32)
    a, b = AuditLog(tmp_path / "a.jsonl", key, "u"), AuditLog(tmp_path / "a.jsonl", key, "u")
    for i in range(5):
        a.append("x", i=i)
        b.append("y", i=i)
    v = verify(tmp_path / "a.jsonl", key)
    assert v.ok and v.entries == 10, v.message


# --- export -------------------------------------------------------------------------------------


def test_export_is_audited_before_it_answers(tmp_path):
    policy = write_policy(tmp_path / "policy.yaml")
    config = write_config(tmp_path / "unit.yaml", policy=str(policy), unit_id="u1")
    sp = Spool(tmp_path / "spool.db")
    for i, plate in enumerate(["AB123CD", "XY999ZZ", "AB123CD"]):
        p = read_payload(plate, read_id=f"01a1ff22-ed71-700c-b732-fb472f458eb{i}", crop_jpeg="CROP")
        p["timestamp_ms"] += i * 1000
        sp.put("alprd/u1/cam1/read", json.dumps(p).encode(), p["read_id"], p["timestamp_ms"])
    sp.close()
    res = alprd("export", "-c", str(config), "--purpose", "stolen-vehicle", "--case", "2026-0042", "--user", "jdoe",
                "--plate", "ab 123 cd", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    rows = [json.loads(x) for x in res.stdout.splitlines()]
    assert [r["plate"] for r in rows] == ["AB123CD", "AB123CD"] and all("crop_jpeg" not in r for r in rows)
    entries = [json.loads(x) for x in (tmp_path / "audit.jsonl").read_text().splitlines()]
    e = entries[-1]
    assert e["event"] == "export" and e["user"] == "jdoe" and e["purpose"] == "stolen-vehicle"
    assert e["case"] == "2026-0042" and e["rows"] == 2 and e["query"]["plate"] == "ab 123 cd" and e["ts"]
    # CSV, with a time window.
    res = alprd("export", "-c", str(config), "--purpose", "criminal-investigation", "--case", "c2", "--user", "jdoe",
                "--since", "2026-11-21T08:00:01Z", "--format", "csv", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines()[0].startswith("read_id,kind,timestamp") and len(res.stdout.splitlines()) == 3
    # To a file: readable by its owner only, like the spool it came from.
    out = tmp_path / "case-c2.jsonl"
    res = alprd("export", "-c", str(config), "--purpose", "stolen-vehicle", "--case", "c2", "--user", "jdoe",
                "-o", str(out), cwd=tmp_path)
    assert res.returncode == 0 and len(out.read_text().splitlines()) == 3 and not res.stdout, res.stderr
    assert (out.stat().st_mode & 0o777) == 0o600 and ((tmp_path / "spool.db").stat().st_mode & 0o777) == 0o600
    assert json.loads((tmp_path / "audit.jsonl").read_text().splitlines()[-1])["output"] == str(out)
    # A purpose outside the policy is refused, and nothing is answered.
    res = alprd("export", "-c", str(config), "--purpose", "curiosity", "--case", "c3", "--user", "x", cwd=tmp_path)
    assert res.returncode == 2 and "--purpose: 'curiosity' is not a purpose of policy" in res.stderr and not res.stdout
    assert len((tmp_path / "audit.jsonl").read_text().splitlines()) == 3
    assert verify(tmp_path / "audit.jsonl", audit_key(load_or_create_secret(tmp_path / "alprd-unit.key"))).ok


def test_purge_also_clears_delivered_reads_from_the_wal(tmp_path):
    """A read acknowledged long ago is gone from the table, but its bytes can linger in old WAL
    frames; the timer's purge truncates the WAL even when no row was due."""
    db = tmp_path / "spool.db"
    sp = Spool(db)
    sp.put("a/u/cam1/read", json.dumps(read_payload("DELIVRD8")).encode(), "r1", 0)
    (msg,) = sp.pending(1)
    sp.ack(msg.seq)
    assert sp.depth() == 0 and b"DELIVRD8" in _raw(db)  # the control: acknowledged, still in the WAL
    long = dict.fromkeys(("reads_h", "hits_h", "crops_h", "spool_h"), 1000 * HOUR_MS)
    assert sp.purge(int(time.time() * 1000), long) == {"reads": 0, "hits": 0, "other": 0, "crops": 0}
    assert b"DELIVRD8" not in _raw(db)
    sp.close()
