"""One outlet per destination broker: its own spool and communicator (an outage of one never holds
up or loses another's data), its minimisation mode, its transparency counters and its audit batches.
`Outlets` is all of them: what the daemon publishes, counts and closes, in one place."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

from alprd.config import Config
from alprd.privacy.audit import AuditLog, iso_time
from alprd.privacy.minimise import is_hit, minimise
from alprd.privacy.policy import Destination, Enforced, spool_path
from alprd.publish.mqtt import MqttCommunicator
from alprd.publish.payload import encode
from alprd.publish.spool import Spool

log = logging.getLogger(__name__)


class Outlet:
    def __init__(self, cfg: Config, dest: Destination, enforced: Enforced):
        self.name, self.mode, self.include_crop = dest.name, dest.mqtt.mode, dest.mqtt.include_crop
        self.spool = Spool(spool_path(cfg, dest.name), cfg.spool.max_rows)
        self.comm = MqttCommunicator(dest.mqtt, cfg.unit_id, self.spool, cfg.mqtt_password(dest.mqtt),
                                     reconnect_max_s=dest.mqtt.reconnect_max_s, name=dest.name,
                                     pin_sha256=dest.cert_sha256, policy_source=enforced.source)
        self.address = f"{dest.mqtt.host}:{dest.mqtt.port}"
        self.counts: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._awaiting: set[int] = set()  # acknowledgements named by an audit entry still held in memory

    def put(self, kind: str, camera: str, payload: dict[str, Any], read_id: str, timestamp_ms: int,
            secret: bytes) -> None:
        out = minimise(self.mode, kind, payload, secret, self.include_crop)
        with self._lock:
            if out is None:
                self.counts["suppressed"] += 1
                return
            if "plate_hmac" in out:
                self.counts["pseudonymised"] += 1
            self.counts["spooled"] += 1
        self.spool.put(self.comm.topic(camera, kind), encode(out), read_id, timestamp_ms,
                       hit=is_hit(kind, payload), crop="crop_jpeg" in out)

    def flush_batch(self, audit: AuditLog, max_n: int, max_s: float, force: bool = False,
                    previous_run: bool = False) -> None:
        """One "published" audit entry per window of acknowledgements, not one per message. The spool
        keeps each acknowledgement (read id and kind) until the entry naming it is on disk, so a killed
        daemon's are audited at the next start (previous_run) instead of lost."""
        self.comm.take_acked()  # the communicator's copy: the spool's is the one that survives a kill
        if self._awaiting and audit.retry():  # the entry naming them, held in memory, is now on disk
            self.spool.forget(self._awaiting)
            self._awaiting = set()
        batch = [a for a in self.spool.acked() if a.id not in self._awaiting]
        if not batch:
            return
        now = time.time()
        if not (force or len(batch) >= max_n or now - batch[0].acked_ms / 1000 >= max_s):
            return
        ids = sorted(a.read_id for a in batch)
        entry = audit.append("published", destination=self.name, broker=self.address, mode=self.mode,
                             count=len(batch), kinds=dict(Counter(a.kind for a in batch)), first_read_id=ids[0],
                             last_read_id=ids[-1], acked_from=iso_time(batch[0].acked_ms),
                             acked_to=iso_time(batch[-1].acked_ms), **({"previous_run": True} if previous_run else {}))
        if "seq" in entry:
            self.spool.forget(a.id for a in batch)
        else:  # held in memory until the disk takes it: forgotten once it is written
            self._awaiting.update(a.id for a in batch)

    def audit_opening(self, audit: AuditLog) -> None:
        """At start: a corrupt spool moved aside, and what the last run had acknowledged but not audited."""
        moved = self.spool.moved_aside
        if moved is not None:
            audit.append("spool_corrupt", destination=self.name, file=str(moved.path), moved_to=str(moved.moved_to),
                         found=moved.reason)
        self.flush_batch(audit, 1, 0.0, force=True, previous_run=True)

    def stats(self) -> dict[str, Any]:
        with self._lock:
            c = dict(self.counts)
        return {"broker": self.address, "mode": self.mode, "published": self.comm.published,
                "spooled": c.get("spooled", 0), "suppressed": c.get("suppressed", 0),
                "pseudonymised": c.get("pseudonymised", 0), "refused": self.comm.refused,
                "spool_depth": self.spool.depth(), "spool_in_memory": self.spool.in_memory(),
                "dropped": self.spool.dropped(), "connected": self.comm.connected}

    def describe(self) -> dict[str, Any]:
        """For the audit log's start entries: where this outlet sends, in what form."""
        return {"name": self.name, "broker": self.address, "mode": self.mode, "include_crop": self.include_crop,
                "tls": self.comm.cfg.tls is not None, "pinned": bool(self.comm.pin_sha256)}


