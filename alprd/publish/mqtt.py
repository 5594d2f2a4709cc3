"""The one place that talks MQTT. Publishes the spool in order and deletes a row only on PUBACK.

One thread owns the paho client (connect, network loop, publish), so nothing else touches it;
other threads only write to the spool and set status/stats through thread-safe methods."""

from __future__ import annotations

import hashlib
import json
import logging
import ssl
import threading
import time
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt

from alprd.config import MqttConfig
from alprd.publish.spool import Spool

log = logging.getLogger(__name__)

# An in-flight message whose PUBACK has not come in this long is published again (duplicates are
# allowed downstream; losses are not).
INFLIGHT_TIMEOUT_S = 60.0


class PinMismatch(ssl.SSLError):
    """The broker's certificate is not the one the policy pins."""


class _PinnedSocket(ssl.SSLSocket):
    """Checks the broker's certificate fingerprint right after the TLS handshake, before paho sends
    CONNECT: a broker presenting another certificate never receives an MQTT byte."""

    def do_handshake(self, block: bool = False) -> None:
        super().do_handshake(block)
        pin = getattr(self.context, "alprd_pin", "")
        der = self.getpeercert(binary_form=True) or b""
        got = hashlib.sha256(der).hexdigest()
        if pin and got != pin:
            self.close()
            raise PinMismatch(f"presented a certificate with sha256 {got}, the policy requires {pin}")


