"""GET /status (JSON, 200 or 503) and GET /metrics (Prometheus text) on a small stdlib server.

The server is for a supervisor or a scraper on the unit or its management network: it reads nothing
but the request line and headers (the stdlib caps both), answers one request per connection, never
echoes what it was sent, and holds no plate text to give away."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST

from alprd.config import HttpConfig
from alprd.errors import UserError

log = logging.getLogger(__name__)

MAX_PATH = 256  # longer than any path served; a longer one is answered 414 unread
REQUEST_TIMEOUT_S = 5.0  # a client that trickles its request is cut off, not waited for


def problems(health: dict[str, Any], broker_unreachable_after_s: float, now: float | None = None) -> list[str]:
    """Why the unit is unhealthy (empty: healthy): a camera in error, or the primary broker
    unreachable longer than allowed. States and durations only."""
    out = [f"camera {cam}: error" for cam, c in health["cameras"].items() if c["state"] == "error"]
    b = health["broker"]
    down_s = (now if now is not None else time.time()) - b["since_ms"] / 1000
    if not b["connected"] and down_s > broker_unreachable_after_s:
        out.append(f"broker unreachable for {down_s:.0f}s")
    return out


def status_document(health: dict[str, Any], cfg: HttpConfig) -> tuple[int, dict[str, Any]]:
    found = problems(health, cfg.broker_unreachable_after_s)
    return (503 if found else 200), {"healthy": not found, "problems": found, **health}


class StatusServer:
    def __init__(self, cfg: HttpConfig, health: Callable[[], dict[str, Any]], metrics: Callable[[], bytes]):
        self.cfg = cfg
        self._health = health
        self._metrics = metrics
        self._server: ThreadingHTTPServer | None = None

    def start(self) -> None:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            timeout = REQUEST_TIMEOUT_S
            server_version = "alprd"
            sys_version = ""

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's name
                pass  # the request line is the client's text: not for our log

            def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
                # The stdlib quotes the bad request line in its messages; only the code's own words here.
                super().send_error(code)

            def do_GET(self) -> None:
                if len(self.path) > MAX_PATH:
                    self.send_error(414)
                    return
                path = self.path.split("?", 1)[0]
                if path == "/status":
                    code, doc = status_document(owner._health(), owner.cfg)
                    self._reply(code, "application/json", json.dumps(doc).encode() + b"\n")
                elif path == "/metrics":
                    self._reply(200, CONTENT_TYPE_LATEST, owner._metrics())
                else:
                    self.send_error(404)

            def do_HEAD(self) -> None:
                self.send_error(405)

            do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_HEAD

            def _reply(self, code: int, ctype: str, body: bytes) -> None:
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body)

        host, port = self.cfg.address()
        cls = type("Server", (ThreadingHTTPServer,), {"address_family": _family(host), "daemon_threads": True})
        try:
            self._server = cls((host, port), Handler)
        except OSError as e:
            raise UserError(f"http.listen: cannot listen on {self.cfg.listen}: {e.strerror or e}") from None
        threading.Thread(target=self._server.serve_forever, name="http-status", daemon=True).start()
        log.info("status and metrics on http://%s/status and /metrics", self.cfg.listen)

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()


def _family(host: str) -> int:
    import socket

    return socket.AF_INET6 if ":" in host else socket.AF_INET
