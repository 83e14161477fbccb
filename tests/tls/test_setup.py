"""Listener TLS options that cannot work are refused at start-up, naming the option."""

import subprocess

import pytest

from midge.server.tls_context import OPENSSL_TLS13_SUITES, TlsListenerContext, TlsSetupError
from tests.peers import require_peer
from tests.tls.memory import Pair, client_context, listener


def refused(lst) -> TlsSetupError:
    with pytest.raises(TlsSetupError) as info:
        TlsListenerContext.from_listener(lst, None, None)
    return info.value


@pytest.mark.parametrize("option,value,words", [
    ("tls_engine", "pkcs11", "engine"),
    ("tls_keyform", "engine", "engine"),
    ("tls_engine_kpass_sha1", "a" * 40, "engine"),
    ("tls_version", "TLSv1.2", "Unsupported tls_version"),
    ("ciphers", "NOT-A-CIPHER", "no usable cipher"),
    ("ciphers_tls1_3", "TLS_AES_128_GCM_SHA256", "cannot set TLS 1.3 ciphersuites"),
    ("ciphers_tls1_3", "TLS_FOO", "unknown TLS 1.3 ciphersuite"),
    ("cafile", "/nonexistent/ca.crt", "cannot read '/nonexistent/ca.crt'"),
    ("capath", "/nonexistent", "not a directory"),
    ("crlfile", "/nonexistent/crl.pem", "cannot read"),
    ("dhparamfile", "/nonexistent/dh.pem", "cannot read"),
    ("crl_check", "all", None),
])
def test_bad_option_names_itself(pki, option, value, words):
    extra = {"crlfile": str(pki.crl())} if option == "crl_check" else {}
    error = refused(listener(pki, require_certificate=True, **{option: value}, **extra))
    shown = option.replace("ciphers_tls1_3", "ciphers_tls1.3")
    assert str(error).startswith(f"listener 8883: {shown}: ")
    if words:
        assert words in str(error)


def test_default_tls13_suites_accepted(pki):
    TlsListenerContext.from_listener(listener(pki, ciphers_tls1_3=OPENSSL_TLS13_SUITES), None, None)


def test_certfile_without_keyfile_refused(pki):
    assert "keyfile" in str(refused(listener(pki, keyfile=None)))


def test_require_certificate_without_ca_refused(pki):
    error = refused(listener(pki, require_certificate=True, cafile=None))
    assert error.option == "require_certificate"


def test_key_not_matching_certificate(pki):
    error = refused(listener(pki, keyfile=str(pki.server_ec_key)))
    assert error.option == "keyfile" and "not the private key" in str(error)


def test_expired_crl_refused_with_date(pki):
    error = refused(listener(pki, require_certificate=True, crlfile=str(pki.crl(expired=True))))
    assert error.option == "crlfile" and "expired on" in str(error)


def test_garbage_crl_refused(pki, tmp_path):
    bad = tmp_path / "crl.pem"
    bad.write_text("hello")
    assert "not a PEM or DER CRL" in str(refused(listener(pki, require_certificate=True, crlfile=str(bad))))


def test_encrypted_key_needs_password_file(pki, tmp_path):
    cert, key = pki.server("localhost")
    # re-encrypt the server key
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.serialization import load_pem_private_key
    private = load_pem_private_key(key.read_bytes(), None)
    encrypted = tmp_path / "server-enc.key"
    encrypted.write_bytes(private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                serialization.BestAvailableEncryption(b"s3cret")))
    error = refused(listener(pki, keyfile=str(encrypted)))
    assert error.option == "keyfile" and "keyfile_password_file" in str(error)
    wrong = tmp_path / "wrong"
    wrong.write_text("nope\n")
    assert refused(listener(pki, keyfile=str(encrypted), keyfile_password_file=str(wrong))).option == \
        "keyfile_password_file"
    right = tmp_path / "right"
    right.write_text("s3cret\n")
    ctx = TlsListenerContext.from_listener(listener(pki, keyfile=str(encrypted), keyfile_password_file=str(right)),
                                           None, None)
    assert Pair(ctx.new_stage(), client_context(pki)).handshake()
    assert str(right) in ctx.files


def test_dhparamfile_and_capath(pki, tmp_path):
    openssl = require_peer("openssl")
    dh = tmp_path / "dh.pem"
    subprocess.run([openssl, "dhparam", "-out", str(dh), "-dsaparam", "2048"], check=True, capture_output=True)
    capath = tmp_path / "capath"
    capath.mkdir()
    (capath / "ca.pem").write_bytes(pki.ca_cert.read_bytes())
    subprocess.run([openssl, "rehash", str(capath)], check=True, capture_output=True)
    lst = listener(pki, dhparamfile=str(dh), cafile=None, capath=str(capath), require_certificate=True,
                   ciphers="DHE-RSA-AES128-GCM-SHA256")
    ctx = TlsListenerContext.from_listener(lst, None, None)
    import ssl
    p = Pair(ctx.new_stage(), client_context(pki, pki.client("via-capath"), version=ssl.TLSVersion.TLSv1_2,
                                             ciphers="DHE-RSA-AES128-GCM-SHA256"))
    assert p.handshake(), (p.client_error, p.stage.failure)
    assert p.stage.info.cipher == "DHE-RSA-AES128-GCM-SHA256"
    assert p.stage.info.common_name == "via-capath"


def test_files_listed_for_the_watcher(pki):
    crl = pki.crl()
    ctx = TlsListenerContext.from_listener(listener(pki, require_certificate=True, crlfile=str(crl)), None, None)
    assert ctx.files == [str(pki.server_cert), str(pki.server_key), str(pki.ca_cert), str(crl)]


def test_crl_not_signed_by_its_ca_refused(pki, tmp_path):
    """A CRL naming the root as issuer but signed by another key."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from tests.certs import NOW, DAY
    forged = (x509.CertificateRevocationListBuilder().issuer_name(pki.cert(pki.ca_cert).subject)
              .last_update(NOW - DAY).next_update(NOW + DAY).sign(ec.generate_private_key(ec.SECP256R1()),
                                                                  hashes.SHA256()))
    path = tmp_path / "forged.pem"
    path.write_bytes(forged.public_bytes(serialization.Encoding.PEM))
    error = refused(listener(pki, require_certificate=True, crlfile=str(path)))
    assert error.option == "crlfile" and "not signed by" in str(error)
