"""midge's clients over TLS against Debian's mosquitto: client certificates, PSK,
and failures that say which check failed instead of "A TLS error occurred"."""

from __future__ import annotations

import re

import pytest

from tests.brokerproc import start_midge, start_mosquitto
from tests.certs import make_pki
from tests.client.tools import distinct_ports, finish, midge, mosquitto, run, start_subscriber


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_pki(tmp_path_factory.mktemp("client-pki"))


@pytest.fixture(scope="module", params=["mosquitto", "midge"])
def tls_broker(request, tmp_path_factory, pki):
    """Certificate listener (client certificate required), PSK listener, a listener
    with an expired certificate and one whose certificate names another host;
    Debian's mosquitto, then midge."""
    tmp = tmp_path_factory.mktemp(f"tls-{request.param}")
    cert_port, psk_port, expired_port, other_name_port = distinct_ports(4)
    (tmp / "psk").write_text("alice:deadbeef00112233\n")
    expired_cert, expired_key = pki.server("localhost", expired=True)
    other_cert, other_key = name_only_certificate(pki, tmp, "broker.example")
    config = f"""user root
log_dest stderr
log_type all
per_listener_settings false
allow_anonymous true
listener {cert_port} 127.0.0.1
cafile {pki.ca_cert}
certfile {pki.server_cert}
keyfile {pki.server_key}
require_certificate true
listener {psk_port} 127.0.0.1
psk_hint hint
psk_file {tmp / "psk"}
listener {expired_port} 127.0.0.1
cafile {pki.ca_cert}
certfile {expired_cert}
keyfile {expired_key}
listener {other_name_port} 127.0.0.1
cafile {pki.ca_cert}
certfile {other_cert}
keyfile {other_key}
"""
    start = start_mosquitto if request.param == "mosquitto" else start_midge
    broker = start(config, tmp, cert_port)
    broker.cert_port, broker.psk_port, broker.expired_port = cert_port, psk_port, expired_port
    broker.other_name_port = other_name_port
    yield broker
    broker.stop()


