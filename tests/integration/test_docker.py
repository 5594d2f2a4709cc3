"""The container deployment: Dockerfile, .dockerignore and deploy/compose.yaml.

Without a docker daemon the image cannot be built here, so what can be checked without one is: every
COPY source exists and is not ignored, the compose file has the services, mounts and volume the
demo needs, and the compose command itself runs the mounted demo config against a real broker
(paths moved from the container's to a temporary folder). With a daemon (`docker info` succeeds)
the image is built and the compose demo must publish a read."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
COMPOSE = DEPLOY / "compose.yaml"
DATA = "/var/lib/alprd"


def _dockerfile() -> list[tuple[str, str]]:
    """(instruction, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", (REPO / "Dockerfile").read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            op, _, rest = line.partition(" ")
            out.append((op.upper(), rest.strip()))
    return out


def _ignored() -> list[str]:
    lines = (REPO / ".dockerignore").read_text().splitlines()
    return [ln.strip() for ln in lines if ln.strip() and not ln.startswith("#")]


def test_dockerfile_copies_what_exists_and_runs_unprivileged():
    steps = _dockerfile()
    assert steps[0] == ("FROM", "python:3.11-slim")
    copies = [a.split()[:-1] for op, a in steps if op == "COPY"]
    sources = [s for c in copies for s in c]
    ignored = _ignored()
    for s in sources:
        assert (REPO / s).exists(), f"COPY {s}: not in the repository"
        assert not any(s == i or s.startswith(i.rstrip("/") + "/") for i in ignored), f"COPY {s}: .dockerignore drops it"
    # pyproject's package and data files must all be in what is copied, or `pip install .` in the image breaks.
    assert {"pyproject.toml", "README.md", "alprd", "models", "config"} <= set(sources)
    users = [a for op, a in steps if op == "USER"]
    assert users and users[-1] not in ("root", "0"), "the daemon must not run as root"
    assert any(op == "RUN" and "pip install '.[synth]'" in a for op, a in steps), "the package from pyproject"
    assert ("VOLUME", f'["{DATA}"]') in steps
    assert ("CMD", '["run", "-c", "/config/alprd.yaml"]') in steps and ("ENTRYPOINT", '["alprd"]') in steps
    assert {"tests", "training", ".git", ".venv", "demo", "runs"} <= set(ignored)


def _compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def test_compose_file_has_the_broker_the_daemon_its_config_and_volume():
    c = _compose()
    assert set(c["services"]) == {"mosquitto", "alprd"} and set(c["volumes"]) == {"alprd-data"}
    mq, al = c["services"]["mosquitto"], c["services"]["alprd"]
    assert mq["image"].startswith("eclipse-mosquitto:")
    assert (DEPLOY / al["build"]["context"] / al["build"]["dockerfile"]).resolve() == REPO / "Dockerfile"
    mounts = {v.split(":")[0]: v.split(":")[1] for v in al["volumes"]}
    assert mounts["./alprd.yaml"] == "/config/alprd.yaml" and mounts["alprd-data"] == DATA
    for service in (mq, al):
        for v in service["volumes"]:
            src = v.split(":", 1)[0]
            if src.startswith("."):
                assert (DEPLOY / src).is_file(), f"{v}: {src} is not in deploy/"
    # Plain MQTT only on loopback (the privacy policy): the daemon shares the broker's network.
    assert al["network_mode"] == "service:mosquitto" and al["depends_on"] == ["mosquitto"]
    cfg = yaml.safe_load((DEPLOY / "alprd.yaml").read_text())
    listener = re.search(r"^listener (\d+) 127\.0\.0\.1$", (DEPLOY / "mosquitto.conf").read_text(), re.M)
    assert listener and cfg["mqtt"]["host"] == "127.0.0.1" and cfg["mqtt"]["port"] == int(listener.group(1))
    assert cfg["spool"]["path"].startswith(DATA + "/") and cfg["cameras"][0]["source"].startswith(DATA + "/")


def _here(text: str, data: Path, port: int) -> str:
    """The container's paths and broker port moved to this machine's."""
    text = text.replace("/config/alprd.yaml", str(data / "alprd.yaml")).replace(DATA, str(data))
    return re.sub(r"^(\s*port:\s*)1883\b", rf"\g<1>{port}", text, flags=re.M)


def test_the_compose_command_runs_the_demo_config_against_a_broker(tmp_path, broker, subscriber_factory):
    """The alprd service's own command (render the demo video once, then `alprd run` on the mounted
    config), with /var/lib/alprd and the config mount moved to a temporary folder."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "alprd.yaml").write_text(_here((DEPLOY / "alprd.yaml").read_text(), data, broker.port))
    al = _compose()["services"]["alprd"]
    assert al["entrypoint"] == ["sh", "-c"]
    command = _here(al["command"][0], data, broker.port)
    env = {**os.environ, "PYTHONPATH": str(REPO),
           "PATH": os.pathsep.join([str(tmp_path / "bin"), os.environ.get("PATH", "")])}
    (tmp_path / "bin").mkdir()
    # `alprd` on PATH as the image has it: this checkout's, run by this interpreter.
    shim = tmp_path / "bin" / "alprd"
    shim.write_text(f"#!/bin/sh\nexec {shlex.quote(sys.executable)} -m alprd \"$@\"\n")
    shim.chmod(0o755)
    sub = subscriber_factory(broker.port, "alprd/docker-demo/#")
    proc = subprocess.Popen(["sh", "-c", command], env=env, cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        assert sub.wait_for(lambda s: s.payloads("/read"), timeout=120), "no read published by the demo"
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        out = proc.communicate(timeout=30)[0].decode(errors="replace")
    read = sub.payloads("/read")[0]
    assert read["unit"] == "docker-demo" and read["camera"] == "demo" and read["plate"], out[-2000:]
    assert (data / "demo" / "pole.mp4").is_file() and (data / "spool.db").is_file()
    res = subprocess.run([sys.executable, "-m", "alprd", "check-config", str(data / "alprd.yaml")], env=env,
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0 and "OK (unit docker-demo" in res.stdout, res.stderr


def _docker_ok() -> str:
    if not shutil.which("docker"):
        return "docker is not installed"
    r = subprocess.run(["docker", "info"], capture_output=True, text=True, timeout=30)
    return "" if r.returncode == 0 else "no docker daemon reachable (`docker info` fails)"


@pytest.mark.skipif(bool(_docker_ok()), reason=_docker_ok() or "docker")
def test_image_builds_and_the_compose_demo_publishes_reads(tmp_path):
    project = f"alprd-test-{os.getpid()}"
    base = ["docker", "compose", "-f", str(COMPOSE), "-p", project]
    try:
        r = subprocess.run(base + ["up", "-d", "--build"], capture_output=True, text=True, timeout=1200)
        assert r.returncode == 0, r.stderr[-3000:]
        deadline = time.monotonic() + 180
        got = ""
        while time.monotonic() < deadline and not got:
            r = subprocess.run(base + ["exec", "-T", "mosquitto", "mosquitto_sub", "-h", "127.0.0.1", "-t",
                                       "alprd/docker-demo/demo/read", "-C", "1", "-W", "30"],
                               capture_output=True, text=True, timeout=60)
            got = r.stdout.strip()
        assert got, subprocess.run(base + ["logs", "alprd"], capture_output=True, text=True).stdout[-3000:]
        assert json.loads(got.splitlines()[0])["unit"] == "docker-demo"
        r = subprocess.run(base + ["exec", "-T", "alprd", "id", "-u"], capture_output=True, text=True, timeout=60)
        assert r.stdout.strip() not in ("", "0"), "the daemon runs as root"
    finally:
        subprocess.run(base + ["down", "-v"], capture_output=True, timeout=300)
