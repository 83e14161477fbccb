"""The TLS stage over MemoryBIOs against a stdlib client: alerts, identities, diagnostics."""

import ssl

import pytest

from midge.server.tls_context import TlsListenerContext
from tests.tls.memory import Pair, client_context, listener

V12, V13 = ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3
VERSIONS = pytest.mark.parametrize("version", [V12, V13], ids=["tls1.2", "tls1.3"])


def pair(lst, client_ctx, psk_lookup=None):
    ctx = TlsListenerContext.from_listener(lst, psk_lookup, None)
    return Pair(ctx.new_stage("127.0.0.1:50000"), client_ctx)


@VERSIONS
def test_server_only_tls_and_application_data(pki, version):
    p = pair(listener(pki), client_context(pki, version=version))
    assert p.handshake()
    info = p.stage.info
    assert info.version == {V12: "TLSv1.2", V13: "TLSv1.3"}[version]
    assert info.peer_cert is None and info.psk_identity is None and info.listener == "8883"
    assert p.client_send(b"\x10\x0c\x00\x04MQTT") == b"\x10\x0c\x00\x04MQTT"
    assert p.server_send(b"\x20\x02\x00\x00") == b"\x20\x02\x00\x00"


def test_require_certificate_false_never_asks_for_one(pki):
    p = pair(listener(pki), client_context(pki, cert=pki.client("unasked")))
    assert p.handshake()
    assert p.stage.info.peer_cert is None  # as Mosquitto: SSL_VERIFY_NONE, no CertificateRequest


@VERSIONS
def test_mutual_tls_identity(pki, version):
    p = pair(listener(pki, require_certificate=True), client_context(pki, pki.client("alice"), version))
    assert p.handshake()
    assert p.stage.info.common_name == "alice"


@VERSIONS
def test_intermediate_issued_client_sends_chain(pki, version):
    cert = pki.client("inter", issuer="intermediate")
    p = pair(listener(pki, require_certificate=True), client_context(pki, cert, version))
    assert p.handshake()
    assert p.stage.info.common_name == "inter"


def test_intermediate_without_chain_unknown_ca_with_hint(pki):
    cert = pki.client("lonely", issuer="intermediate", with_chain=False)
    p = pair(listener(pki, require_certificate=True), client_context(pki, cert, V12))
    assert not p.handshake()
    assert "unknown ca" in str(p.client_error).lower()
    assert p.stage.failure.kind == "unknown_ca"
    assert "intermediate" in p.stage.failure.reason
    # with the intermediate in cafile it works (cafile holds root + intermediate)
    p = pair(listener(pki, require_certificate=True, cafile=str(pki.ca_bundle)), client_context(pki, cert, V12))
    assert p.handshake()


CLIENT_FAILURES = [
    # (client cert options, expected alert text (client side), failure kind, words in the reason)
    ({"name": "expired", "expired": True}, "certificate expired", "expired", "expired on"),
    ({"name": "future", "not_yet_valid": True}, "bad certificate", "not_yet_valid", "not valid yet"),
    ({"name": "stranger", "issuer": "other", "key_type": "ec"}, "unknown ca", "unknown_ca", "CN=some other CA"),
]


@VERSIONS
@pytest.mark.parametrize("options,alert,kind,words", CLIENT_FAILURES, ids=[c[2] for c in CLIENT_FAILURES])
def test_refused_client_certificates(pki, version, options, alert, kind, words):
    options = dict(options)
    cert = pki.client(options.pop("name"), **options)
    p = pair(listener(pki, require_certificate=True), client_context(pki, cert, version))
    assert not p.handshake()
    assert alert in str(p.client_error).lower()
    failure = p.stage.failure
    assert failure.kind == kind and words in failure.reason
    assert failure.side == "midge"
    line = failure.log_line()
    assert "127.0.0.1:50000" in line and "listener 8883" in line


@VERSIONS
def test_no_client_certificate(pki, version):
    p = pair(listener(pki, require_certificate=True), client_context(pki, version=version))
    assert not p.handshake()
    expected = "handshake failure" if version == V12 else "certificate required"
    assert expected in str(p.client_error).lower()
    assert p.stage.failure.kind == "no_certificate"


