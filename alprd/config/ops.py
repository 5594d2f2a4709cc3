"""The operator's side: the optional HTTP status/metrics listener (`http:`).

Off unless asked for, and on loopback unless told otherwise: the endpoints carry no plate text, but
they say what the unit is doing, which is still nobody else's business by default."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from alprd.errors import ConfigError


def parse_listen(listen: str) -> tuple[str, int]:
    """"host:port" or "[v6]:port" -> (host, port); ValueError with what is wrong."""
    host, sep, port = listen.rpartition(":")
    if not sep or not host:
        raise ValueError("expected host:port, e.g. 127.0.0.1:8080 or [::1]:8080")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        if ipaddress.ip_address(host).version != 6:
            raise ValueError("only an IPv6 address goes in brackets")
    elif host != "localhost":
        ipaddress.ip_address(host)  # a name would need a lookup at start; an address says where it listens
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError("the port must be between 1 and 65535")
    return host, int(port)


@dataclass(frozen=True)
class HttpConfig:
    enabled: bool = False
    listen: str = "127.0.0.1:8080"
    # /status answers 503 once the primary broker has been unreachable this long (a brief broker
    # restart is not an outage: the spool holds the reads meanwhile).
    broker_unreachable_after_s: float = 60.0

    def address(self) -> tuple[str, int]:
        return parse_listen(self.listen)

    def validate(self, where: str) -> None:
        try:
            parse_listen(self.listen)
        except ValueError as e:
            raise ConfigError(f"{where}.listen: {self.listen!r} is not valid: {str(e).splitlines()[0]} "
                              "(an IP address or localhost, and a port: 127.0.0.1:8080 or [::1]:8080)") from None
        if not 0 < self.broker_unreachable_after_s <= 86400:
            raise ConfigError(f"{where}.broker_unreachable_after_s: {self.broker_unreachable_after_s} must be "
                              "more than 0 and at most 86400 seconds")


@dataclass(frozen=True)
class WatchdogConfig:
    # A running camera that delivered no frame, or a worker that has not come back, for this long
    # stops the systemd watchdog pings (docs/deployment.md). Longer than a slow frame's analysis;
    # shorter than WatchdogSec, so a hang is acted on within about twice WatchdogSec.
    stale_after_s: float = 15.0

    def validate(self, where: str) -> None:
        if not 0 < self.stale_after_s <= 3600:
            raise ConfigError(f"{where}.stale_after_s: {self.stale_after_s} must be more than 0 and at most 3600 seconds")
