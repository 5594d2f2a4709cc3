"""What one destination gets of a message, by its minimisation mode."""

from __future__ import annotations

import time
from typing import Any

from alprd.privacy.keys import pseudonym

MODES = ("full", "hits_only", "pseudonymous")


def is_hit(kind: str, payload: dict[str, Any]) -> bool:
    return kind == "hit" or bool(payload.get("hit"))


def _without_crop(payload: dict[str, Any]) -> dict[str, Any]:
    """No crop, also not in the read a hit carries inside it."""
    out = {k: v for k, v in payload.items() if k != "crop_jpeg"}
    if isinstance(out.get("read"), dict) and "crop_jpeg" in out["read"]:
        out["read"] = {k: v for k, v in out["read"].items() if k != "crop_jpeg"}
    return out


def minimise(mode: str, kind: str, payload: dict[str, Any], secret: bytes, include_crop: bool,
             now_s: float | None = None) -> dict[str, Any] | None:
    """The payload for a destination, or None when the mode keeps it on the unit. Hits always carry
    the plate; only reads (not hits, stats or anything else) are minimised. The pseudonym's day is
    the unit's UTC date when the read is spooled (a recorded source's frame times start at 0)."""
    out = _without_crop(payload) if not include_crop else payload
    if mode == "full" or kind != "read" or is_hit(kind, payload):
        return out
    if mode == "hits_only":
        return None
    # pseudonymous: the plate, and what would give it away (per-character detail, the crop), go.
    day = time.strftime("%Y-%m-%d", time.gmtime(time.time() if now_s is None else now_s))
    out = {k: v for k, v in out.items() if k not in ("plate", "crop_jpeg", "char_confidences", "candidates")}
    out["plate_hmac"] = pseudonym(secret, str(payload.get("plate", "")), day)
    out["plate_hmac_day"] = day
    out["char_confidences"] = []
    return out
