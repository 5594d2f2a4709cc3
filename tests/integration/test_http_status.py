"""The HTTP status and metrics endpoints of a running `alprd run`, with a real mosquitto that the test
stops and starts again: /status turns 503 once the broker has been gone longer than configured, and
200 when it is back; /metrics (parsed as Prometheus parses it) counts what the daemon's final stats say."""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request
from typing import Any

from conftest import Subscriber, free_port, leaked, wait_until, write_config
from prometheus_client.parser import text_string_to_metric_families


def get(port: int, path: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except OSError:
        return 0, b""


def raw(port: int, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(request)
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def status(port: int) -> tuple[int, dict[str, Any]]:
    code, body = get(port, "/status")
    return code, (json.loads(body) if code in (200, 503) else {})


def frames_metric(port: int) -> dict[str, float]:
    code, body = get(port, "/metrics")
    assert code == 200
    fams = {f.name: f for f in text_string_to_metric_families(body.decode())}
    assert "alprd_stage_seconds" in fams and "alprd_spool_depth" in fams and "alprd_broker_connected" in fams
    counts = {s.labels["stage"]: s.value for s in fams["alprd_stage_seconds"].samples if s.name == "alprd_stage_seconds_sum"}
    # Plates are read in the pipeline (read_detections), not by the workers' analyse: both must be timed.
    assert counts.get("detect", 0) > 0 and counts.get("ocr", 0) > 0, counts
    return {s.labels["camera"]: s.value for s in fams["alprd_frames"].samples if s.name == "alprd_frames_total"}


def test_status_follows_broker_and_metrics_match_final_counts(tmp_path, broker, traffic_video, models_dir, daemons):
    http_port = free_port()
    cfg = write_config(tmp_path / "alprd.yaml", cameras=[{"id": "cam1", "source": str(traffic_video[0])}],
                       models={"dir": str(models_dir)}, mqtt={"port": broker.port, "reconnect_max_s": 1},
                       spool={"path": str(tmp_path / "spool.db")}, stats_interval_s=0.5,
                       logging={"format": "json"},
                       http={"enabled": True, "listen": f"127.0.0.1:{http_port}", "broker_unreachable_after_s": 1})
    sub = Subscriber(broker.port)
    d = daemons(cfg)
    try:
        # The recorded video runs out; the daemon (no --until-sources-end) keeps serving.
        assert wait_until(lambda: status(http_port)[1].get("cameras", {}).get("cam1", {}).get("state") == "finished"
                          and status(http_port)[1]["broker"]["connected"], 120), d.output[-3000:]
        code, doc = status(http_port)
        assert code == 200 and doc["healthy"] and doc["problems"] == []
        assert doc["cameras"]["cam1"]["frames"] > 0
        # No plate text in either endpoint: neither the video's plates nor what the daemon read.
        plates = {v.text for v in traffic_video[1]} | {p["plate"] for p in sub.payloads("/read")}
        bodies = get(http_port, "/status")[1] + get(http_port, "/metrics")[1]
        assert plates and not leaked(plates, bodies)
        assert get(http_port, "/nope")[0] == 404
        long_code, long_body = get(http_port, "/status" + "x" * 400)
        assert long_code == 414 and b"xxxx" not in long_body  # the request is never echoed
        bad = raw(http_port, b"GET /status SECRET-VERSION\r\n\r\n")  # malformed: 400, and not quoted back
        assert b"Error code: 400" in bad and b"SECRET" not in bad
        assert raw(http_port, b"POST /status HTTP/1.0\r\nContent-Length: 5\r\n\r\nabcde").startswith(b"HTTP/1.0 405")

        broker.stop()
        assert wait_until(lambda: status(http_port)[0] == 503, 15), status(http_port)
        code, doc = status(http_port)
        assert not doc["broker"]["connected"] and any("broker" in p for p in doc["problems"])
        broker.start()
        assert wait_until(lambda: status(http_port)[0] == 200, 30), status(http_port)

        analysed = frames_metric(http_port)
        assert analysed["cam1"] > 0
        d.terminate()
        assert d.wait(60) == 0
        assert wait_until(lambda: sub.payloads("/stats"), 10)
        final = sub.payloads("/stats")[-1]
        assert final["frames"] == {cam: int(n) for cam, n in analysed.items()}
        # The JSON log of the whole run: one object a line, and no plate text at INFO.
        logged = [json.loads(line) for line in d.output.splitlines() if line.strip()]
        assert logged and all({"ts", "level", "logger", "message"} <= set(x) for x in logged)
        assert not [x for x in logged if x["level"] == "INFO" and leaked(plates, x["message"])]
    finally:
        sub.close()
