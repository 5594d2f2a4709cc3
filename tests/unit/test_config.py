"""Config validation: through the real CLI (`python -m alprd check-config`) and through load_config.

Every mistake must come out as one line naming the file and the key, exit code 2, no traceback."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import shipped_config

from alprd.config import Config, load_config
from alprd.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
MODELS = REPO / "models"


def check_config(path: Path | str, env: dict | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    full_env = {**os.environ, **(env or {})}
    # Importable from any working directory, installed or not.
    full_env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), full_env.get("PYTHONPATH", "")]))
    return subprocess.run([sys.executable, "-m", "alprd", "check-config", str(path)], capture_output=True, text=True,
                          env=full_env, cwd=cwd or REPO, timeout=60)


def base_config(**overrides) -> dict:
    cfg = {
        "unit_id": "pole-1",
        "cameras": [{"id": "cam1", "source": "video.mp4"}],
        "models": {"dir": str(MODELS)},
        "mqtt": {"host": "127.0.0.1", "port": 1883},
        "spool": {"path": "spool.db"},
    }
    cfg.update(overrides)
    return cfg


def write(tmp_path: Path, data: dict | str, name: str = "unit.yaml") -> Path:
    p = tmp_path / name
    p.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    (tmp_path / "video.mp4").touch()  # base_config's camera source: check-config wants it there
    return p


def assert_user_error(res: subprocess.CompletedProcess, *fragments: str) -> str:
    """Exit 2, one line on stderr starting 'alprd: error:', containing every fragment, no traceback."""
    assert res.returncode == 2, (res.returncode, res.stdout, res.stderr)
    assert "Traceback" not in res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    line = lines[0]
    assert line.startswith("alprd: error: "), line
    for f in fragments:
        assert f in line, (f, line)
    assert res.stdout == ""
    return line


# --- the CLI ------------------------------------------------------------------------------------


def test_shipped_pole_config_passes(tmp_path):
    res = check_config(shipped_config(tmp_path, "pole.yaml"))
    assert res.returncode == 0, res.stderr
    assert "OK" in res.stdout and "pole-017" in res.stdout
    assert res.stderr == ""


def test_missing_video_or_image_folder_is_one_line_naming_camera_and_path(tmp_path):
    """check-config catches a typo in a source path (the daemon would start and keep retrying it)."""
    res = check_config(write(tmp_path, base_config(cameras=[{"id": "gate", "source": "vidoe.mp4"}])), cwd=tmp_path)
    assert_user_error(res, "cameras[0] (camera 'gate') source", str(tmp_path / "vidoe.mp4"), "no such file or folder")
    cams = [{"id": "a", "source": "video.mp4"}, {"id": "b", "source": "clip.mp4", "kind": "file"}]
    line = assert_user_error(check_config(write(tmp_path, base_config(cameras=cams)), cwd=tmp_path),
                             "cameras[1] (camera 'b')", str(tmp_path / "clip.mp4"), "no such file")
    assert line.startswith(f"alprd: error: {tmp_path / 'unit.yaml'}: ")
    cams = [{"id": "snaps", "source": "shots", "kind": "images"}]
    assert_user_error(check_config(write(tmp_path, base_config(cameras=cams)), cwd=tmp_path),
                      "camera 'snaps'", str(tmp_path / "shots"), "no such folder")
    cams = [{"id": "snaps", "source": "video.mp4", "kind": "images"}]
    assert_user_error(check_config(write(tmp_path, base_config(cameras=cams)), cwd=tmp_path),
                      "camera 'snaps'", "not a folder")
    (tmp_path / "shots").mkdir()
    cams = [{"id": "snaps", "source": "shots", "kind": "images"}, {"id": "off", "source": "gone.mp4", "enabled": False},
            {"id": "live", "source": "rtsp://10.0.0.21/stream1"}]
    res = check_config(write(tmp_path, base_config(cameras=cams)), cwd=tmp_path)
    assert res.returncode == 0 and "3 camera(s)" in res.stdout, res.stderr


def test_valid_config_passes(tmp_path):
    res = check_config(write(tmp_path, base_config()), cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "OK (unit pole-1, 1 camera(s), broker 127.0.0.1:1883)" in res.stdout


@pytest.mark.parametrize(
    ("mutate", "key", "suggestion"),
    [
        (lambda c: c.update(unit_idd=c.pop("unit_id")), "unit_idd", "unit_id"),
        (lambda c: c["mqtt"].update(hots="broker"), "mqtt.hots", "host"),
        (lambda c: c["cameras"][0].update(sorce="x.mp4"), "cameras[0].sorce", "source"),
        (lambda c: c["models"].update(detection_treshold=0.4), "models.detection_treshold", "detection_threshold"),
        (lambda c: c.update(spol={"path": "x"}), "spol", "spool"),
    ],
)
def test_unknown_key_names_it_and_suggests(tmp_path, mutate, key, suggestion):
    cfg = base_config()
    mutate(cfg)
    path = write(tmp_path, cfg)
    line = assert_user_error(check_config(path), str(path), f"{key}: unknown key", f"did you mean '{suggestion}'?")
    with pytest.raises(ConfigError) as e:
        load_config(path)
    assert str(e.value) in line


def test_unknown_key_without_near_match_lists_valid_keys(tmp_path):
    cfg = base_config()
    cfg["spool"]["zzzzzz"] = 1
    assert_user_error(check_config(write(tmp_path, cfg)), "spool.zzzzzz: unknown key", "valid keys: path, max_rows")


@pytest.mark.parametrize(
    ("section", "key", "value", "fragments"),
    [
        ("mqtt", "port", "abc", ["mqtt.port", "expected an integer", "'abc'"]),
        ("mqtt", "port", 1883.5, ["mqtt.port", "expected an integer"]),
        ("mqtt", "port", True, ["mqtt.port", "expected an integer"]),
        ("mqtt", "include_crop", "yes please", ["mqtt.include_crop", "expected true or false"]),
        ("mqtt", "protocol", "4", ["mqtt.protocol", "'4' is not valid", "'5'", "'3.1.1'"]),
        ("models", "detection_threshold", "high", ["models.detection_threshold", "expected a number"]),
        ("models", "providers", "CPUExecutionProvider", ["models.providers", "expected a list"]),
        ("logging", "level", "LOUD", ["logging.level", "'LOUD' is not valid", "'DEBUG'"]),
        (None, "workers", "two", ["workers", "expected an integer"]),
        (None, "cameras", {"id": "c"}, ["cameras", "expected a list"]),
        (None, "mqtt", "127.0.0.1", ["mqtt", "expected a mapping"]),
    ],
)
def test_wrong_type(tmp_path, section, key, value, fragments):
    cfg = base_config()
    if section:
        cfg.setdefault(section, {})[key] = value
    else:
        cfg[key] = value
    assert_user_error(check_config(write(tmp_path, cfg)), *fragments)


def test_wrong_type_in_camera_entry(tmp_path):
    cfg = base_config(cameras=[{"id": "c1", "source": "a.mp4", "enabled": "sometimes"}])
    assert_user_error(check_config(write(tmp_path, cfg)), "cameras[0].enabled", "expected true or false")
    cfg = base_config(cameras=["a.mp4"])
    assert_user_error(check_config(write(tmp_path, cfg)), "cameras[0]", "expected a mapping")


@pytest.mark.parametrize("key", ["unit_id", "cameras"])
def test_missing_required_key(tmp_path, key):
    cfg = base_config()
    del cfg[key]
    assert_user_error(check_config(write(tmp_path, cfg)), f"{key}: required key is missing")


def test_missing_camera_id_and_empty_camera_list(tmp_path):
    assert_user_error(check_config(write(tmp_path, base_config(cameras=[{"source": "a.mp4"}]))),
                      "cameras[0].id: required key is missing")
    assert_user_error(check_config(write(tmp_path, base_config(cameras=[]))), "cameras", "at least one camera")


def test_duplicate_camera_ids(tmp_path):
    cams = [{"id": "c1", "source": "a.mp4"}, {"id": "c1", "source": "b.mp4"}]
    assert_user_error(check_config(write(tmp_path, base_config(cameras=cams))), "cameras[1].id", "duplicate")


@pytest.mark.parametrize("bad", ["", "a/b", "a b", "x#", "y+"])
def test_bad_unit_id(tmp_path, bad):
    assert_user_error(check_config(write(tmp_path, base_config(unit_id=bad))), "unit_id")


@pytest.mark.parametrize(
    ("section", "key", "value", "fragment"),
    [
        ("mqtt", "port", 70000, "mqtt.port"),
        ("mqtt", "topic_prefix", "a/#", "mqtt.topic_prefix"),
        ("models", "detector_input_width", 650, "models.detector_input_width"),
        ("models", "min_read_confidence", 1.5, "models.min_read_confidence"),
        ("models", "reread_below", -0.1, "models.reread_below"),
        ("models", "detector_recheck_above", 1.5, "models.detector_recheck_above"),
        ("models", "detector_verify_below", -0.2, "models.detector_verify_below"),
        ("mqtt", "keepalive_s", 0, "mqtt.keepalive_s"),
        ("mqtt", "max_inflight", 0, "mqtt.max_inflight"),
        ("models", "intra_op_threads", -1, "models.intra_op_threads"),
        ("models", "min_plate_chars", 0, "models.min_plate_chars"),
        ("spool", "max_rows", 5, "spool.max_rows"),
        (None, "stats_interval_s", float("nan"), "stats_interval_s"),
        (None, "workers", 0, "workers"),
        (None, "stats_interval_s", 0, "stats_interval_s"),
    ],
)
def test_out_of_range(tmp_path, section, key, value, fragment):
    cfg = base_config()
    if section:
        cfg[section][key] = value
    else:
        cfg[key] = value
    assert_user_error(check_config(write(tmp_path, cfg)), fragment)


@pytest.mark.parametrize(
    ("camera", "fragment"),
    [
        ({"reconnect_min_s": 0}, "cameras[0].reconnect_min_s"),
        ({"reconnect_min_s": 10, "reconnect_max_s": 5}, "cameras[0].reconnect_max_s"),
    ],
)
def test_bad_reconnect_backoff(tmp_path, camera, fragment):
    cfg = base_config(cameras=[{"id": "c1", "source": "a.mp4", **camera}])
    assert_user_error(check_config(write(tmp_path, cfg)), fragment)


def test_unreadable_tls_ca_file(tmp_path):
    cfg = base_config()
    cfg["mqtt"]["tls"] = {"ca_file": "no-such-ca.pem"}
    path = write(tmp_path, cfg)
    assert_user_error(check_config(path), "mqtt.tls.ca_file", "cannot read", str(tmp_path / "no-such-ca.pem"))
    # A folder is not a PEM file either.
    (tmp_path / "certs").mkdir()
    cfg["mqtt"]["tls"] = {"ca_file": "certs"}
    assert_user_error(check_config(write(tmp_path, cfg)), "mqtt.tls.ca_file", "cannot read")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file whatever its mode")
def test_tls_ca_file_without_read_permission(tmp_path):
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    ca.chmod(0)
    cfg = base_config()
    cfg["mqtt"]["tls"] = {"ca_file": str(ca)}
    assert_user_error(check_config(write(tmp_path, cfg)), "mqtt.tls.ca_file", "cannot read")


def test_tls_cert_without_key(tmp_path):
    (tmp_path / "unit.pem").write_text("x")
    cfg = base_config()
    cfg["mqtt"]["tls"] = {"cert_file": "unit.pem"}
    assert_user_error(check_config(write(tmp_path, cfg)), "mqtt.tls", "cert_file and key_file go together")


def test_password_and_password_env_both_set(tmp_path):
    cfg = base_config()
    cfg["mqtt"].update(password="secret", password_env="ALPRD_TEST_PW")
    line = assert_user_error(check_config(write(tmp_path, cfg), env={"ALPRD_TEST_PW": "x"}),
                             "mqtt.password and mqtt.password_env", "only one")
    assert "secret" not in line


def test_password_env_naming_an_unset_variable(tmp_path):
    cfg = base_config()
    cfg["mqtt"]["password_env"] = "ALPRD_TEST_UNSET_PW"
    path = write(tmp_path, cfg)
    env = {k: v for k, v in os.environ.items() if k != "ALPRD_TEST_UNSET_PW"}
    res = subprocess.run([sys.executable, "-m", "alprd", "check-config", str(path)], capture_output=True, text=True,
                         env={**env, "PYTHONPATH": str(REPO)}, cwd=REPO, timeout=60)
    assert_user_error(res, "mqtt.password_env", "ALPRD_TEST_UNSET_PW", "not set")
    # Set, it passes, and the password is taken from there.
    assert check_config(path, env={"ALPRD_TEST_UNSET_PW": "pw"}).returncode == 0


def test_password_env_supplies_the_password(tmp_path, monkeypatch):
    cfg = base_config()
    cfg["mqtt"]["password_env"] = "ALPRD_TEST_PW2"
    monkeypatch.setenv("ALPRD_TEST_PW2", "s3cret")
    loaded = load_config(write(tmp_path, cfg))
    assert loaded.mqtt_password() == "s3cret"
    assert "s3cret" not in repr(loaded)


def test_password_is_not_in_repr(tmp_path):
    cfg = base_config()
    cfg["mqtt"]["password"] = "hunter2"
    loaded = load_config(write(tmp_path, cfg))
    assert loaded.mqtt_password() == "hunter2"
    assert "hunter2" not in repr(loaded)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("unit_id: a\ncameras: [\n", "not valid YAML"),
        ("unit_id: a\n  cameras:\n - x\n\tbad", "not valid YAML"),
        ("unit_id: 'unterminated\n", "not valid YAML at line"),
        ("- just\n- a list\n", "expected a mapping of settings at the top level"),
        ("", "unit_id: required key is missing"),
    ],
)
def test_invalid_yaml(tmp_path, text, fragment):
    path = write(tmp_path, text)
    assert_user_error(check_config(path), str(path), fragment)


def test_binary_garbage_is_a_clear_error(tmp_path):
    path = tmp_path / "unit.yaml"
    path.write_bytes(b"\xff\xfe\x00garbage\x80\x81")
    assert_user_error(check_config(path), str(path))


def test_missing_config_file(tmp_path):
    path = tmp_path / "nope.yaml"
    assert_user_error(check_config(path), str(path), "config file not found")
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(path)


def test_config_path_is_a_folder(tmp_path):
    assert_user_error(check_config(tmp_path), "cannot read config file")


def test_models_dir_without_manifest(tmp_path):
    empty = tmp_path / "models"
    empty.mkdir()
    cfg = base_config(models={"dir": "models"})
    assert_user_error(check_config(write(tmp_path, cfg)), str(empty / "manifest.json"), "manifest not found")


@pytest.fixture
def models_copy(tmp_path) -> Path:
    dst = tmp_path / "models"
    dst.mkdir()
    for p in MODELS.iterdir():
        if p.name == "manifest.json" or p.suffix == ".onnx":
            shutil.copy2(p, dst / p.name)
    return dst


def test_models_copy_passes(tmp_path, models_copy):
    res = check_config(write(tmp_path, base_config(models={"dir": "models"})))
    assert res.returncode == 0, res.stderr


@pytest.mark.parametrize("which", ["detector", "ocr", "verifier"])
def test_model_file_sha256_mismatch(tmp_path, models_copy, which):
    import json

    manifest = json.loads((models_copy / "manifest.json").read_text())
    entry = next(m for m in manifest["models"] if m["task"] == which)
    onnx = models_copy / entry["file"]
    data = bytearray(onnx.read_bytes())
    data[len(data) // 2] ^= 0xFF
    onnx.write_bytes(bytes(data))
    assert_user_error(check_config(write(tmp_path, base_config(models={"dir": "models"}))),
                      str(onnx), "sha256", "does not match the manifest")


def test_model_file_missing(tmp_path, models_copy):
    for p in models_copy.glob("*.onnx"):
        p.unlink()
    assert_user_error(check_config(write(tmp_path, base_config(models={"dir": "models"}))),
                      "model file listed in the manifest is missing")


def test_model_name_not_in_manifest(tmp_path, models_copy):
    cfg = base_config(models={"dir": "models", "ocr": "no_such_reader"})
    assert_user_error(check_config(write(tmp_path, cfg)), "no model named 'no_such_reader'", "plate_ocr")


def test_manifest_not_json(tmp_path, models_copy):
    (models_copy / "manifest.json").write_text("{not json")
    assert_user_error(check_config(write(tmp_path, base_config(models={"dir": "models"}))), "not valid JSON")


# --- load_config ----------------------------------------------------------------------------------


def test_defaults_and_types(tmp_path):
    cfg = load_config(write(tmp_path, {"unit_id": "u1", "cameras": [{"id": "c", "source": "rtsp://10.0.0.2/s"}]}))
    assert isinstance(cfg, Config)
    assert cfg.mqtt.host == "127.0.0.1" and cfg.mqtt.port == 1883 and cfg.mqtt.protocol == "5"
    assert cfg.mqtt.tls is None and cfg.models.dir == ""
    assert cfg.cameras[0].kind == "auto" and cfg.cameras[0].source == "rtsp://10.0.0.2/s"
    assert cfg.models.providers == ("CPUExecutionProvider",)
    assert cfg.workers == 2 and cfg.stats_interval_s == 30.0
    assert cfg.source_file == str((tmp_path / "unit.yaml").resolve())


def test_yaml_scalars_are_coerced_where_unambiguous(tmp_path):
    cfg = base_config(stats_interval_s=5, cameras=[{"id": 7, "source": 0, "kind": "usb"}])
    cfg["mqtt"]["protocol"] = 5
    loaded = load_config(write(tmp_path, cfg))
    assert loaded.stats_interval_s == 5.0 and isinstance(loaded.stats_interval_s, float)
    assert loaded.cameras[0].id == "7" and loaded.cameras[0].source == "0"
    assert loaded.mqtt.protocol == "5"


def test_relative_paths_are_relative_to_the_config_file(tmp_path, monkeypatch):
    confdir = tmp_path / "etc" / "alprd"
    confdir.mkdir(parents=True)
    (confdir / "ca.pem").write_text("x")
    (confdir / "unit.pem").write_text("x")
    (confdir / "unit.key").write_text("x")
    cfg = base_config(
        cameras=[
            {"id": "file", "source": "../videos/a.mp4"},
            {"id": "imgs", "source": "frames", "kind": "images"},
            {"id": "abs", "source": "/data/b.mp4"},
            {"id": "rtsp", "source": "rtsp://user:pw@10.0.0.21:554/stream1"},
            {"id": "http", "source": "http://10.0.0.22/mjpeg"},
            {"id": "usb", "source": "/dev/video0"},
            {"id": "usbn", "source": "0"},
        ],
        models={"dir": "../models"},
        spool={"path": "state/spool.db"},
    )
    cfg["mqtt"]["tls"] = {"ca_file": "ca.pem", "cert_file": "unit.pem", "key_file": "unit.key"}
    path = write(confdir, cfg)
    elsewhere = tmp_path / "somewhere" / "else"
    elsewhere.mkdir(parents=True)
    monkeypatch.chdir(elsewhere)  # the working directory must not matter
    loaded = load_config(os.path.relpath(path, elsewhere))
    cams = {c.id: c.source for c in loaded.cameras}
    base = confdir.resolve()
    assert cams["file"] == str((base / "../videos/a.mp4").resolve())
    assert cams["imgs"] == str(base / "frames")
    assert cams["abs"] == "/data/b.mp4"
    assert cams["rtsp"] == "rtsp://user:pw@10.0.0.21:554/stream1"
    assert cams["http"] == "http://10.0.0.22/mjpeg"
    assert cams["usb"] == "/dev/video0"
    assert cams["usbn"] == "0"
    assert loaded.models.dir == str((tmp_path / "etc" / "models").resolve())
    assert loaded.spool.path == str(base / "state" / "spool.db")
    assert loaded.mqtt.tls.ca_file == str(base / "ca.pem")
    assert loaded.mqtt.tls.cert_file == str(base / "unit.pem")
    assert loaded.mqtt.tls.key_file == str(base / "unit.key")
    # The same through the CLI from another working directory: the TLS files are found, and the
    # models folder is looked for beside the config file (it does not exist here).
    res = check_config(os.path.relpath(path, elsewhere), cwd=elsewhere)
    assert_user_error(res, str((tmp_path / "etc" / "models" / "manifest.json").resolve()), "manifest not found")


def test_shipped_pole_config_resolves_demo_paths():
    cfg = load_config(REPO / "config" / "pole.yaml")
    assert cfg.cameras[0].source == str((REPO / "demo" / "pole.mp4").resolve())
    assert cfg.spool.path == str((REPO / "demo" / "spool.db").resolve())
    assert cfg.models.dir == ""  # the shipped models
    assert cfg.unit_id == "pole-017"


def test_mqtt_reconnect_ceiling_is_checked(tmp_path):
    from alprd.config import load_config
    from alprd.errors import ConfigError

    cfg = tmp_path / "c.yaml"
    cfg.write_text("unit_id: u\ncameras: [{id: a, source: x.mp4}]\nmqtt: {reconnect_max_s: 0}\n")
    with pytest.raises(ConfigError, match="mqtt.reconnect_max_s: 0.0 must be between 0.5 and 3600"):
        load_config(cfg)
    cfg.write_text("unit_id: u\ncameras: [{id: a, source: x.mp4}]\nmqtt: {reconnect_max_s: 5}\n")
    assert load_config(cfg).mqtt.reconnect_max_s == 5.0