class MqttCommunicator:
    def __init__(self, cfg: MqttConfig, unit_id: str, spool: Spool, password: str = "",
                 reconnect_min_s: float = 0.5, reconnect_max_s: float = 30.0, name: str = "primary",
                 pin_sha256: str = "", policy_source: str = ""):
        self.cfg = cfg
        self.name = name
        self.tag = "mqtt" if name == "primary" else f"mqtt[{name}]"
        self.pin_sha256, self.policy_source = pin_sha256, policy_source
        self.refused = 0  # connections dropped because the broker's certificate broke the policy
        self._acked: list[tuple[str, str]] = []  # (read_id, kind) acknowledged since take_acked()
        self.unit_id = unit_id
        self.spool = spool
        self.base = f"{cfg.topic_prefix.strip('/')}/{unit_id}"
        self.status_topic = f"{self.base}/status"
        self.reconnect_min_s, self.reconnect_max_s = reconnect_min_s, reconnect_max_s
        self._password = password
        self._status: dict[str, Any] = {}
        self._status_dirty = threading.Event()
        self._outbox_signal = threading.Event()
        self._stop = threading.Event()
        self._connected = threading.Event()
        self._inflight: dict[int, tuple[int, float, str, str]] = {}  # mid -> (spool seq, sent at, read_id, topic)
        self._extra: list[tuple[str, bytes, int, bool]] = []  # non-spooled messages (stats)
        self._extra_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.last_error = ""
        self.published = 0
        self.connects = 0
        self._connect_hooks: list[Callable[[], None]] = []
        self._handlers: dict[str, Callable[[bytes], None]] = {}
        self.client = self._make_client()

    def topic(self, *parts: str) -> str:
        return "/".join((self.base, *parts))

    # --- client setup -----------------------------------------------------------------------

    def _make_client(self) -> mqtt.Client:
        proto = mqtt.MQTTv5 if self.cfg.protocol == "5" else mqtt.MQTTv311
        # Two destinations on one broker must not take over each other's session.
        client_id = self.cfg.client_id or f"alprd-{self.unit_id}" + ("" if self.name == "primary" else f"-{self.name}")
        kwargs: dict[str, Any] = {}
        if proto == mqtt.MQTTv311:
            kwargs["clean_session"] = True
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=proto, **kwargs)
        if self.cfg.username:
            c.username_pw_set(self.cfg.username, self._password or None)
        tls = self.cfg.tls
        if tls is not None and self.pin_sha256:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            if tls.ca_file:
                ctx.load_verify_locations(cafile=tls.ca_file)
            else:
                ctx.load_default_certs()
            if tls.cert_file:
                ctx.load_cert_chain(tls.cert_file, tls.key_file or None)
            ctx.sslsocket_class = _PinnedSocket
            ctx.alprd_pin = self.pin_sha256  # type: ignore[attr-defined]
            c.tls_set_context(ctx)
            if tls.insecure:
                c.tls_insecure_set(True)
        elif tls is not None:
            c.tls_set(ca_certs=tls.ca_file or None, certfile=tls.cert_file or None, keyfile=tls.key_file or None,
                      cert_reqs=ssl.CERT_REQUIRED)
            if tls.insecure:
                c.tls_insecure_set(True)
        c.max_inflight_messages_set(self.cfg.max_inflight)
        c.will_set(self.status_topic, json.dumps({"online": False, "unit": self.unit_id}), qos=1, retain=True)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_publish = self._on_publish
        c.on_message = self._on_message
        return c

    # --- public API ---------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="mqtt", daemon=True)
        self._thread.start()

    def set_status(self, status: dict[str, Any]) -> None:
        self._status = status
        self._status_dirty.set()

    def notify(self) -> None:
        """New rows in the spool: publish without waiting for the next poll."""
        self._outbox_signal.set()

    def publish_unspooled(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False) -> None:
        """For periodic stats: worthless once stale, so not spooled."""
        with self._extra_lock:
            self._extra.append((topic, payload, qos, retain))
        self._outbox_signal.set()

    # --- what else rides on this connection (Home Assistant discovery) --------------------------

    def on_connected(self, hook: Callable[[], None]) -> None:
        """`hook` runs in the network thread after every accepted connection; what it publishes with
        publish_unspooled goes out after the status."""
        self._connect_hooks.append(hook)

    def subscribe(self, topic: str, handler: Callable[[bytes], None]) -> None:
        """`handler` gets the payload of each message on `topic` (an exact topic, no wildcards), in the
        network thread. Subscribed again on every connection: the session does not outlive it."""
        self._handlers[topic] = handler

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def inflight(self) -> int:
        return len(self._inflight)

    def take_acked(self) -> list[tuple[str, str]]:
        """(read_id, kind) of the messages acknowledged since the last call: the audit's batches."""
        with self._extra_lock:
            acked, self._acked = self._acked, []
        return acked

    def drain(self, drain_s: float) -> None:
        """Wait (up to drain_s) until what the spool holds is acknowledged."""
        deadline = time.monotonic() + drain_s
        while time.monotonic() < deadline and self.connected and (self.spool.depth() or self._inflight):
            self._outbox_signal.set()
            time.sleep(0.05)

    def stop(self, offline_status: dict[str, Any], drain_s: float = 5.0) -> None:
        """Publish what the spool holds (up to drain_s), then the offline status, then disconnect."""
        self.drain(drain_s)
        self._offline = offline_status
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=drain_s + 5)

    # --- network thread -----------------------------------------------------------------------

    def _run(self) -> None:
        delay = self.reconnect_min_s
        host, port = self.cfg.host, self.cfg.port
        first = True
        while not self._stop.is_set():
            self._refused = False  # each attempt gets its own CONNACK
            try:
                if first:
                    self.client.connect(host, port, keepalive=self.cfg.keepalive_s)
                else:
                    self.client.reconnect()
                first = False
            except PinMismatch as e:
                self.refused += 1
                self._fail(f"{self.tag}: broker {host}:{port} {e}; nothing was sent to it "
                           f"(policy {self.policy_source})")
            except ssl.SSLCertVerificationError as e:
                self._fail(f"{self.tag}: TLS certificate of {host}:{port} is not trusted ({e.verify_message}); "
                           "check mqtt.tls.ca_file")
            except ssl.SSLError as e:
                self._fail(f"{self.tag}: TLS handshake with {host}:{port} failed ({e.reason or e}); "
                           "check mqtt.tls settings and the broker's listener")
            except OSError as e:
                self._fail(f"{self.tag}: cannot reach broker {host}:{port} ({e.strerror or e})", level=logging.WARNING)
            else:
                delay = self.reconnect_min_s if self._loop_connected() else delay
                if self._stop.is_set():
                    break
            self._stop.wait(delay)
            delay = min(self.reconnect_max_s, delay * 2)
        self._shutdown()

    def _fail(self, message: str, level: int = logging.ERROR) -> None:
        if message != self.last_error:  # one line per distinct problem, not one per retry
            log.log(level, message)
        self.last_error = message

    def _loop_connected(self) -> bool:
        """Run the network loop while the TCP connection lives. True if the broker accepted us."""
        accepted = False
        while not self._stop.is_set():
            rc = self.client.loop(timeout=0.02)
            if rc != mqtt.MQTT_ERR_SUCCESS:
                break
            if self._connected.is_set():
                accepted = True
                self._pump()
            elif self._refused:
                break
            if not self._outbox_signal.is_set():
                self._outbox_signal.wait(0.02)
            self._outbox_signal.clear()
        if not self._stop.is_set():
            # On stop the connection is still up: _shutdown needs to know it to publish the offline status.
            self._connected.clear()
        return accepted

    _refused = False
    _offline: dict[str, Any] | None = None

    def _pump(self) -> None:
        if self._status_dirty.is_set():
            self._status_dirty.clear()
            self.client.publish(self.status_topic, json.dumps(self._status), qos=1, retain=True)
        with self._extra_lock:
            extra, self._extra = self._extra, []
        for topic, payload, qos, retain in extra:
            self.client.publish(topic, payload, qos=qos, retain=retain)
        now = time.monotonic()
        stale = [mid for mid, (_, t, _, _) in self._inflight.items() if now - t > INFLIGHT_TIMEOUT_S]
        for mid in stale:
            del self._inflight[mid]
        room = self.cfg.max_inflight - len(self._inflight)
        if room <= 0:
            return
        busy = {v[0] for v in self._inflight.values()}
        for msg in self.spool.pending(room, busy):
            info = self.client.publish(msg.topic, msg.payload, qos=1, retain=False)
            if info.rc != mqtt.MQTT_ERR_SUCCESS:
                break
            self._inflight[info.mid] = (msg.seq, now, msg.read_id, msg.topic)

    def _shutdown(self) -> None:
        if self.connected and self._offline is not None:
            # Unspooled messages set just before stopping (the final audit checkpoint) go out first.
            with self._extra_lock:
                extra, self._extra = self._extra, []
            infos = [self.client.publish(t, p, qos=q, retain=r) for t, p, q, r in extra]
            infos.append(self.client.publish(self.status_topic, json.dumps(self._offline), qos=1, retain=True))
            deadline = time.monotonic() + 3
            while not all(i.is_published() for i in infos) and time.monotonic() < deadline:
                if self.client.loop(timeout=0.05) != mqtt.MQTT_ERR_SUCCESS:
                    break
        try:
            self.client.disconnect()
            self.client.loop(timeout=0.1)
        except Exception:  # the socket may already be gone; nothing left to tell the broker
            pass

    # --- paho callbacks (run in the network thread) ------------------------------------------

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            self._refused = True
            self._fail(f"{self.tag}: broker {self.cfg.host}:{self.cfg.port} refused the connection: {reason_code}"
                       + ("; check mqtt.username and the password" if "password" in str(reason_code).lower()
                          or "authori" in str(reason_code).lower() else ""))
            return
        self._refused = False
        self.connects += 1
        if self.last_error:
            log.info("%s: connected to %s:%d", self.tag, self.cfg.host, self.cfg.port)
        self.last_error = ""
        # Everything unacknowledged is sent again from the spool, in order.
        self._inflight.clear()
        self._connected.set()
        self._status_dirty.set()
        for topic in self._handlers:
            client.subscribe(topic, qos=1)
        for hook in self._connect_hooks:
            try:
                hook()
            except Exception:  # a broken extension must not take the unit's reads down with it
                log.exception("%s: a connect hook failed", self.tag)

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        self._connected.clear()
        # After a refusal the broker closes the connection: that is the refusal, already reported, and
        # logging it as a second problem would repeat the refusal line on every retry.
        if not self._stop.is_set() and not self._refused:
            self._fail(f"{self.tag}: disconnected from {self.cfg.host}:{self.cfg.port} ({reason_code})", logging.WARNING)

    def _on_message(self, client, userdata, msg) -> None:
        handler = self._handlers.get(msg.topic)
        if handler is None:
            return
        try:
            handler(msg.payload)
        except Exception:  # anyone on the broker can publish there: one bad message must not end the loop
            log.exception("%s: handling a message on %s failed", self.tag, msg.topic)

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        entry = self._inflight.pop(mid, None)
        if entry is None:
            return
        if reason_code is not None and getattr(reason_code, "is_failure", False):
            log.warning("mqtt: broker refused a message (%s); it stays in the spool", reason_code)
            return
        self.spool.ack(entry[0])
        self.published += 1
        with self._extra_lock:
            self._acked.append((entry[2], entry[3].rsplit("/", 1)[-1]))