@VERSIONS
def test_revoked_by_crl(pki, version):
    bad = pki.client("revoked-one")
    good = pki.client("still-good")
    crl = pki.crl(revoked=[bad])
    lst = listener(pki, require_certificate=True, crlfile=str(crl))
    p = pair(lst, client_context(pki, bad, version))
    assert not p.handshake()
    assert "certificate revoked" in str(p.client_error).lower()
    assert p.stage.failure.kind == "revoked"
    assert f"{pki.cert(bad).serial_number:X}" in p.stage.failure.reason
    assert pair(lst, client_context(pki, good, version)).handshake()


def test_crl_directory_and_multiple_crls_in_one_file(pki, tmp_path):
    bad = pki.client("revoked-by-intermediate", issuer="intermediate")
    root_crl = pki.crl().read_bytes()
    inter_crl = pki.crl(revoked=[bad], issuer="intermediate").read_bytes()
    both = tmp_path / "both.pem"
    both.write_bytes(root_crl + inter_crl)
    crldir = tmp_path / "crls"
    crldir.mkdir()
    (crldir / "root.pem").write_bytes(root_crl)
    (crldir / "inter.pem").write_bytes(inter_crl)
    (crldir / "README").write_text("not a CRL")
    for crlfile in (both, crldir):
        for crl_check in ("leaf", "chain"):
            lst = listener(pki, require_certificate=True, crlfile=str(crlfile), crl_check=crl_check)
            p = pair(lst, client_context(pki, bad, V12))
            assert not p.handshake() and p.stage.failure.kind == "revoked"
            ok = pki.client("fine-by-intermediate", issuer="intermediate")
            assert pair(lst, client_context(pki, ok, V12)).handshake()


def test_crl_check_chain_needs_crl_from_every_ca(pki):
    ok = pki.client("fine-by-intermediate", issuer="intermediate")
    root_only = pki.crl()
    lst = listener(pki, require_certificate=True, crlfile=str(root_only), crl_check="chain")
    p = pair(lst, client_context(pki, ok, V12))
    assert not p.handshake()
    assert p.stage.failure.kind == "crl_missing" and "crl_check chain" in p.stage.failure.reason


def test_plaintext_mqtt_and_http_to_tls_port(pki):
    stage = TlsListenerContext.from_listener(listener(pki), None, None).new_stage("127.0.0.1:1")
    assert stage.feed(b"\x10\x10\x00\x04MQTT\x04\x02\x00\x3c\x00\x00") == b""
    assert stage.failure.kind == "plaintext_mqtt" and stage.failure.side == "client"
    stage = TlsListenerContext.from_listener(listener(pki), None, None).new_stage("127.0.0.1:1")
    stage.feed(b"GET /mqtt HTTP/1.1\r\n")
    assert stage.failure.kind == "http"


def test_wrong_version_refused(pki):
    p = pair(listener(pki, tls_version="tlsv1.3"), client_context(pki, version=V12))
    assert not p.handshake()
    assert "protocol version" in str(p.client_error).lower()
    assert p.stage.failure.kind == "protocol_version"


def test_client_rejects_server_certificate(pki):
    p = pair(listener(pki), client_context(None and pki, version=V12))
    p.client.context.verify_mode  # noqa: B018 (client without our CA below)
    strict = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    strict.load_verify_locations(pki.other_ca_cert)
    strict.maximum_version = V12
    p = pair(listener(pki), strict)
    assert not p.handshake()
    assert p.stage.failure.side == "client"
    assert p.stage.failure.kind == "client_refused_server"


def test_close_queues_close_notify(pki):
    p = pair(listener(pki), client_context(pki))
    assert p.handshake()
    p.stage.close()
    alert = p.stage.data_to_send()
    assert alert
    p.cin.write(alert)
    assert p.client.read(1) == b""  # the client sees a clean close_notify


@VERSIONS
@pytest.mark.parametrize("key_type", ["rsa", "ec"])
def test_psk_listener(version, key_type, pki):
    keys = {"sensor-1": bytes.fromhex("deadbeef" * 4)}
    lst = listener(psk_hint="midge", psk_file="psk.txt")
    p = pair(lst, client_context(version=version, psk=("sensor-1", keys["sensor-1"]),
                                 ciphers="PSK" if version == V12 else None), keys.get)
    assert p.handshake(), (p.client_error, p.stage.failure)
    assert p.stage.info.psk_identity == "sensor-1"
    assert p.stage.info.version == {V12: "TLSv1.2", V13: "TLSv1.3"}[version]


