"""What an operator meets first: `alprd synth --help` explains every option, and the example
configs point at files that ship beside them."""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from fnmatch import fnmatch
from pathlib import Path

import pytest
import yaml

from alprd.cli import build_parser

REPO = Path(__file__).resolve().parents[2]


def _subparser(name: str) -> argparse.ArgumentParser:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices[name]


def test_synth_help_documents_every_option():
    p = _subparser("synth")
    actions = [a for a in p._actions if not isinstance(a, argparse._HelpAction)]
    assert {a.dest for a in actions} >= {"out", "vehicles", "seconds", "width", "height", "fps", "seed"}
    res = subprocess.run([sys.executable, "-m", "alprd", "synth", "--help"], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "PYTHONPATH": str(REPO)})
    assert res.returncode == 0, res.stderr
    text = " ".join(res.stdout.split())
    for a in actions:
        assert a.help and len(a.help) > 10, f"synth {a.dest}: no help text"
        shown = " ".join((a.help % {"default": a.default}).split())
        assert shown in text, (a.dest, shown)
        name = a.option_strings[0] if a.option_strings else a.dest
        assert re.search(rf"(^|\s){re.escape(name)}\b", text), name


def _hotlist_mentions(cfg: Path) -> list[str]:
    """hotlist paths a config sets or names in its comments (`e.g. FILE.csv`)."""
    data = yaml.safe_load(cfg.read_text()) or {}
    paths = [(data.get("hotlist") or {}).get("path", "")]
    paths += [(c.get("hotlist") or {}).get("path", "") for c in data.get("cameras", [])]
    for line in cfg.read_text().splitlines():
        if "hotlist" in line.lower() and "#" in line:
            paths += re.findall(r"([\w./-]+\.(?:csv|ya?ml))", line.split("#", 1)[1])
    return [p for p in paths if p]


def test_example_configs_name_hotlists_that_exist_and_ship():
    configs = sorted((REPO / "config").glob("*.yaml"))
    named = {p for cfg in configs for p in _hotlist_mentions(cfg)}
    assert "hotlist.example.csv" in named, "an example config shows how to set a hotlist"
    for p in named:
        assert (REPO / "config" / p).is_file(), f"an example config names {p}, which config/ lacks"
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+; tests/integration/test_packaging.py builds the wheel
    data_files = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["data-files"]
    shipped = data_files["share/alprd/config"]
    for p in named | {cfg.name for cfg in configs}:
        assert any(fnmatch(f"config/{p}", g) for g in shipped), f"config/{p} is not in the wheel's share/alprd/config"
