"""The unit secret and the keys derived from it. The secret never leaves the unit and is never logged;
derived keys are recomputed when needed, so no rotating key is ever stored."""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import stat
from pathlib import Path

from alprd.errors import ConfigError

SECRET_BYTES = 32


def load_or_create_secret(path: str | Path) -> bytes:
    """Read the unit secret, creating it (0600, random) on first start."""
    p = Path(path)
    if not p.exists():
        try:
            p.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process created it first: use theirs
            pass
        except OSError as e:
            raise ConfigError(f"{p}: cannot create the unit key file ({e.strerror}): make its folder writable "
                              "by the daemon's user, or set privacy.key_file") from None
        else:
            with os.fdopen(fd, "w") as f:
                f.write(os.urandom(SECRET_BYTES).hex() + "\n")
                f.flush()
                os.fsync(f.fileno())
    try:
        mode = stat.S_IMODE(p.stat().st_mode)
        text = p.read_text().strip()
    except OSError as e:
        raise ConfigError(f"{p}: cannot read the unit key file ({e.strerror})") from None
    if mode & 0o077:
        raise ConfigError(f"{p}: the unit key file is readable by others (mode {mode:04o}); chmod 600 it")
    if not re.fullmatch(r"[0-9a-f]{64}", text):
        raise ConfigError(f"{p}: not an alprd unit key (expected 64 hex digits); delete it to make a new one")
    return bytes.fromhex(text)


def derive(secret: bytes, label: str) -> bytes:
    return hmac.new(secret, label.encode(), hashlib.sha256).digest()


def audit_key(secret: bytes) -> bytes:
    return derive(secret, "audit")


def normalise_plate(plate: str) -> str:
    return "".join(ch for ch in plate.upper() if ch.isalnum())


def pseudonym(secret: bytes, plate: str, day: str) -> str:
    """HMAC-SHA256 of the normalised plate under the key of one UTC day (YYYY-MM-DD): the same car
    links within a day, not across days, and without the secret nobody can rebuild the table of all
    plates' hashes."""
    day_key = derive(secret, "pseudonym:" + day)
    return hmac.new(day_key, normalise_plate(plate).encode(), hashlib.sha256).hexdigest()
