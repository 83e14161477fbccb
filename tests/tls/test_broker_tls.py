"""midge broker end to end over TLS with real clients (mosquitto_pub/sub, paho, openssl).

Every refusal is checked from the client's side and from the broker's log line.
"""

import os
import signal
import ssl
import subprocess

import pytest

from tests.brokerproc import free_port, start_midge
from tests.peers import require_module, require_peer

TIMEOUT = 20


@pytest.fixture
def broker(tmp_path):
    started = []

    def start(config: str, port: int):
        b = start_midge(config, tmp_path, port, extra_args=["-v"])
        started.append(b)
        return b

    yield start
    for b in started:
        b.stop()


def reference_config(pki, tmp_path, port, psk_port, revoked):
    """The configuration Mosquitto TLS guides teach (issue 3, "Done when")."""
    psk_file = tmp_path / "psk.txt"
    psk_file.write_text("# identity:key\nsensor-1:deadbeef0123\nodd:abc\n")
    crl = pki.crl(revoked=[revoked])
    return (f"per_listener_settings false\n"
            f"psk_file {psk_file}\n"
            f"listener {port} 127.0.0.1\n"
            f"cafile {pki.ca_cert}\ncertfile {pki.server_cert}\nkeyfile {pki.server_key}\n"
            f"tls_version tlsv1.2\nrequire_certificate true\nuse_identity_as_username true\n"
            f"crlfile {crl}\n"
            f"listener {psk_port} 127.0.0.1\n"
            f"psk_hint midge\nuse_identity_as_username true\n")


def mosquitto(tool, port, *args, timeout=TIMEOUT):
    exe = require_peer(tool)
    return subprocess.run([exe, "-h", "localhost", "-p", str(port), *map(str, args)],
                          capture_output=True, text=True, timeout=timeout)


