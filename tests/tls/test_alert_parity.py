"""The alerts a client sees from midge are the ones Debian's mosquitto sends.

The same listener configuration runs on both brokers; `openssl s_client` connects with
each kind of bad client certificate and we compare the alert it reports.
"""

import os
import subprocess

import pytest

from tests.brokerproc import free_port, start_midge, start_mosquitto
from tests.peers import require_peer

ALERTS = ["handshake failure", "certificate required", "certificate expired", "unknown ca",
          "certificate revoked", "protocol version", "bad certificate"]


def config(pki, port, crl, tls_version="tlsv1.2"):
    user = "user root\n" if os.geteuid() == 0 else ""  # mosquitto run as root drops to `mosquitto`
    return (f"{user}listener {port} 127.0.0.1\ncafile {pki.ca_cert}\ncertfile {pki.server_cert}\n"
            f"keyfile {pki.server_key}\nrequire_certificate true\ntls_version {tls_version}\n"
            f"crlfile {crl}\nallow_anonymous true\n")


def alert_seen(port, *args) -> str:
    openssl = require_peer("openssl")
    result = subprocess.run([openssl, "s_client", "-connect", f"127.0.0.1:{port}", "-ign_eof", *map(str, args)],
                            input=b"", capture_output=True, timeout=20)
    text = (result.stdout + result.stderr).decode(errors="replace").lower()
    found = [alert for alert in ALERTS if f"alert {alert}" in text]
    return found[0] if found else "no alert"


@pytest.fixture(scope="module")
def brokers(pki, tmp_path_factory):
    revoked = pki.client("parity-revoked")
    crl = pki.crl(revoked=[revoked])
    running = {}
    for name, start in (("midge", start_midge), ("mosquitto", start_mosquitto)):
        port = free_port()
        directory = tmp_path_factory.mktemp(name)
        running[name] = (start(config(pki, port, crl), directory, port), port)
    yield running
    for broker, _ in running.values():
        broker.stop()


CASES = {
    "no certificate, TLS 1.2": lambda pki: ["-tls1_2"],
    "no certificate, TLS 1.3": lambda pki: ["-tls1_3"],
    "expired": lambda pki: ["-cert", pki.client("parity-old", expired=True)[0],
                            "-key", pki.client("parity-old", expired=True)[1]],
    "not yet valid": lambda pki: ["-cert", pki.client("parity-future", not_yet_valid=True)[0],
                                  "-key", pki.client("parity-future", not_yet_valid=True)[1]],
    "unknown CA": lambda pki: ["-cert", pki.client("parity-other", issuer="other", key_type="ec")[0],
                               "-key", pki.client("parity-other", issuer="other", key_type="ec")[1]],
    "revoked": lambda pki: ["-cert", pki.client("parity-revoked")[0], "-key", pki.client("parity-revoked")[1]],
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_same_alert_as_mosquitto(pki, brokers, case):
    args = ["-CAfile", pki.ca_cert, *CASES[case](pki)]
    seen = {name: alert_seen(port, *args) for name, (_, port) in brokers.items()}
    assert seen["midge"] != "no alert", seen
    assert seen["midge"] == seen["mosquitto"], seen


def test_use_subject_as_username_same_string_as_mosquitto(pki, tmp_path):
    """Both brokers log the username they derived; the strings must be identical."""
    from cryptography.x509.oid import NameOID
    exe = require_peer("mosquitto_pub")
    cert, key = pki.client("Jörg Ü, \"dev\"", subject=((NameOID.COUNTRY_NAME, "DE"),
                                                       (NameOID.ORGANIZATION_NAME, "Fleet+Co"),
                                                       (NameOID.EMAIL_ADDRESS, "j@example.com")))
    usernames = {}
    for name, start in (("midge", start_midge), ("mosquitto", start_mosquitto)):
        port = free_port()
        directory = tmp_path / name
        directory.mkdir()
        user = "user root\n" if os.geteuid() == 0 else ""
        conf = (f"{user}listener {port} 127.0.0.1\ncafile {pki.ca_cert}\ncertfile {pki.server_cert}\n"
                f"keyfile {pki.server_key}\nrequire_certificate true\nuse_subject_as_username true\n"
                "log_type all\n")
        broker = start(conf, directory, port)
        try:
            result = subprocess.run([exe, "-h", "localhost", "-p", str(port), "--cafile", str(pki.ca_cert),
                                     "--cert", str(cert), "--key", str(key), "-t", "t", "-m", "x"],
                                    capture_output=True, text=True, timeout=20)
            assert result.returncode == 0, result.stderr
            line = broker.wait_for_log("New client connected")
            usernames[name] = line.split(" u'", 1)[1].rsplit("')", 1)[0]
        finally:
            broker.stop()
    assert usernames["midge"] == usernames["mosquitto"], usernames
    assert usernames["midge"].startswith(r"CN=J\C3\B6rg \C3\9C\, \"dev\"")
