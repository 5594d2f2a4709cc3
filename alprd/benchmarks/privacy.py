"""Cost of the privacy layer per read: `python -m alprd.benchmarks.privacy [--reads N]`.

Prints microseconds per read for minimisation and audit appends, and milliseconds per read for
spooling to one, two and three destinations (each its own SQLite spool, synced to disk on every
write), as ratios against one destination measured in the same run. Figures, not pass/fail."""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from alprd.privacy.audit import AuditLog
from alprd.privacy.minimise import minimise
from alprd.publish.payload import encode
from alprd.publish.spool import Spool

PAYLOAD = {"schema": "alprd.read/1", "read_id": "01a1ff22-ed71-700c-b732-fb472f458ebc", "unit": "u", "camera": "c",
           "plate": "KX52ABC", "confidence": 0.93, "char_confidences": [0.99, 0.98, 0.93, 0.99, 0.99, 0.99, 0.99],
           "detection_confidence": 0.88, "timestamp": "2026-11-21T16:22:26.510Z", "timestamp_ms": 1795278146510,
           "frame_index": 93, "box": [612, 488, 742, 522], "frame": {"width": 1280, "height": 720},
           "models": {"detector": "plate_detector@0.1.0", "ocr": "plate_ocr@0.2.0"}}


def spool_ms(modes: list[str], reads: int, secret: bytes) -> float:
    with tempfile.TemporaryDirectory() as d:
        spools = [Spool(Path(d) / f"s{i}.db") for i in range(len(modes))]
        t = time.perf_counter()
        for _ in range(reads):
            for mode, sp in zip(modes, spools):
                out = minimise(mode, "read", PAYLOAD, secret, False)
                if out is not None:
                    sp.put("alprd/u/c/read", encode(out), PAYLOAD["read_id"], 0)
        ms = (time.perf_counter() - t) / reads * 1000
        for sp in spools:
            sp.close()
    return ms


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reads", type=int, default=300)
    args = ap.parse_args(argv)
    secret = os.urandom(32)
    n = 20000
    t = time.perf_counter()
    for _ in range(n):
        minimise("pseudonymous", "read", PAYLOAD, secret, False)
    print(f"minimise pseudonymous: {(time.perf_counter() - t) / n * 1e6:.1f} us/read")
    with tempfile.TemporaryDirectory() as d:
        log = AuditLog(Path(d) / "audit.jsonl", secret, "u")
        t = time.perf_counter()
        for _ in range(200):
            log.append("published", destination="primary", count=100, first_read_id="a", last_read_id="b")
        print(f"audit append (fsync'd): {(time.perf_counter() - t) / 200 * 1000:.2f} ms/entry "
              "(one entry per batch of acknowledgements, not per read)")
    base = spool_ms(["full"], args.reads, secret)
    print(f"spool, 1 destination (full): {base:.2f} ms/read")
    for modes in (["full", "pseudonymous"], ["full", "pseudonymous", "hits_only"]):
        ms = spool_ms(modes, args.reads, secret)
        print(f"spool, {len(modes)} destinations ({', '.join(modes)}): {ms:.2f} ms/read ({ms / base:.2f}x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
