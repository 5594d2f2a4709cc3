"""The shipped systemd unit: valid, a notify service with a watchdog, and hardened so that
`systemd-analyze security` keeps its exposure under 5 (skipped where systemd-analyze is missing)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parents[2] / "config" / "alprd.service"
needs_analyze = pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="systemd-analyze is not installed")


def test_notify_with_watchdog():
    text = UNIT.read_text()
    for line in ("Type=notify", "NotifyAccess=main", "WatchdogSec=30"):
        assert re.search(rf"^{line}$", text, re.M), line


@needs_analyze
def test_security_exposure_under_5():
    # --threshold is on systemd's internal 0-100 scale, ten times the printed score: 49 is "under 5".
    res = subprocess.run(["systemd-analyze", "security", "--offline=true", "--threshold=49", str(UNIT)],
                         capture_output=True, text=True, timeout=60)
    score = re.search(r"Overall exposure level for \S+: ([\d.]+)", res.stdout)
    assert res.returncode == 0 and score and float(score.group(1)) < 5, res.stdout[-2000:] + res.stderr


@needs_analyze
def test_verify_passes(tmp_path):
    # verify wants ExecStart's binary to exist: the same unit, run with a binary every system has.
    copy = tmp_path / "alprd.service"
    copy.write_text(UNIT.read_text().replace("/usr/local/bin/alprd", shutil.which("true") or "/bin/true"))
    res = subprocess.run(["systemd-analyze", "verify", str(copy)], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0 and "alprd.service" not in res.stderr, res.stderr