class Outlets:
    """Every destination of the policy, the primary (mqtt:) first."""

    def __init__(self, cfg: Config, enforced: Enforced):
        self._outlets = [Outlet(cfg, d, enforced) for d in enforced.destinations]
        self.primary = self._outlets[0]

    def __iter__(self) -> Iterator[Outlet]:
        return iter(self._outlets)

    def __len__(self) -> int:
        return len(self._outlets)

    @property
    def include_crop(self) -> bool:
        """Some destination takes plate crops: the pipeline must keep them."""
        return any(o.include_crop for o in self._outlets)

    # --- publishing ---------------------------------------------------------------------------

    def publish(self, kind: str, camera: str, payload: dict[str, Any], read_id: str, timestamp_ms: int,
                secret: bytes) -> None:
        """A read or hit into every destination's spool, minimised for each; sent by `send_now()`."""
        for o in self._outlets:
            o.put(kind, camera, payload, read_id, timestamp_ms, secret)

    def send_now(self) -> None:
        """Wake every communicator: what the spools hold goes out now."""
        for o in self._outlets:
            o.comm.notify()

    def publish_status(self, status: dict[str, Any]) -> None:
        for o in self._outlets:
            o.comm.set_status(status)

    def publish_stats(self, payload: dict[str, Any]) -> None:
        """Counts only: every destination gets them, whatever its mode; not spooled (stale is worthless)."""
        body = json.dumps(payload).encode()
        for o in self._outlets:
            o.comm.publish_unspooled(o.comm.topic("stats"), body)

    def publish_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """The audit log's signed checkpoint, retained, so a subscriber can tell the log was not rewritten."""
        body = json.dumps(checkpoint).encode()
        for o in self._outlets:
            o.comm.publish_unspooled(o.comm.topic("audit"), body, qos=1, retain=True)

    # --- counts -------------------------------------------------------------------------------

    def stats(self) -> dict[str, dict[str, Any]]:
        """Each destination's transparency counters, by name."""
        return {o.name: o.stats() for o in self._outlets}

    @property
    def refused(self) -> int:
        """Connections dropped because a broker's certificate broke the policy, over all destinations."""
        return sum(o.comm.refused for o in self._outlets)

    @property
    def connected(self) -> bool:
        """The primary destination is connected."""
        return self.primary.comm.connected

    def primary_counts(self) -> dict[str, Any]:
        """The primary destination's queue and delivery counts, for the stats payload."""
        p = self.primary
        return {"spool_depth": p.spool.depth(), "inflight": p.comm.inflight(), "published": p.comm.published,
                "dropped": p.spool.dropped()}

    def describe(self) -> list[dict[str, Any]]:
        return [o.describe() for o in self._outlets]

    # --- retention and audit ------------------------------------------------------------------

    def purge(self, now_ms: int, limits_ms: dict[str, int]) -> dict[str, dict[str, int]]:
        """Rows past their retention limit leave every spool: what each lost, by name."""
        return {o.name: o.spool.purge(now_ms, limits_ms) for o in self._outlets}

    def flush_audit_batches(self, audit: AuditLog, max_n: int, max_s: float, force: bool = False) -> None:
        for o in self._outlets:
            o.flush_batch(audit, max_n, max_s, force)

    # --- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        for o in self._outlets:
            o.comm.start()

    def drain(self, drain_s: float) -> None:
        """Wait, up to drain_s over all destinations together, until what the spools hold is acknowledged."""
        deadline = time.monotonic() + drain_s
        for o in self._outlets:
            o.comm.drain(max(0.0, deadline - time.monotonic()))

    def close(self, offline_status: dict[str, Any]) -> None:
        """The offline status, disconnect, and the spools closed; what is left in one is sent at the next start."""
        for o in self._outlets:
            o.comm.stop(offline_status, drain_s=0.0)
            left = o.spool.depth()
            if left:
                log.warning("%s: %d message(s) stay in the spool and will be sent at the next start", o.comm.tag, left)
            o.spool.close()
