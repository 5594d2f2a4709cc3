"""systemd's notification protocol, done here (a datagram a line of KEY=value to $NOTIFY_SOCKET) rather
than with a dependency: READY=1 once the threads run, STATUS=..., STOPPING=1, and WATCHDOG=1 at half
of WatchdogSec, sent only while every capture and worker thread shows progress.

A wedged daemon (a camera read that never returns, a worker stuck in inference) then stops pinging,
and systemd restarts it; a healthy but idle one keeps pinging."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Mapping

log = logging.getLogger(__name__)


class Heartbeats:
    """Each thread touches its name every loop iteration; its age says how long since it last did."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last: dict[str, float] = {}

    def touch(self, name: str) -> None:
        with self._lock:
            self._last[name] = time.monotonic()

    def forget(self, name: str) -> None:
        """The thread ended as it should (a recorded source ran out): not stale, just gone."""
        with self._lock:
            self._last.pop(name, None)

    def age(self, name: str) -> float | None:
        with self._lock:
            t = self._last.get(name)
        return None if t is None else time.monotonic() - t


def _address(env: Mapping[str, str]) -> str | None:
    addr = env.get("NOTIFY_SOCKET", "")
    if addr.startswith("@"):
        return "\0" + addr[1:]  # Linux abstract namespace
    return addr if addr.startswith("/") else None  # unset, or a kind (vsock) a daemon like this never gets


def watchdog_interval_s(env: Mapping[str, str]) -> float | None:
    """Half of WATCHDOG_USEC (sd_watchdog_enabled's rule), when it is meant for this process."""
    usec, pid = env.get("WATCHDOG_USEC", ""), env.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0 or (pid and pid != str(os.getpid())):
        return None
    return int(usec) / 1e6 / 2


class Notifier:
    def __init__(self, stalled: Callable[[], list[str]], env: Mapping[str, str] | None = None):
        """`stalled`: the threads that have not made progress in time (empty: ping)."""
        env = os.environ if env is None else env
        self._addr = _address(env)
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) if self._addr else None
        self._interval = watchdog_interval_s(env) if self._addr else None
        self._stalled = stalled
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def send(self, *lines: str) -> bool:
        if self._sock is None or self._addr is None:
            return False
        try:
            self._sock.sendto("\n".join(lines).encode(), self._addr)
            return True
        except OSError as e:  # systemd gone or the socket not ours: the daemon runs on regardless
            log.debug("NOTIFY_SOCKET: %s", e)
            return False

    def ready(self, status: str) -> None:
        self.send("READY=1", f"STATUS={status}")
        if self._interval is not None:
            self._thread = threading.Thread(target=self._watchdog, args=(self._interval,), name="watchdog", daemon=True)
            self._thread.start()

    def _watchdog(self, interval: float) -> None:
        said = ""
        while not self._stop.wait(interval):
            stalled = self._stalled()
            if not stalled:
                self.send("WATCHDOG=1")
                if said:
                    log.warning("watchdog: threads progressing again; pings resumed")
                said = ""
                continue
            now = ", ".join(stalled)
            if now != said:
                log.error("watchdog: no progress from %s; not pinging systemd", now)
                self.send(f"STATUS=stalled: {now}")
                said = now

    def stopping(self) -> None:
        self._stop.set()
        self.send("STOPPING=1", "STATUS=stopping")

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._sock is not None:
            self._sock.close()
