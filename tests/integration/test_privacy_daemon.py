"""Issue 5 end to end, with real mosquitto brokers and `alprd run`: a destination outside the
allowlist never receives a byte; a broker presenting a certificate other than the pinned one gets
nothing (its reads wait in its own spool) while the allowed broker gets everything; minimisation per
destination; the start-up purge; the audit log and its published checkpoints."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from pathlib import Path

import jsonschema
import pytest
import yaml
from conftest import Subscriber
from test_daemon import NO_READS, READ_SCHEMA, camera, make_config, spool_rows, statuses, wait_subscribed
from test_privacy import alprd, read_payload, write_policy
from test_tls_auth import PASSWORD, USER, tls_broker  # noqa: F401 (a fixture)

from alprd.privacy.audit import AuditLog, verify
from alprd.privacy.keys import audit_key, load_or_create_secret, pseudonym
from alprd.publish.spool import Spool

UNIT = "test-unit"
HOUR_MS = 3_600_000


def _config(workdir: Path, port: int, models_dir: Path, video: Path, policy: Path, **overrides) -> Path:
    return make_config(workdir, port, models_dir, [camera("cam1", video)], policy=str(policy), **overrides)


def _daemon_clients(broker_log: Path) -> list[str]:
    return [ln for ln in broker_log.read_text(errors="replace").splitlines() if f"alprd-{UNIT}" in ln]


def test_destination_outside_the_allowlist_never_receives_a_byte(tmp_path, broker_factory, models_dir,
                                                                 traffic_video):
    allowed, other = broker_factory().start(), broker_factory().start()
    counters = {b.port: Subscriber(b.port) for b in (allowed, other)}
    try:
        for b in (allowed, other):
            wait_subscribed(counters[b.port], b.port)
        policy = write_policy(tmp_path / "policy.yaml",
                              destinations=[{"host": "127.0.0.1", "port": allowed.port}])
        config = _config(tmp_path / "unit", allowed.port, models_dir, traffic_video[0], policy,
                         destinations=[{"name": "partner", "host": "127.0.0.1", "port": other.port}])
        res = alprd("run", "-c", str(config), "--until-sources-end", cwd=config.parent)
        assert res.returncode == 2, res.stderr
        assert f"destinations[0].host/port = 127.0.0.1:{other.port}" in res.stderr
        assert len(res.stderr.strip().splitlines()) == 1, res.stderr
        time.sleep(1.0)
        for b in (allowed, other):  # nothing published anywhere, no connection even
            assert [t for t, _, _ in counters[b.port].messages if not t.startswith("probe/")] == []
            assert _daemon_clients(b.log) == []
    finally:
        for s in counters.values():
            s.close()


def _fingerprint(pem: Path) -> str:
    from alprd.privacy.policy import ca_fingerprint

    return ca_fingerprint(str(pem))


def test_pinned_certificate_mismatch_sends_nothing_and_loses_nothing(tmp_path, broker, tls_broker,  # noqa: F811
                                                                     subscriber_factory, models_dir, traffic_video):
    partner, ca = tls_broker
    server_cert = tmp_path / "pki" / "server.pem"
    good_pin = _fingerprint(server_cert)
    plain = subscriber_factory(broker.port)
    wait_subscribed(plain, broker.port)
    secure = subscriber_factory(partner.port, auth=(USER, PASSWORD), ca_certs=str(ca))
    wait_subscribed(secure, partner.port, auth={"username": USER, "password": PASSWORD}, tls={"ca_certs": str(ca)})

    def policy(pin: str) -> Path:
        return write_policy(tmp_path / "policy.yaml", destinations=[
            {"host": "127.0.0.1", "port": broker.port},
            {"host": "127.0.0.1", "port": partner.port, "modes": ["hits_only", "pseudonymous"], "cert_sha256": pin,
             "ca_sha256": _fingerprint(ca)}])

    partner_dest = {"name": "partner", "host": "127.0.0.1", "port": partner.port, "mode": "pseudonymous",
                    "username": USER, "password": PASSWORD, "tls": {"ca_file": str(ca)}}
    config = _config(tmp_path / "unit", broker.port, models_dir, traffic_video[0], policy("ee" * 32),
                     destinations=[partner_dest])
    res = alprd("run", "-c", str(config), "--until-sources-end", cwd=config.parent)
    assert res.returncode == 0, res.stderr[-4000:]
    refusals = [ln for ln in res.stderr.splitlines() if "presented a certificate with sha256" in ln]
    assert len(refusals) == 1 and f"127.0.0.1:{partner.port}" in refusals[0] and good_pin in refusals[0], res.stderr
    assert " ERROR " in refusals[0] and "nothing was sent" in refusals[0]
    reads = plain.payloads("/read")
    if not reads:
        pytest.fail(NO_READS)
    assert plain.wait_for(lambda s: any(st["online"] is False for st in statuses(s)), 10)
    time.sleep(0.5)
    assert [t for t, _, _ in secure.messages if not t.startswith("probe/")] == [], "the unpinned broker got data"
    assert _daemon_clients(partner.log) == [], "the daemon's MQTT client reached the unpinned broker"
    stats = plain.payloads("/stats")
    assert max(s["privacy"]["destinations"]["partner"]["refused"] for s in stats) >= 1
    assert max(s["privacy"]["refused"] for s in stats) >= 1
    held = spool_rows(tmp_path / "unit" / "spool-partner.db")
    held_ids = {rid for _, rid in held}
    assert held_ids == {p["read_id"] for p in reads}, "the refused destination's reads wait in its spool"
    assert not spool_rows(tmp_path / "unit" / "spool.db")

    # The agency fixes the pin (a config/policy change): the waiting reads go out, pseudonymised.
    policy(good_pin)
    res = alprd("run", "-c", str(config), "--until-sources-end", cwd=config.parent)
    assert res.returncode == 0, res.stderr[-4000:]
    assert secure.wait_for(lambda s: len({p["read_id"] for p in s.payloads("/read")}) >= 2 * len(held_ids), 20)
    got = secure.payloads("/read")
    assert all("plate" not in p and len(p["plate_hmac"]) == 64 for p in got)
    assert not spool_rows(tmp_path / "unit" / "spool-partner.db")
    audit = [json.loads(x) for x in (tmp_path / "unit" / "audit.jsonl").read_text().splitlines()]
    assert [e["event"] for e in audit].count("policy_change") == 1


def test_minimisation_purge_audit_and_checkpoints(tmp_path, broker, subscriber_factory, models_dir, traffic_video):
    sub = subscriber_factory(broker.port)
    wait_subscribed(sub, broker.port)
    policy = write_policy(tmp_path / "policy.yaml", destinations=[{"host": "127.0.0.1", "port": broker.port}])
    work = tmp_path / "unit"
    dests = [{"name": "pseudo", "port": broker.port, "topic_prefix": "pseudo", "mode": "pseudonymous"},
             {"name": "hits", "port": broker.port, "topic_prefix": "hitsonly", "mode": "hits_only"}]
    config = _config(work, broker.port, models_dir, traffic_video[0], policy, destinations=dests,
                     privacy={"audit_batch_n": 2})
    # A read left in the spool 100 hours ago (the policy keeps non-hit reads 72 h): purged at start.
    stale = read_payload("OLDPLATE1", read_id="01a1ff22-ed71-700c-b732-fb472f458e00")
    sp = Spool(work / "spool.db")
    sp.put(f"alprd/{UNIT}/cam1/read", json.dumps(stale).encode(), stale["read_id"], 0,
           stored_ms=int(time.time() * 1000) - 100 * HOUR_MS)
    sp.close()

    res = alprd("run", "-c", str(config), "--until-sources-end", cwd=work)
    assert res.returncode == 0, res.stderr[-4000:]
    assert sub.wait_for(lambda s: any(st["online"] is False for st in statuses(s)), 10)
    full = {p["read_id"]: p for p in sub.payloads("/read") if p.get("plate")}
    if not full:
        pytest.fail(NO_READS)
    time.sleep(0.5)
    with sub._lock:
        msgs = list(sub.messages)
    assert not any(b"OLDPLATE1" in p for _, p, _ in msgs), "a read past its retention left the unit"

    validator = jsonschema.Draft202012Validator(READ_SCHEMA)
    pseudo = {json.loads(p)["read_id"]: json.loads(p) for t, p, _ in msgs if t == f"pseudo/{UNIT}/cam1/read"}
    assert set(pseudo) == set(full)
    secret = load_or_create_secret(work / "alprd-unit.key")
    links: dict[str, str] = {}
    for rid, p in pseudo.items():
        validator.validate(p)
        assert "plate" not in p and "crop_jpeg" not in p and p["char_confidences"] == []
        assert p["plate_hmac"] == pseudonym(secret, full[rid]["plate"], p["plate_hmac_day"])
        assert links.setdefault(full[rid]["plate"], p["plate_hmac"]) == p["plate_hmac"]  # links within the day
        assert full[rid]["plate"] not in json.dumps(p)
    assert not [t for t, _, _ in msgs if t.startswith("hitsonly/") and t.endswith("/read")]
    # The hits_only destination still learns how many reads there were, as counts in its stats.
    hits_stats = [json.loads(p) for t, p, _ in msgs if t == f"hitsonly/{UNIT}/stats"]
    # Suppressed and pseudonymised count messages: a vehicle pass's first read and its update are two.
    n_msgs = len([t for t, _, _ in msgs if t == f"alprd/{UNIT}/cam1/read"])
    assert hits_stats and max(s["privacy"]["destinations"]["hits"]["suppressed"] for s in hits_stats) == n_msgs
    last = [json.loads(p) for t, p, _ in msgs if t == f"alprd/{UNIT}/stats"][-1]["privacy"]
    assert last["reads"] == len(full) and last["purged"]["reads"] == 1
    assert last["destinations"]["pseudo"]["pseudonymised"] == n_msgs
    assert last["destinations"]["primary"]["mode"] == "full"

    # The status carries the policy's hash.
    policy_sha = hashlib.sha256(policy.read_bytes()).hexdigest()
    assert all(st["policy"]["sha256"] == policy_sha for st in statuses(sub))

    # The audit log: start, the purge receipt, batches per destination covering every read, stop.
    log = work / "audit.jsonl"
    entries = [json.loads(x) for x in log.read_text().splitlines()]
    events = [e["event"] for e in entries]
    assert events[0] == "start" and events[-1] == "stop" and entries[0]["policy_sha256"] == policy_sha
    purge = next(e for e in entries if e["event"] == "purge")
    assert purge["counts"]["primary"]["reads"] == 1 and "OLDPLATE1" not in json.dumps(entries)
    for name, n in (("primary", n_msgs), ("pseudo", n_msgs)):
        batches = [e for e in entries if e["event"] == "published" and e["destination"] == name]
        # Batched (at least 2 acks per entry here, but for the last): fewer entries than messages.
        assert sum(b["count"] for b in batches) == n and 1 <= len(batches) < n
        assert min(b["first_read_id"] for b in batches) == min(full) and max(b["last_read_id"] for b in batches) == max(full)
    assert not [e for e in entries if e["event"] == "published" and e["destination"] == "hits"]

    # The checkpoints published (retained) match the log; the central side can check it with the key.
    cps = [json.loads(p) for t, p, _ in msgs if t == f"alprd/{UNIT}/audit"]
    assert cps and cps[-1]["seq"] == len(entries)
    cp_file = tmp_path / "cps.jsonl"
    cp_file.write_text("".join(json.dumps(c) + "\n" for c in cps))
    res = alprd("audit", "verify", str(log), "--key-file", str(work / "alprd-unit.key"), "--checkpoint", str(cp_file))
    assert res.returncode == 0 and f"OK: {len(entries)} entries" in res.stdout, res.stdout

    # A config change (a destination removed) is audited at the next start, with both hashes.
    data = yaml.safe_load(config.read_text())
    old_sha = hashlib.sha256(config.read_bytes()).hexdigest()
    data["destinations"] = data["destinations"][:1]
    config.write_text(yaml.safe_dump(data))
    from alprd.config import load_config
    from alprd.daemon import Daemon

    d = Daemon(load_config(config))
    d.audit_start()
    for o in d.outlets:
        o.spool.close()
    change = [json.loads(x) for x in log.read_text().splitlines()][-2]
    assert change["event"] == "config_change" and change["old_sha256"] == old_sha
    assert change["new_sha256"] == hashlib.sha256(config.read_bytes()).hexdigest()
    assert [x["name"] for x in change["new_destinations"]] == ["primary", "pseudo"]
    assert verify(log, audit_key(secret)).ok
    assert AuditLog(log, audit_key(secret), UNIT).checkpoint()["seq"] == len(entries) + 2
    assert d.transparency()["audit_chain_at_start"] == "ok"

    # An entry edited while the unit was off is named at the next start, in the log itself.
    lines = log.read_text().splitlines()
    i = next(k for k, x in enumerate(lines) if '"event":"published"' in x)
    lines[i] = lines[i].replace('"count":', '"count":1', 1)
    log.write_text("\n".join(lines) + "\n")
    d = Daemon(load_config(config))
    d.audit_start()
    for o in d.outlets:
        o.spool.close()
    tail = [json.loads(x) for x in log.read_text().splitlines()][-2:]
    assert [e["event"] for e in tail] == ["chain_broken", "start"]
    assert tail[0]["found"].startswith(f"line {i + 1} (") and tail[0]["intact_entries"] == i
    assert d.transparency()["audit_chain_at_start"] == tail[0]["found"]


def test_fan_out_keeps_hits_whole_and_export_prefers_the_full_copy(tmp_path, models_dir, traffic_video):
    """Daemon._emit without a broker: what each destination's spool holds for a hit, a read that
    matched the hotlist and a plain read; then `alprd export` over all spools."""
    from alprd.config import load_config
    from alprd.daemon import Daemon
    from alprd.pipeline import Outbound

    policy = write_policy(tmp_path / "policy.yaml", destinations=[{"host": "127.0.0.1", "port": 1883}])
    dests = [{"name": "pseudo", "topic_prefix": "pseudo", "mode": "pseudonymous"},
             {"name": "hits", "topic_prefix": "hitsonly", "mode": "hits_only"}]
    config = _config(tmp_path / "unit", 1883, models_dir, traffic_video[0], policy, destinations=dests)
    d = Daemon(load_config(config))
    plain = read_payload("PLAIN12", read_id="01a1ff22-ed71-700c-b732-fb472f458e01")
    matched = read_payload("HOT4567", read_id="01a1ff22-ed71-700c-b732-fb472f458e02", hit={"list": "stolen"})
    hit = {"read_id": matched["read_id"], "plate": "HOT4567", "list": "stolen", "timestamp_ms": matched["timestamp_ms"]}
    d._emit([Outbound("read", "cam1", plain, plain["read_id"], 0), Outbound("read", "cam1", matched, matched["read_id"], 0),
             Outbound("hit", "cam1", hit, hit["read_id"], 0)])
    held = {o.name: [(m.topic, json.loads(m.payload)) for m in o.spool.pending(10)] for o in d.outlets}
    assert [p.get("plate") for _, p in held["primary"]] == ["PLAIN12", "HOT4567", "HOT4567"]
    assert [p.get("plate") for _, p in held["pseudo"]] == [None, "HOT4567", "HOT4567"]
    assert held["pseudo"][0][1]["plate_hmac"] and held["pseudo"][0][0] == f"pseudo/{UNIT}/cam1/read"
    assert [(t.rsplit("/", 1)[-1], p.get("plate")) for t, p in held["hits"]] == [("read", "HOT4567"), ("hit", "HOT4567")]
    t = d.transparency()
    assert t["reads"] == 2 and t["hits"] == 1 and t["reads_with_hit"] == 1
    assert t["destinations"]["hits"]["suppressed"] == 1 and t["destinations"]["pseudo"]["pseudonymised"] == 1
    flags = sqlite3.connect(tmp_path / "unit" / "spool-hits.db").execute("SELECT hit FROM outbox").fetchall()
    assert flags == [(1,), (1,)]  # flagged as hits: retention keeps them under hits_h
    for o in d.outlets:
        o.spool.close()

    res = alprd("export", "-c", str(config), "--purpose", "stolen-vehicle", "--case", "c1", "--user", "u",
                cwd=config.parent)
    assert res.returncode == 0, res.stderr
    out = [json.loads(x) for x in res.stdout.splitlines()]
    # One row per (read_id, kind, event), the full copy (with the plate) winning over the pseudonymised one.
    assert sorted((r["kind"], r.get("plate")) for r in out) == [("hit", "HOT4567"), ("read", "HOT4567"),
                                                               ("read", "PLAIN12")]
