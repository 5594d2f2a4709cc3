"""What the unit keeps on its own disk: the spool of undelivered messages, how long data may stay,
and the key and audit log that prove what happened to it."""

from __future__ import annotations

from dataclasses import dataclass

from alprd.errors import ConfigError


@dataclass(frozen=True)
class SpoolConfig:
    path: str = "alprd-spool.db"
    max_rows: int = 500_000

    def validate(self, where: str) -> None:
        if self.max_rows < 100:
            raise ConfigError(f"{where}.max_rows: {self.max_rows} is too small (at least 100)")


@dataclass(frozen=True)
class RetentionConfig:
    """How long data may stay on the unit, in hours; 0 = the policy's cap."""

    reads_h: float = 0.0  # non-hit reads not yet delivered
    hits_h: float = 0.0
    crops_h: float = 0.0  # plate crops inside spooled reads (stripped, the read stays)
    spool_h: float = 0.0  # any spooled message

    def validate(self, where: str) -> None:
        for key in ("reads_h", "hits_h", "crops_h", "spool_h"):
            if getattr(self, key) < 0:
                raise ConfigError(f"{where}.{key}: {getattr(self, key)} must be 0 (the policy's cap) or more")


@dataclass(frozen=True)
class PrivacyConfig:
    key_file: str = ""  # empty: alprd-unit.key next to the spool (created 0600 on first start)
    audit_log: str = ""  # empty: audit.jsonl next to the spool
    checkpoint_interval_s: float = 300.0  # signed audit checkpoints to <prefix>/<unit>/audit
    purge_interval_s: float = 300.0
    audit_batch_s: float = 60.0  # one "published" audit entry per destination per window
    audit_batch_n: int = 1000

    def validate(self, where: str) -> None:
        for key in ("checkpoint_interval_s", "purge_interval_s", "audit_batch_s"):
            if getattr(self, key) <= 0:
                raise ConfigError(f"{where}.{key}: {getattr(self, key)} must be positive")
        if self.audit_batch_n < 1:
            raise ConfigError(f"{where}.audit_batch_n: {self.audit_batch_n} must be at least 1")
