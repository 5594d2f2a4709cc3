"""One outlet per destination broker: its own spool and communicator (an outage of one never holds
up or loses another's data), its minimisation mode, its transparency counters and its audit batches."""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Any

from alprd.config import Config
from alprd.privacy.audit import AuditLog
from alprd.privacy.minimise import is_hit, minimise
from alprd.privacy.policy import Destination, Enforced, spool_path
from alprd.publish.mqtt import MqttCommunicator
from alprd.publish.payload import encode
from alprd.publish.spool import Spool


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
        self._batch: list[tuple[str, str]] = []
        self._batch_since = 0.0

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

    def flush_batch(self, audit: AuditLog, max_n: int, max_s: float, force: bool = False) -> None:
        """One "published" audit entry per window of acknowledgements, not one per message."""
        acked = self.comm.take_acked()
        now = time.monotonic()
        if acked and not self._batch:
            self._batch_since = now
        self._batch.extend(acked)
        if not self._batch or not (force or len(self._batch) >= max_n or now - self._batch_since >= max_s):
            return
        batch, self._batch = self._batch, []
        ids = sorted(r for r, _ in batch)
        audit.append("published", destination=self.name, broker=self.address, mode=self.mode, count=len(batch),
                     kinds=dict(Counter(k for _, k in batch)), first_read_id=ids[0], last_read_id=ids[-1])

    def stats(self) -> dict[str, Any]:
        with self._lock:
            c = dict(self.counts)
        return {"broker": self.address, "mode": self.mode, "published": self.comm.published,
                "spooled": c.get("spooled", 0), "suppressed": c.get("suppressed", 0),
                "pseudonymised": c.get("pseudonymised", 0), "refused": self.comm.refused,
                "spool_depth": self.spool.depth(), "connected": self.comm.connected}
