"""The TLS stage against real TLS clients: mosquitto_sub/pub and openssl s_client.

Each negative case is asserted from the client's side (its error text) and from the
server's side (the TlsFailure the broker would log).
"""

import subprocess

import pytest

from tests.peers import require_peer
from tests.tls.memory import listener
from tests.tls.tinyserver import TinyTlsServer

TIMEOUT = 20


@pytest.fixture
def serve():
    servers = []

    def start(lst, psk_lookup=None):
        server = TinyTlsServer(lst, psk_lookup)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()


def sub(server, *args):
    exe = require_peer("mosquitto_sub")
    return subprocess.run([exe, "-h", "localhost", "-p", str(server.port), "-t", "tls/#", "-C", "1", "-W", "5",
                           *map(str, args)], capture_output=True, text=True, timeout=TIMEOUT)


def test_mosquitto_sub_mutual_tls_identity(pki, serve):
    server = serve(listener(pki, require_certificate=True))
    cert, key = pki.client("sub-client")
    result = sub(server, "--cafile", pki.ca_cert, "--cert", cert, "--key", key)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "sub-client"
    assert server.wait_for("infos").common_name == "sub-client"


@pytest.mark.parametrize("server_version,client_version", [("tlsv1.2", "tlsv1.2"), ("tlsv1.3", "tlsv1.2"),
                                                           ("tlsv1.3", "tlsv1.3")])
def test_mosquitto_sub_tls_version_is_a_minimum(pki, serve, server_version, client_version):
    server = serve(listener(pki, tls_version=server_version))
    result = sub(server, "--cafile", pki.ca_cert, "--tls-version", client_version)
    assert result.returncode == 0, result.stderr
    assert server.wait_for("infos").version == "TLSv1.3"


def test_ciphers_for_tls12(pki, serve):
    server = serve(listener(pki, ciphers="ECDHE-RSA-AES128-GCM-SHA256"))
    result = s_client(server, "-tls1_2", "-CAfile", pki.ca_cert, "-cipher", "ECDHE-RSA-AES128-GCM-SHA256",
                      data=b"\x10\x0c\x00\x04MQTT\x04\x02\x00\x3c\x00\x00")
    assert b"ECDHE-RSA-AES128-GCM-SHA256" in result.stdout
    assert server.wait_for("infos").cipher == "ECDHE-RSA-AES128-GCM-SHA256"
    server2 = serve(listener(pki, ciphers="ECDHE-RSA-AES128-GCM-SHA256"))
    s_client(server2, "-tls1_2", "-CAfile", pki.ca_cert, "-cipher", "AES256-SHA256")
    assert server2.wait_for("failures").kind == "no_shared_cipher"
    # mosquitto_sub --ciphers (TLS <= 1.2 list) against a 1.2-only PSK listener
    keys = {"c": b"\x01\x02\x03\x04"}
    lst = listener(psk_hint="h", psk_tls13=False, ciphers="PSK-AES128-CBC-SHA256",
                   psk_file="psk")
    server3 = serve(lst, keys.get)
    result = sub(server3, "--psk", "01020304", "--psk-identity", "c", "--ciphers", "PSK-AES128-CBC-SHA256")
    assert result.returncode == 0, result.stderr
    assert server3.wait_for("infos").cipher == "PSK-AES128-CBC-SHA256"


def test_mosquitto_sub_ec_server_and_insecure(pki, serve):
    server = serve(listener(pki, certfile=str(pki.server_ec_cert), keyfile=str(pki.server_ec_key)))
    exe = require_peer("mosquitto_sub")
    # connect by 127.0.0.1 (in the SAN) and with --insecure to a name that is not
    result = subprocess.run([exe, "-h", "127.0.0.1", "-p", str(server.port), "-t", "t", "-C", "1", "-W", "5",
                             "--cafile", str(pki.ca_cert)], capture_output=True, text=True, timeout=TIMEOUT)
    assert result.returncode == 0, result.stderr
    assert server.wait_for("infos").cipher.startswith(("TLS_", "ECDHE-ECDSA"))


NEGATIVE = [
    # (cert options or None, client-side words, server failure kind)
    (None, "", "no_certificate"),
    ({"name": "mq-expired", "expired": True}, "", "expired"),
    ({"name": "mq-stranger", "issuer": "other", "key_type": "ec"}, "", "unknown_ca"),
]


