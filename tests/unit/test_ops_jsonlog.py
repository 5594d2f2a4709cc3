"""`--log-format json` (and `logging.format: json`): every log line of a real `alprd run` is one JSON
object with ts, level, logger and message, and a camera's lines name the camera."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import yaml

from alprd.ops.jsonlog import JsonFormatter

REPO = Path(__file__).resolve().parents[2]


def run(tmp_path: Path, *extra: str, fmt: str | None = None) -> subprocess.CompletedProcess:
    cfg = {"unit_id": "t1", "cameras": [{"id": "cam1", "source": str(tmp_path / "missing.mp4")}],
           "mqtt": {"host": "127.0.0.1", "port": 1}, "spool": {"path": str(tmp_path / "spool.db")}}
    if fmt:
        cfg["logging"] = {"format": fmt}
    p = tmp_path / "unit.yaml"
    p.write_text(yaml.safe_dump(cfg))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH", "")]))}
    return subprocess.run([sys.executable, "-m", "alprd", "run", "-c", str(p), "--until-sources-end", *extra],
                          capture_output=True, text=True, env=env, timeout=60, cwd=tmp_path)


def check_json_lines(stderr: str) -> list[dict]:
    lines = stderr.strip().splitlines()
    docs = [json.loads(line) for line in lines]  # each line alone is one object
    assert docs and all({"ts", "level", "logger", "message"} <= set(d) for d in docs)
    assert all(d["ts"].endswith("Z") for d in docs)
    return docs


def test_run_logs_json_lines_with_camera(tmp_path):
    res = run(tmp_path, "--log-format", "json")
    assert res.returncode == 1  # the only camera's file is missing
    docs = check_json_lines(res.stderr)
    missing = [d for d in docs if "video file not found" in d["message"]]
    assert missing and missing[0]["camera"] == "cam1" and missing[0]["level"] == "ERROR"
    assert any(d["level"] == "INFO" and d["logger"] == "alprd.daemon" for d in docs)


def test_config_format_json_and_the_flag_wins(tmp_path):
    check_json_lines(run(tmp_path, fmt="json").stderr)
    text = run(tmp_path, "--log-format", "text", fmt="json").stderr
    assert text and not text.lstrip().startswith("{")


def test_extra_fields_exceptions_and_newlines_stay_one_line():
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("alprd.test.jsonlog")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("two\nlines", extra={"camera": "gate", "frames": 3})
        try:
            raise ValueError("boom")
        except ValueError:
            logger.exception("failed")
    finally:
        logger.removeHandler(handler)
    first, second = (json.loads(line) for line in out.getvalue().splitlines())
    assert first["message"] == "two\nlines" and first["camera"] == "gate" and first["frames"] == 3
    assert second["level"] == "ERROR" and "ValueError: boom" in second["exc"]
