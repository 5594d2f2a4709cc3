"""The notification protocol's framing and the watchdog's environment rules, on real sockets."""

from __future__ import annotations

import os
import socket
import time

from alprd.ops.notify import Heartbeats, Notifier, watchdog_interval_s


def test_abstract_namespace_socket_gets_ready_and_pings():
    name = f"alprd-test-{os.getpid()}-{time.monotonic_ns()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(2)
        stalled: list[str] = []
        n = Notifier(lambda: stalled, {"NOTIFY_SOCKET": "@" + name, "WATCHDOG_USEC": "100000"})
        n.ready("2 camera(s)")
        assert sock.recv(4096).decode().splitlines() == ["READY=1", "STATUS=2 camera(s)"]
        assert sock.recv(4096) == b"WATCHDOG=1"
        stalled.append("worker-0")
        lines = []
        deadline = time.monotonic() + 2
        while "STATUS=stalled: worker-0" not in lines and time.monotonic() < deadline:
            lines.append(sock.recv(4096).decode())
        sock.settimeout(0.3)
        try:
            while True:  # once stalled, nothing more: no ping
                assert sock.recv(4096) != b"WATCHDOG=1"
        except TimeoutError:
            pass
        n.stopping()
        assert sock.recv(4096).decode().splitlines() == ["STOPPING=1", "STATUS=stopping"]
        n.close()


def test_watchdog_only_for_this_process_and_no_socket_no_sends():
    assert watchdog_interval_s({"WATCHDOG_USEC": "30000000"}) == 15.0
    assert watchdog_interval_s({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}) == 15.0
    assert watchdog_interval_s({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}) is None
    assert watchdog_interval_s({"WATCHDOG_USEC": "0"}) is None
    assert watchdog_interval_s({}) is None
    assert Notifier(lambda: [], {}).send("READY=1") is False


def test_heartbeat_ages_and_forgets():
    b = Heartbeats()
    assert b.age("feed-cam1") is None
    b.touch("feed-cam1")
    time.sleep(0.05)
    age = b.age("feed-cam1")
    assert age is not None and 0.04 < age < 5
    b.forget("feed-cam1")
    assert b.age("feed-cam1") is None