@pytest.mark.parametrize("options,words,kind", NEGATIVE, ids=[n[2] for n in NEGATIVE])
def test_mosquitto_sub_refused(pki, serve, options, words, kind):
    server = serve(listener(pki, require_certificate=True))
    args = ["--cafile", pki.ca_cert]
    if options is not None:
        options = dict(options)
        cert, key = pki.client(options.pop("name"), **options)
        args += ["--cert", cert, "--key", key]
    result = sub(server, *args)
    assert result.returncode != 0
    assert "tls/identity" not in result.stdout  # no MQTT before a failed handshake
    assert server.wait_for("failures").kind == kind


def test_mosquitto_sub_revoked(pki, serve):
    cert, key = pki.client("mq-revoked")
    server = serve(listener(pki, require_certificate=True, crlfile=str(pki.crl(revoked=[cert]))))
    result = sub(server, "--cafile", pki.ca_cert, "--cert", cert, "--key", key)
    assert result.returncode != 0
    assert server.wait_for("failures").kind == "revoked"


def test_mosquitto_sub_wrong_server_ca(pki, serve):
    server = serve(listener(pki))
    result = sub(server, "--cafile", pki.other_ca_cert)
    assert result.returncode != 0
    failure = server.wait_for("failures")
    assert failure.side == "client" and failure.kind == "client_refused_server"


@pytest.mark.parametrize("tls13", [True, False])
def test_mosquitto_sub_psk(serve, tls13):
    keys = {"psk-user": bytes.fromhex("0a1b2c3d4e5f")}
    lst = listener(psk_hint="hint", psk_tls13=tls13, psk_file="psk")
    server = serve(lst, keys.get)
    result = sub(server, "--psk", "0a1b2c3d4e5f", "--psk-identity", "psk-user")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "psk-user"
    info = server.wait_for("infos")
    assert info.psk_identity == "psk-user"


def test_mosquitto_sub_wrong_psk(serve):
    server = serve(listener(psk_hint="hint"), {"psk-user": b"\x01\x02"}.get)
    result = sub(server, "--psk", "0102", "--psk-identity", "intruder")
    assert result.returncode != 0
    failure = server.wait_for("failures")
    assert failure.kind == "psk_identity_unknown" and "'intruder'" in failure.reason


def test_mosquitto_pub_plaintext_to_tls_port(pki, serve):
    server = serve(listener(pki))
    exe = require_peer("mosquitto_pub")
    result = subprocess.run([exe, "-h", "127.0.0.1", "-p", str(server.port), "-t", "t", "-m", "x"],
                            capture_output=True, text=True, timeout=TIMEOUT)
    assert result.returncode != 0
    failure = server.wait_for("failures")
    assert failure.kind == "plaintext_mqtt" and "plaintext MQTT" in str(failure)


def s_client(server, *args, data=b""):
    exe = require_peer("openssl")
    return subprocess.run([exe, "s_client", "-connect", f"127.0.0.1:{server.port}", "-servername", "localhost",
                           *map(str, args)], input=data, capture_output=True, timeout=TIMEOUT)


@pytest.mark.parametrize("version,alert", [("-tls1_2", "handshake failure"), ("-tls1_3", "certificate required")])
def test_openssl_s_client_no_certificate_alerts(pki, serve, version, alert):
    server = serve(listener(pki, require_certificate=True))
    result = s_client(server, version, "-CAfile", pki.ca_cert, "-ign_eof")
    assert alert in (result.stdout + result.stderr).decode()
    assert server.wait_for("failures").kind == "no_certificate"


def test_openssl_s_client_revoked_alert(pki, serve):
    cert, key = pki.client("ossl-revoked", key_type="ec")
    server = serve(listener(pki, require_certificate=True, crlfile=str(pki.crl(revoked=[cert]))))
    result = s_client(server, "-CAfile", pki.ca_cert, "-cert", cert, "-key", key, "-ign_eof")
    assert "certificate revoked" in (result.stdout + result.stderr).decode()
    assert server.wait_for("failures").kind == "revoked"


def test_openssl_s_client_psk_tls13(serve):
    server = serve(listener(psk_hint="hint"), {"ossl": bytes.fromhex("1234abcd")}.get)
    result = s_client(server, "-tls1_3", "-psk_identity", "ossl", "-psk", "1234abcd", data=b"\x10\x0c\x00\x04MQTT\x04\x02\x00\x3c\x00\x00")
    text = (result.stdout + result.stderr).decode(errors="replace")
    assert "TLSv1.3" in text
    info = server.wait_for("infos")
    assert info.psk_identity == "ossl" and info.version == "TLSv1.3"


def test_openssl_s_client_old_version_refused(pki, serve):
    server = serve(listener(pki, tls_version="tlsv1.3"))
    result = s_client(server, "-tls1_2", "-CAfile", pki.ca_cert)
    assert "protocol version" in (result.stdout + result.stderr).decode()
    assert server.wait_for("failures").kind == "protocol_version"