def name_only_certificate(pki, directory, dns_name):
    """A server certificate (signed by the test CA) for `dns_name` only: no localhost, no IPs."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    ca = pki.authorities["ca"]
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, dns_name)]))
            .issuer_name(ca.cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(dns_name)]), critical=False)
            .sign(ca.key, hashes.SHA256()))
    cert_path, key_path = directory / "name-only.crt", directory / "name-only.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def cert_args(pki, port, host="localhost"):
    cert, key = pki.client("alice")
    return ["-h", host, "-p", str(port), "--cafile", str(pki.ca_cert), "--cert", str(cert), "--key", str(key)]


def test_client_certificates_both_ways(tls_broker, pki):
    args = cert_args(pki, tls_broker.cert_port)
    sub = start_subscriber(tls_broker, midge("sub", *args, "-t", "tls/#", "-C", "2", "-v"), "tls-midge-sub")
    assert run(mosquitto("pub", *args, "-t", "tls/a", "-m", "from mosquitto")).returncode == 0
    result = run(midge("pub", *args, "-t", "tls/b", "-m", "from midge", "-q", "1"))
    assert result.returncode == 0, result.stderr
    rc, out, err = finish(sub)
    assert (rc, out) == (0, b"tls/a from mosquitto\ntls/b from midge\n"), err


def test_psk_both_ways(tls_broker):
    args = ["-p", str(tls_broker.psk_port), "--psk", "deadbeef00112233", "--psk-identity", "alice"]
    sub = start_subscriber(tls_broker, mosquitto("sub", *args, "-t", "psk", "-C", "1"), "psk-mosq-sub")
    result = run(midge("pub", *args, "-t", "psk", "-m", "secret"))
    assert result.returncode == 0, result.stderr
    assert finish(sub)[1] == b"secret\n"
    sub = start_subscriber(tls_broker, midge("sub", *args, "-t", "psk", "-C", "1"), "psk-midge-sub")
    assert run(mosquitto("pub", *args, "-t", "psk", "-m", "back")).returncode == 0
    assert finish(sub)[1] == b"back\n"


def test_wrong_psk_is_reported(tls_broker):
    result = run(midge("pub", "-p", str(tls_broker.psk_port), "--psk", "0badc0de", "--psk-identity", "alice",
                       "-t", "psk", "-m", "x"))
    assert result.returncode == 1
    assert result.stderr.startswith(b"TLS error")


def test_host_name_mismatch_names_the_host_and_certificate(tls_broker, pki):
    result = run(midge("pub", "-h", "localhost", "-p", str(tls_broker.other_name_port),
                       "--cafile", str(pki.ca_cert), "-t", "a", "-m", "x"))
    assert result.returncode == 1
    assert b"not valid for the host name 'localhost'" in result.stderr
    assert b"names broker.example" in result.stderr


def test_insecure_skips_only_the_host_name(tls_broker, pki):
    args = ["-h", "localhost", "-p", str(tls_broker.other_name_port), "--cafile", str(pki.ca_cert)]
    result = run(midge("pub", *args, "--insecure", "-t", "a", "-m", "x"))
    assert result.returncode == 0, result.stderr
    # The chain is still verified: an untrusted CA fails even with --insecure.
    result = run(midge("pub", *args[:-1], str(pki.other_ca_cert), "--insecure", "-t", "a", "-m", "x"))
    assert result.returncode == 1


def test_untrusted_ca_is_reported(tls_broker, pki):
    cert, key = pki.client("alice")
    result = run(midge("pub", "-p", str(tls_broker.cert_port), "--cafile", str(pki.other_ca_cert),
                       "--cert", str(cert), "--key", str(key), "-t", "a", "-m", "x"))
    assert result.returncode == 1
    assert b"issuer is not trusted" in result.stderr
    assert b"issuer CN=midge test root CA" in result.stderr


def test_expired_server_certificate_gives_the_date(tls_broker, pki):
    result = run(midge("pub", "-p", str(tls_broker.expired_port), "--cafile", str(pki.ca_cert),
                       "-t", "a", "-m", "x"))
    assert result.returncode == 1
    assert b"server certificate has expired" in result.stderr
    assert b"expired]" in result.stderr and b" UTC" in result.stderr


def test_missing_client_certificate_is_reported(tls_broker, pki):
    result = run(midge("pub", "-p", str(tls_broker.cert_port), "--cafile", str(pki.ca_cert),
                       "-t", "a", "-m", "x"))
    assert result.returncode == 1
    assert b"client certificate" in result.stderr or b"rejected" in result.stderr, result.stderr


def test_tls_engine_fails_clearly(tls_broker, pki):
    result = run(midge("pub", "-p", str(tls_broker.cert_port), "--cafile", str(pki.ca_cert),
                       "--tls-engine", "pkcs11", "-t", "a", "-m", "x"))
    assert result.returncode == 1
    assert b"cannot load OpenSSL engines" in result.stderr


def test_missing_cafile(tmp_path):
    result = run(midge("pub", "-p", "1", "--cafile", str(tmp_path / "nope.crt"), "-t", "a", "-m", "x"))
    assert result.returncode == 1
    assert b"not found" in result.stderr


def test_capath_tls_version_and_mqtts_url(tls_broker, pki, tmp_path):
    import shutil
    import subprocess

    capath = tmp_path / "cas"
    capath.mkdir()
    shutil.copy(pki.ca_cert, capath / "ca.crt")
    subprocess.run(["openssl", "rehash", str(capath)], check=True, capture_output=True)
    cert, key = pki.client("alice")
    client = ["--cert", str(cert), "--key", str(key)]
    port = tls_broker.cert_port
    for extra in (["--capath", str(capath)], ["--cafile", str(pki.ca_cert), "--tls-version", "tlsv1.3"],
                  ["--cafile", str(pki.ca_cert), "--tls-version", "tlsv1.2", "--ciphers", "ECDHE-RSA-AES128-GCM-SHA256"]):
        result = run(midge("pub", "-h", "localhost", "-p", str(port), *client, *extra, "-t", "a", "-m", "x"))
        assert result.returncode == 0, (extra, result.stderr)
    result = run(midge("pub", "-L", f"mqtts://localhost:{port}/a", "--cafile", str(pki.ca_cert), *client, "-m", "x"))
    assert result.returncode == 0, result.stderr


def test_help_lists_every_flag():
    for tool, flags in (("pub", ["-m", "-l", "--repeat", "--psk", "--tls-alpn"]),
                        ("sub", ["-F", "-W", "--pretty", "--remove-retained", "--random-filter"]),
                        ("rr", ["-e", "-W", "-F"])):
        result = run(midge(tool, "--help"))
        assert result.returncode == 1  # as mosquitto_pub --help
        for flag in flags:  # " -m : " or, with its long form, " -m, --message : "
            assert re.search(rf"\n {flag}(, --[\w-]+)? : ".encode(), result.stdout), (tool, flag)


def test_os_certificates_do_not_trust_a_private_ca(tls_broker, pki):
    cert, key = pki.client("alice")
    result = run(midge("pub", "-p", str(tls_broker.cert_port), "--tls-use-os-certs", "--cert", str(cert),
                       "--key", str(key), "-t", "a", "-m", "x"))
    assert result.returncode == 1
    assert b"TLS error: the server certificate's issuer is not trusted" in result.stderr