@VERSIONS
def test_psk_identity_unknown(version):
    lst = listener(psk_hint="midge")
    p = pair(lst, client_context(version=version, psk=("nobody", b"\x01" * 16),
                                 ciphers="PSK" if version == V12 else None), {}.get)
    assert not p.handshake()
    assert p.stage.failure.kind == "psk_identity_unknown"
    assert "PSK identity 'nobody' unknown" in p.stage.failure.reason


def test_psk_identity_bound_to_its_own_connection():
    """Interleaved handshakes: each stage gets the identity its own client sent."""
    keys = {f"id-{n}": bytes([n]) * 16 for n in range(1, 6)}
    ctx = TlsListenerContext.from_listener(listener(psk_hint="midge"), keys.get, None)
    pairs = [Pair(ctx.new_stage(f"127.0.0.1:{n}"), client_context(version=V13, psk=(f"id-{n}", keys[f"id-{n}"])))
             for n in range(1, 6)]
    # step every handshake one flight at a time, in reverse order, so they interleave
    for _ in range(4):
        for p in reversed(pairs):
            try:
                p.client.do_handshake()
            except ssl.SSLWantReadError:
                pass
            p._pump()
    for n, p in enumerate(pairs, start=1):
        assert p.stage.handshake_complete
        assert p.stage.info.psk_identity == f"id-{n}"


def test_psk_tls13_false_is_mosquittos_tls12_only():
    keys = {"a": b"\x02" * 16}
    lst = listener(psk_hint="midge", psk_tls13=False, psk_file="psk.txt")
    p = pair(lst, client_context(version=V13, psk=("a", keys["a"])), keys.get)
    assert not p.handshake()
    p = pair(lst, client_context(version=V12, psk=("a", keys["a"]), ciphers="PSK"), keys.get)
    assert p.handshake() and p.stage.info.version == "TLSv1.2"


def test_certificates_and_psk_on_one_listener(pki):
    keys = {"a": b"\x03" * 16}
    lst = listener(pki, psk_hint="midge", require_certificate=False)
    p = pair(lst, client_context(version=V12, psk=("a", keys["a"]), ciphers="PSK"), keys.get)
    assert p.handshake() and p.stage.info.psk_identity == "a"
    p = pair(lst, client_context(pki, version=V13), keys.get)
    assert p.handshake() and p.stage.info.psk_identity is None


@VERSIONS
def test_psk_with_require_certificate_is_refused_like_openssl_does(pki, version):
    """OpenSSL (so Mosquitto too) insists on a certificate when require_certificate is true."""
    keys = {"a": b"\x03" * 16}
    lst = listener(pki, psk_hint="midge", require_certificate=True)
    p = pair(lst, client_context(version=version, psk=("a", keys["a"]),
                                 ciphers="PSK" if version == V12 else None), keys.get)
    assert not p.handshake()
    assert p.stage.failure.kind == "no_certificate"
    p = pair(lst, client_context(pki, pki.client("alice"), version), keys.get)
    assert p.handshake() and p.stage.info.common_name == "alice"


def test_psk_identity_survives_tls12_session_resumption():
    keys = {"resumer": b"\x07" * 16}
    ctx = TlsListenerContext.from_listener(listener(psk_hint="midge"), keys.get, None)
    client_ctx = client_context(version=V12, psk=("resumer", keys["resumer"]), ciphers="PSK")
    first = Pair(ctx.new_stage(), client_ctx)
    assert first.handshake() and first.stage.info.psk_identity == "resumer"
    second = Pair(ctx.new_stage(), client_ctx)
    second.client = client_ctx.wrap_bio(second.cin, second.cout, server_hostname="localhost",
                                        session=first.client.session)
    assert second.handshake()
    assert second.client.session_reused
    assert second.stage.info.psk_identity == "resumer"


def test_success_line_names_version_cipher_and_identity(pki):
    from midge.server.tls_diagnostics import success_line
    p = pair(listener(pki, require_certificate=True), client_context(pki, pki.client("alice"), V13))
    assert p.handshake()
    line = success_line(p.stage.info, "127.0.0.1:5", "8883")
    assert line.startswith("TLS handshake with 127.0.0.1:5 on listener 8883: TLSv1.3 TLS_")
    assert "certificate CN=alice (sha256 " in line
