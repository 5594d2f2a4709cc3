"""The daemon against a mosquitto with a TLS listener and a password file: the happy path delivers
reads; a wrong password and an untrusted broker certificate each give one clear log line."""

from __future__ import annotations

import datetime
import ipaddress
import subprocess
import time
from pathlib import Path

import pytest
from conftest import DaemonProcess, wait_until
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from test_daemon import NO_READS, camera, make_config, spool_rows, statuses, wait_subscribed

USER, PASSWORD = "alprd-unit", "tls-Pa55-word"


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))


def make_ca(folder: Path, cn: str) -> tuple[Path, ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(cn)).issuer_name(_name(cn))
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                                     key_encipherment=False, data_encipherment=False, key_agreement=False,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    path = folder / f"{cn}.pem"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path, key, cert


def make_server_cert(folder: Path, ca_key: ec.EllipticCurvePrivateKey, ca_cert: x509.Certificate) -> tuple[Path, Path]:
    """A broker certificate for 127.0.0.1 (an IP SAN: the daemon checks the name it connects to)."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("127.0.0.1")).issuer_name(ca_cert.subject)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    cert_path, key_path = folder / "server.pem", folder / "server.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_key(key_path, key)
    return cert_path, key_path


@pytest.fixture
def tls_broker(tmp_path, broker_factory):
    """mosquitto with only a TLS listener, a password file and no anonymous access; returns it and its CA."""
    pki = tmp_path / "pki"
    pki.mkdir()
    ca, ca_key, ca_cert = make_ca(pki, "test-ca")
    cert, key = make_server_cert(pki, ca_key, ca_cert)
    passwd = pki / "passwd"
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(passwd), USER, PASSWORD], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    broker = broker_factory()
    # mosquitto started as root drops to the `mosquitto` user, which cannot read pytest's 0700 tmp dirs.
    broker.conf.write_text(
        f"user root\nlistener {broker.port} 127.0.0.1\ncafile {ca}\ncertfile {cert}\nkeyfile {key}\n"
        f"require_certificate false\nallow_anonymous false\npassword_file {passwd}\npersistence false\nlog_dest stderr\n"
    )
    return broker.start(), ca


def _config(tmp_path: Path, port: int, models_dir: Path, video: Path, ca: Path, password: str) -> Path:
    return make_config(tmp_path / "unit", port, models_dir, [camera("cam1", video)],
                       mqtt={"username": USER, "password": password, "tls": {"ca_file": str(ca)}})


def test_tls_and_password_deliver_reads(tmp_path, tls_broker, subscriber_factory, traffic_video, models_dir, daemons):
    broker, ca = tls_broker
    sub = subscriber_factory(broker.port, auth=(USER, PASSWORD), ca_certs=str(ca))
    wait_subscribed(sub, broker.port, auth={"username": USER, "password": PASSWORD}, tls={"ca_certs": str(ca)})
    d = daemons(_config(tmp_path, broker.port, models_dir, traffic_video[0], ca, PASSWORD), "--until-sources-end")
    assert d.wait(180) == 0, d.output[-4000:]
    assert sub.wait_for(lambda s: any(st["online"] is False for st in statuses(s)), 10), d.output[-4000:]
    assert any(st["online"] for st in statuses(sub)), "no online status over TLS"
    assert not d.lines(" ERROR "), d.output[-4000:]
    assert not spool_rows(tmp_path / "unit" / "spool.db"), "reads left undelivered in the spool"
    reads = sub.payloads("/read")
    if not reads:
        pytest.fail(NO_READS)
    assert {p["camera"] for p in reads} == {"cam1"}
    counted = max((p["reads"].get("cam1", 0) for p in sub.payloads("/stats")), default=0)
    # A vehicle pass's first read and its update share a read_id: count distinct messages.
    assert len({(p["read_id"], p.get("event")) for p in reads}) >= counted
    assert PASSWORD not in d.output


def _wait_for_one_line(d: DaemonProcess, *needles: str) -> str:
    assert d.wait_output(lambda p: p.lines(*needles), 30), d.output[-4000:]
    time.sleep(4.0)  # several reconnect attempts (backoff 0.5, 1, 2 s): the problem is still reported once
    d.terminate()
    assert d.wait(30) == 0, d.output[-4000:]
    found = d.lines(*needles)
    assert len(found) == 1, f"expected one line with {needles}, got:\n" + "\n".join(found)
    assert "Traceback" not in d.output, d.output[-4000:]
    assert PASSWORD not in d.output
    return found[0]


def test_wrong_password_is_one_clear_line(tmp_path, tls_broker, traffic_video, models_dir, daemons):
    broker, ca = tls_broker
    d = daemons(_config(tmp_path, broker.port, models_dir, traffic_video[0], ca, "wrong-" + PASSWORD))
    line = _wait_for_one_line(d, "refused the connection")
    assert " ERROR " in line and "password" in line.lower(), line
    assert f"127.0.0.1:{broker.port}" in line


def test_untrusted_broker_certificate_is_one_clear_line(tmp_path, tls_broker, traffic_video, models_dir, daemons):
    broker, _ = tls_broker
    other_ca, _, _ = make_ca(tmp_path, "some-other-ca")
    d = daemons(_config(tmp_path, broker.port, models_dir, traffic_video[0], other_ca, PASSWORD))
    line = _wait_for_one_line(d, "not trusted")
    assert " ERROR " in line and f"127.0.0.1:{broker.port}" in line and "ca_file" in line, line



def test_connects_once_the_broker_accepts_the_password(tmp_path, tls_broker, subscriber_factory, traffic_video,
                                                       models_dir, daemons):
    """A refusal is not final: when the broker's password file is fixed, the daemon gets in on a
    later retry and delivers everything it spooled meanwhile."""
    broker, ca = tls_broker
    spool = tmp_path / "unit" / "spool.db"
    # No --until-sources-end: like a unit, the daemon stays up, so the end of the short clip cannot win
    # a race against the broker's restart (with the flag the daemon would rightly stop, reads spooled).
    d = daemons(_config(tmp_path, broker.port, models_dir, traffic_video[0], ca, "new-" + PASSWORD))
    assert d.wait_output(lambda p: p.lines("refused the connection"), 30), d.output[-4000:]
    assert wait_until(lambda: spool_rows(spool), 60), "no read was spooled while the broker refused the daemon"
    passwd = tmp_path / "pki" / "passwd"
    subprocess.run(["mosquitto_passwd", "-b", str(passwd), USER, "new-" + PASSWORD], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    broker.stop()
    broker.start()
    sub = subscriber_factory(broker.port, auth=(USER, "new-" + PASSWORD), ca_certs=str(ca))
    assert d.wait_output(lambda p: p.lines("mqtt: connected to"), 60), d.output[-4000:]
    assert wait_until(lambda: not spool_rows(spool), 30), "reads left undelivered in the spool"
    d.terminate()
    assert d.wait(30) == 0, d.output[-4000:]
    assert sub.wait_for(lambda s: any(st["online"] is False for st in statuses(s)), 20), d.output[-4000:]
    assert not spool_rows(spool), "reads left undelivered in the spool"
