"""The unit's config file as hostile input: `alprd check-config` refuses a YAML bomb, deep nesting,
a 200 MB file, /dev/zero, a FIFO, duplicate keys and numbers no setting can hold, at once and in
one line; and seeded random mutations of a real config never get past load_config as anything but
a ConfigError."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import pytest

from alprd.config import load_config
from alprd.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
BASE = "unit_id: u1\ncameras:\n  - id: cam1\n    source: clip.mp4\nworkers: 2\nspool:\n  max_rows: 1000\n"


def check_config(path: Path | str) -> str:
    """check-config's one error line, after checking it is one line, exit 2, no traceback, no wait."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH", "")]))}
    t0 = time.monotonic()
    res = subprocess.run([sys.executable, "-m", "alprd", "check-config", str(path)], capture_output=True, text=True,
                         env=env, timeout=60)
    assert time.monotonic() - t0 < 30
    assert res.returncode == 2 and "Traceback" not in res.stderr, (res.returncode, res.stderr[-2000:])
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"alprd: error: {path}: "), res.stderr
    return lines[0]


@pytest.mark.timeout(120)
def test_bomb_nesting_size_and_non_regular_files_are_refused_at_once(tmp_path):
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(BASE + "x: &a [1, 1, 1, 1, 1, 1, 1, 1]\n" + "".join(
        f"x{i}: &a{i} [{', '.join(['*a' if i == 0 else f'*a{i - 1}'] * 8)}]\n" for i in range(9)))
    assert "line 8, column 4: YAML anchors and aliases (& and *) are not allowed" in check_config(bomb)
    deep = tmp_path / "deep.yaml"
    deep.write_text(BASE + "roi: " + "[" * 5000 + "]" * 5000 + "\n")
    assert "nested more than 32 levels deep" in check_config(deep)
    huge = tmp_path / "huge.yaml"
    huge.write_text(BASE)
    with open(huge, "r+b") as f:
        f.truncate(200 << 20)
    assert f"config file is too big ({200 << 20} bytes; at most {1 << 20})" in check_config(huge)
    assert check_config("/dev/zero").endswith("/dev/zero: cannot read config file: it is a device, not a regular file")
    fifo = tmp_path / "fifo.yaml"
    os.mkfifo(fifo)
    assert "it is a FIFO, not a regular file" in check_config(fifo)


def test_duplicate_keys_and_numbers_no_setting_can_hold_are_refused(tmp_path):
    def write(text: str) -> Path:
        p = tmp_path / "alprd.yaml"
        p.write_text(text)
        return p

    assert "line 8, column 1: duplicate key 'workers' (first at line 5)" in check_config(write(BASE + "workers: 64\n"))
    assert "spool.max_rows: expected an integer, got '1e26'" in check_config(write(BASE.replace("1000", "1e26")))
    assert "spool.max_rows: expected an integer, got 1e+26" in check_config(write(BASE.replace("1000", "1.0e+26")))
    line = check_config(write(BASE.replace("1000", str(10**26))))
    assert "spool.max_rows: 100000000000000000000000000 is out of range; use an integer between" in line
    line = check_config(write(BASE + "stats_interval_s: 1.0e+300\n"))
    assert "stats_interval_s: 1e+300 is out of range; use a number between -1e9 and 1e9" in line
    assert "line 1, column 10: timestamp value out of range" in check_config(write("unit_id: 2021-13-45\n" + BASE[12:]))
    assert "int value out of range" in check_config(write(BASE.replace("1000", "9" * 5000)))
    long = check_config(write(BASE.replace("u1", "u" * 100_000 + "/x")))
    assert len(long) < 400, "a long value is quoted short"


def test_a_yaml_file_that_is_no_config_is_not_echoed(tmp_path):
    other = tmp_path / "other.yaml"
    other.write_text("db_password: hunter2\napi_token: SECRET\n")
    line = check_config(other)
    assert "not an alprd config file" in line and "hunter2" not in line and "db_password" not in line
    assert "SECRET" not in line
    typo = tmp_path / "typo.yaml"
    typo.write_text(BASE + "wrokers: 3\n")
    assert "wrokers: unknown key; did you mean 'workers'?" in check_config(typo)  # the user's own file: named


SPECIAL = ["&a ", "*a", "[" * 40, "{", "}", "]", ": ", "- ", "\t", "!!python/object:os.system ", "'", '"', "\x00",
           "\ufeff", "<<: ", "? ", "1e999", ".nan", "-.inf", "9" * 60, "0x", "2021-13-45", "~", "|\n", ">\n", "%YAML 1.1\n",
           "---\n", "...\n", "!!binary ", "!!set ", "#", "\\", "\r", "\u2028", "\ud7ff"]


def mutate(rng: random.Random, text: str) -> str:
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(5)
        i = rng.randrange(len(text) + 1)
        if op == 0:
            text = text[:i] + rng.choice(SPECIAL) + text[i:]
        elif op == 1 and text:
            text = text[:i] + chr(rng.randrange(1, 0x3000)) + text[i + 1:]
        elif op == 2:
            text = text[:i]
        elif op == 3:
            lines = text.splitlines(keepends=True)
            if lines:
                text += rng.choice(lines) * rng.randint(1, 3)
        else:
            text = text[:i] + text[i:][::-1] if rng.random() < 0.2 else text[:i] + text[rng.randrange(len(text) + 1):]
    return text


@pytest.mark.timeout(300)
def test_fuzzed_configs_raise_config_errors_only(tmp_path):
    """Seeded random mutations of a real config (and of the shipped ones): load_config returns a
    config or raises one ConfigError line; no other exception, no input that takes long, and
    memory stays bounded."""
    seeds = [BASE] + [p.read_text() for p in sorted((REPO / "config").glob("*.yaml"))]
    (tmp_path / "clip.mp4").write_bytes(b"")
    rng = random.Random(20261121)
    path = tmp_path / "alprd.yaml"
    slowest = 0.0
    tracemalloc.start()
    try:
        for n in range(400):
            text = mutate(rng, rng.choice(seeds))
            path.write_text(text, errors="surrogatepass")
            t0 = time.perf_counter()
            try:
                load_config(path)
            except ConfigError as e:
                assert "\n" not in str(e) and len(str(e)) < 2000, (text, str(e))
            except Exception as e:  # pragma: no cover - the failure being looked for
                pytest.fail(f"input {n}: {type(e).__name__}: {e}\n{text!r}")
            slowest = max(slowest, time.perf_counter() - t0)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert slowest < 10.0, f"one config took {slowest:.1f} s"  # a hang, not a speed target (tracing slows it)
    assert peak < 64 << 20, f"peak {peak >> 20} MiB"
