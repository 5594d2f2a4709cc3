"""The wheel carries what an installed unit needs beside the code: the models, the example configs
and the example hotlist they point at, and the systemd unit."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_wheel_ships_models_example_configs_and_hotlist(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src)
    for name in ("alprd", "config", "models"):
        shutil.copytree(REPO / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    res = subprocess.run([sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "--no-build-isolation", "-q",
                          "-w", str(tmp_path / "dist")], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    (wheel,) = (tmp_path / "dist").glob("alprd-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    data = {n.split(".data/data/", 1)[1] for n in names if ".data/data/" in n}
    config = {Path(n).name for n in data if n.startswith("share/alprd/config/")}
    assert {"pole.yaml", "vehicle.yaml", "policy.yaml", "vehicle-drive.nmea", "hotlist.example.csv"} <= config, config
    assert {p.name for p in (REPO / "config").glob("*.yaml")} <= config
    assert "share/alprd/models/manifest.json" in data and "share/alprd/systemd/alprd.service" in data