def pub_sub_roundtrip(port, tls_args, identity_log, midge_proc):
    """mosquitto_sub receives what mosquitto_pub sends, both over TLS."""
    exe = require_peer("mosquitto_sub")
    mark = midge_proc.mark()
    sub = subprocess.Popen([exe, "-h", "localhost", "-p", str(port), *map(str, tls_args), "-t", "tls/#",
                            "-C", "1", "-W", "10", "-v"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    midge_proc.wait_for_log(" tls/#", start=mark)  # the SUBSCRIBE reached the broker
    pub = mosquitto("mosquitto_pub", port, *tls_args, "-t", "tls/x", "-m", "over-tls")
    assert pub.returncode == 0, pub.stderr
    out, err = sub.communicate(timeout=TIMEOUT)
    assert out.strip() == "tls/x over-tls", err
    midge_proc.wait_for_log(identity_log, start=mark)


def test_reference_configuration(pki, tmp_path, broker):
    port, psk_port = free_port(), free_port()
    revoked = pki.client("revoked-device")
    b = broker(reference_config(pki, tmp_path, port, psk_port, revoked), port)
    cert, key = pki.client("device-1")

    pub_sub_roundtrip(port, ["--cafile", pki.ca_cert, "--cert", cert, "--key", key], "u'device-1'", b)
    pub_sub_roundtrip(psk_port, ["--psk", "deadbeef0123", "--psk-identity", "sensor-1"], "u'sensor-1'", b)
    # odd number of hex digits, padded like Mosquitto (abc -> 0abc)
    pub_sub_roundtrip(psk_port, ["--psk", "0abc", "--psk-identity", "odd"], "u'odd'", b)

    cases = [
        ("revoked", ["--cert", revoked[0], "--key", revoked[1]], "is revoked by the CRL"),
        ("no certificate", [], "no client certificate"),
        ("expired", list(pki.client("old-device", expired=True)), "expired on"),
        ("wrong CA", list(pki.client("foreign", issuer="other", key_type="ec")), "unknown CA"),
    ]
    for label, extra, log_words in cases:
        if extra and extra[0] != "--cert":
            extra = ["--cert", extra[0], "--key", extra[1]]
        mark = b.mark()
        result = mosquitto("mosquitto_pub", port, "--cafile", pki.ca_cert, *extra, "-t", "t", "-m", "x")
        assert result.returncode != 0, label
        line = b.wait_for_log(log_words, start=mark)
        assert "127.0.0.1:" in line and f"port {port}" in line, line

    mark = b.mark()
    result = mosquitto("mosquitto_pub", psk_port, "--psk", "00ff", "--psk-identity", "intruder", "-t", "t", "-m", "x")
    assert result.returncode != 0
    b.wait_for_log("PSK identity 'intruder' unknown", start=mark)

    mark = b.mark()
    result = mosquitto("mosquitto_pub", psk_port, "--psk", "deadbeef0124", "--psk-identity", "sensor-1",
                       "-t", "t", "-m", "x")
    assert result.returncode != 0
    b.wait_for_log("failed", start=mark)

    mark = b.mark()
    result = mosquitto("mosquitto_pub", port, "-t", "t", "-m", "plain")
    assert result.returncode != 0
    b.wait_for_log("plaintext MQTT", start=mark)


def test_wrong_version_and_alerts_with_openssl(pki, tmp_path, broker):
    openssl = require_peer("openssl")
    port = free_port()
    b = broker(f"listener {port} 127.0.0.1\ncafile {pki.ca_cert}\ncertfile {pki.server_cert}\n"
               f"keyfile {pki.server_key}\ntls_version tlsv1.3\nrequire_certificate true\n"
               f"use_identity_as_username true\n", port)
    mark = b.mark()
    result = subprocess.run([openssl, "s_client", "-connect", f"127.0.0.1:{port}", "-tls1_2", "-CAfile",
                             str(pki.ca_cert)], input=b"", capture_output=True, timeout=TIMEOUT)
    assert b"protocol version" in result.stdout + result.stderr
    b.wait_for_log("below the listener's minimum", start=mark)
    mark = b.mark()
    result = subprocess.run([openssl, "s_client", "-connect", f"127.0.0.1:{port}", "-tls1_3", "-CAfile",
                             str(pki.ca_cert), "-ign_eof"], input=b"", capture_output=True, timeout=TIMEOUT)
    assert b"certificate required" in result.stdout + result.stderr
    b.wait_for_log("no client certificate", start=mark)


def test_paho_mutual_tls_and_subject_username(pki, tmp_path, broker):
    mqtt = require_module("paho.mqtt.client")
    port = free_port()
    acl = tmp_path / "acl"
    acl.write_text("user CN=paho-client,O=Fleet\ntopic readwrite fleet/#\n")
    b = broker(f"listener {port} 127.0.0.1\ncafile {pki.ca_cert}\ncertfile {pki.server_ec_cert}\n"
               f"keyfile {pki.server_ec_key}\nrequire_certificate true\nuse_subject_as_username true\n"
               f"acl_file {acl}\n", port)
    from cryptography.x509.oid import NameOID
    cert, key = pki.client("paho-client", key_type="ec", subject=((NameOID.ORGANIZATION_NAME, "Fleet"),))
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.tls_set(ca_certs=str(pki.ca_cert), certfile=str(cert), keyfile=str(key))
    results = {}
    import threading
    connected, got = threading.Event(), threading.Event()
    client.on_connect = lambda c, u, f, rc, p=None: (results.setdefault("rc", rc), connected.set())
    client.on_message = lambda c, u, m: (results.setdefault("msg", m.payload), got.set())
    client.connect("localhost", port)
    client.loop_start()
    try:
        assert connected.wait(TIMEOUT) and results["rc"] == 0
        client.subscribe("fleet/#")
        b.wait_for_log("fleet/#")
        client.publish("fleet/1", b"hi")
        assert got.wait(TIMEOUT) and results["msg"] == b"hi"
        b.wait_for_log("u'CN=paho-client,O=Fleet'")
    finally:
        client.loop_stop()
        client.disconnect()


def test_identity_from_san_uri_as_username_and_clientid(pki, tmp_path, broker):
    port = free_port()
    b = broker(f"listener {port} 127.0.0.1\ncafile {pki.ca_cert}\ncertfile {pki.server_cert}\n"
               f"keyfile {pki.server_key}\nrequire_certificate true\ncert_identity_as_username san_uri\n"
               f"cert_identity_as_clientid sha256\n", port)
    cert, key = pki.client("spiffe-device", key_type="ec", uris=["spiffe://example.org/device/7"])
    result = mosquitto("mosquitto_pub", port, "--cafile", pki.ca_cert, "--cert", cert, "--key", key,
                       "-t", "t", "-m", "x")
    assert result.returncode == 0, result.stderr
    from midge.security.identity import TlsInfo
    from cryptography.hazmat.primitives.serialization import Encoding
    fingerprint = TlsInfo("", "", peer_cert=pki.cert(cert).public_bytes(Encoding.DER)).sha256
    b.wait_for_log(f"as {fingerprint} ")
    b.wait_for_log("u'spiffe://example.org/device/7'")
    # a certificate without a URI SAN has no identity: CONNACK 5 (v3 "not authorised")
    cert, key = pki.client("no-uri", key_type="ec")
    result = mosquitto("mosquitto_pub", port, "--cafile", pki.ca_cert, "--cert", cert, "--key", key,
                       "-t", "t", "-m", "x")
    assert result.returncode != 0
    assert "not authorised" in (result.stderr + result.stdout).lower() or "refused" in result.stderr.lower()


def test_live_reload_by_file_watcher_and_sighup(pki, tmp_path, broker):
    port = free_port()
    crl = tmp_path / "crl.pem"
    crl.write_bytes(pki.crl().read_bytes())
    alice = pki.client("reload-alice", key_type="ec")
    b = broker(f"tls_watch_interval 0.2\nlistener {port} 127.0.0.1\ncafile {pki.ca_cert}\n"
               f"certfile {pki.server_cert}\nkeyfile {pki.server_key}\nrequire_certificate true\n"
               f"use_identity_as_username true\ncrlfile {crl}\n", port)
    exe = require_peer("mosquitto_sub")
    tls = ["--cafile", str(pki.ca_cert), "--cert", str(alice[0]), "--key", str(alice[1])]
    mark = b.mark()
    sub = subprocess.Popen([exe, "-h", "localhost", "-p", str(port), *tls, "-t", "keep/#", "-C", "1", "-W", "30"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        b.wait_for_log(" keep/#", start=mark)
        # a broken CRL is refused and the old context stays
        mark = b.mark()
        tmp = tmp_path / "crl.new"
        tmp.write_bytes(pki.crl(expired=True).read_bytes())
        os.replace(tmp, crl)
        b.wait_for_log("keeping the old", start=mark)
        assert mosquitto("mosquitto_pub", port, *tls, "-t", "t", "-m", "x").returncode == 0
        # a good CRL revoking alice is applied to new connections
        mark = b.mark()
        tmp.write_bytes(pki.crl(revoked=[alice]).read_bytes())
        os.replace(tmp, crl)
        b.wait_for_log("reloaded", start=mark)
        mark = b.mark()
        assert mosquitto("mosquitto_pub", port, *tls, "-t", "t", "-m", "x").returncode != 0
        b.wait_for_log("revoked", start=mark)
        # the open subscription was not dropped
        assert sub.poll() is None
        # SIGHUP also rebuilds (CRL back to empty: alice can connect again)
        crl.write_bytes(pki.crl().read_bytes())
        b.signal(signal.SIGHUP)
        mark = b.mark()
        other = pki.client("reload-bob", key_type="ec")
        result = mosquitto("mosquitto_pub", port, "--cafile", pki.ca_cert, "--cert", other[0], "--key", other[1],
                           "-t", "keep/1", "-m", "still-here")
        assert result.returncode == 0, result.stderr
        out, _ = sub.communicate(timeout=TIMEOUT)
        assert out.strip() == "still-here"
    finally:
        if sub.poll() is None:
            sub.kill()
            sub.wait()


def test_start_refused_with_clear_line(pki, tmp_path):
    port = free_port()
    b = start_midge(f"listener {port} 127.0.0.1\ncertfile {pki.server_cert}\nkeyfile {pki.server_key}\n"
                    f"tls_engine pkcs11\n", tmp_path, port, wait=False)
    assert b.proc.wait(TIMEOUT) != 0
    b.stop()
    assert "tls_engine" in b.output and "engine" in b.output
    b = start_midge(f"listener {port} 127.0.0.1\ncertfile {pki.server_cert}\nkeyfile {pki.server_key}\n"
                    f"require_certificate true\ncafile {pki.ca_cert}\ncrlfile {pki.crl(expired=True)}\n",
                    tmp_path, port, wait=False)
    assert b.proc.wait(TIMEOUT) != 0
    b.stop()
    assert "crlfile" in b.output and "expired on" in b.output
