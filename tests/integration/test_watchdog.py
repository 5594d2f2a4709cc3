"""The systemd notification protocol from a running `alprd run`, with the test as systemd: a unix
datagram socket of its own as $NOTIFY_SOCKET. READY=1 comes once, WATCHDOG=1 keeps coming while the
live camera (a real MJPEG server on loopback) delivers frames, and stops while the camera hangs with
its connection open, the read blocked; it resumes when the camera does, and STOPPING=1 ends it."""

from __future__ import annotations

import socket
import time

from conftest import free_port, write_config
from mjpeg_server import MjpegCamera


class FakeSystemd:
    def __init__(self, path: str):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.sock.settimeout(0.1)
        self.seen: list[str] = []

    def collect(self, seconds: float) -> list[str]:
        """Every KEY=value line received in the next `seconds`."""
        got: list[str] = []
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                got += self.sock.recv(4096).decode().splitlines()
            except TimeoutError:
                pass
        self.seen += got
        return got

    def wait_for(self, line: str, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if line in self.collect(0.2):
                return True
        return False


def test_watchdog_pings_stop_while_a_camera_read_hangs(tmp_path, broker, traffic_video, models_dir, daemons,
                                                       monkeypatch):
    systemd = FakeSystemd(str(tmp_path / "notify.sock"))
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "notify.sock"))
    monkeypatch.setenv("WATCHDOG_USEC", "400000")  # WatchdogSec=0.4: a ping every 0.2 s
    port = free_port()
    cam = MjpegCamera(str(traffic_video[0]), port, fps=10)
    cam.start()
    cfg = write_config(tmp_path / "alprd.yaml", models={"dir": str(models_dir)}, mqtt={"port": broker.port},
                       cameras=[{"id": "live", "source": f"http://127.0.0.1:{port}/stream.mjpg"}],
                       spool={"path": str(tmp_path / "spool.db")}, watchdog={"stale_after_s": 2})
    d = daemons(cfg)
    try:
        assert systemd.wait_for("READY=1", 60), d.output[-3000:]
        assert systemd.collect(2.0).count("WATCHDOG=1") >= 5, (systemd.seen, d.output[-3000:])

        cam.paused.set()  # connection open, nothing sent: cap.read() blocks
        assert systemd.wait_for("STATUS=stalled: feed-live", 10), (systemd.seen[-20:], d.output[-3000:])
        assert "WATCHDOG=1" not in systemd.collect(2.0)
        assert d.lines("watchdog: no progress from feed-live")

        cam.paused.clear()
        assert systemd.wait_for("WATCHDOG=1", 20), d.output[-3000:]
        d.terminate()
        assert d.wait(60) == 0
        assert "STOPPING=1" in systemd.collect(0.5) + systemd.seen
    finally:
        cam.stop()
        systemd.sock.close()
