"""Certificate identities: CN, Mosquitto's RFC 2253 subject string, SANs, fingerprint."""

import subprocess

import pytest
from cryptography.x509.oid import NameOID, ObjectIdentifier

from midge.config.model import ListenerConfig
from midge.config.options import CERT_IDENTITIES
from midge.security import identity
from midge.security.identity import TlsInfo, clientid_from_tls, username_from_tls
from tests.peers import require_peer

SUBJECTS = {
    "plain": (),
    "mosquitto-test-ca": ((NameOID.COUNTRY_NAME, "GB"), (NameOID.STATE_OR_PROVINCE_NAME, "Nottinghamshire"),
                          (NameOID.LOCALITY_NAME, "Nottingham"), (NameOID.ORGANIZATION_NAME, "Server"),
                          (NameOID.ORGANIZATIONAL_UNIT_NAME, "Production")),
    "email": ((NameOID.EMAIL_ADDRESS, "dev@example.com"), (NameOID.DOMAIN_COMPONENT, "example")),
    "specials": ((NameOID.ORGANIZATION_NAME, 'a,b+c"d\\e<f>g;h=i'), (NameOID.ORGANIZATIONAL_UNIT_NAME, "#lead"),
                 (NameOID.LOCALITY_NAME, " both ")),
    "non-ascii": ((NameOID.ORGANIZATION_NAME, "Jörg Ü"), (NameOID.LOCALITY_NAME, "東京")),
    "control": ((NameOID.ORGANIZATION_NAME, "tab\there"),),
    "unknown-oid": ((NameOID.USER_ID, "u1"), (NameOID.PSEUDONYM, "p"),),
    # OIDs OpenSSL has no short name for: printed as # and the hex of the value's DER
    "private-oid": ((ObjectIdentifier("1.3.6.1.4.1.55555.1"), "tag-x"),
                    (ObjectIdentifier("1.3.6.1.4.1.55555.2"), "long " * 40)),  # > 127 bytes
}


def info_for(cert_path, **kw):
    pem = cert_path.read_bytes()
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding
    der = x509.load_pem_x509_certificate(pem).public_bytes(Encoding.DER)
    return TlsInfo(version="TLSv1.3", cipher="TLS_AES_256_GCM_SHA384", peer_cert=der, **kw)


@pytest.fixture(params=["private", "public"])
def tag_path(request, monkeypatch):
    """Both ways of reading an attribute's string type: cryptography's private
    `NameAttribute._type` (in use) and the public DER fallback."""
    monkeypatch.setattr(identity, "_string_tag", getattr(identity, f"_string_tag_{request.param}"))
    return request.param


def test_the_private_cryptography_name_is_in_use_and_agrees():
    assert identity._private_tag_agrees()
    assert identity._string_tag is identity._string_tag_private


@pytest.mark.parametrize("kind", sorted(SUBJECTS))
def test_subject_string_matches_openssl_rfc2253(pki, kind, tag_path):
    openssl = require_peer("openssl")
    cn = "Jörg Ü" if kind == "non-ascii" else f"client {kind}"
    cert, _ = pki.client(cn, subject=SUBJECTS[kind], key_type="ec")
    expected = subprocess.run([openssl, "x509", "-in", str(cert), "-noout", "-subject", "-nameopt", "RFC2253"],
                              capture_output=True, text=True, check=True).stdout.strip()
    assert expected.startswith("subject=")
    assert info_for(cert).subject_string == expected[len("subject="):]


def test_bmp_string_subject_matches_openssl(tmp_path, tag_path):
    """openssl's `string_mask default` stores non-latin-1 text as BMPString (UTF-16)."""
    openssl = require_peer("openssl")
    config = tmp_path / "req.cnf"
    config.write_text("[req]\ndistinguished_name=dn\nstring_mask=default\nprompt=no\n[dn]\n")
    cert = tmp_path / "bmp.pem"
    subprocess.run([openssl, "req", "-new", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                    "-nodes", "-keyout", str(tmp_path / "bmp.key"), "-out", str(cert), "-days", "1",
                    "-subj", "/CN=東京 Ü/O=東京/C=GB", "-utf8", "-config", str(config)],
                   capture_output=True, check=True)
    expected = subprocess.run([openssl, "x509", "-in", str(cert), "-noout", "-subject", "-nameopt", "RFC2253"],
                              capture_output=True, text=True, check=True).stdout.strip()
    info = info_for(cert)
    assert info.subject_string == expected[len("subject="):] == r"C=GB,O=\E6\9D\B1\E4\BA\AC,CN=\E6\9D\B1\E4\BA\AC \C3\9C"
    assert info.common_name is None  # UTF-16 bytes are not UTF-8 without NUL: Mosquitto refuses it too


def test_non_ascii_common_name_escaped_like_mosquitto(pki):
    cert, _ = pki.client("Jörg Ü", key_type="ec")
    info = info_for(cert)
    assert info.subject_string == r"CN=J\C3\B6rg \C3\9C"
    assert info.common_name == "Jörg Ü"


def test_sans_and_fingerprint(pki):
    cert, _ = pki.client("device", key_type="ec", dns=["d1.example", "d2.example"], emails=["d@example.com"],
                         uris=["spiffe://example.org/device/42"], ips=["10.1.2.3", "::1"])
    info = info_for(cert)
    assert info.san_dns == ["d1.example", "d2.example"]
    assert info.san_email == ["d@example.com"]
    assert info.san_uri == ["spiffe://example.org/device/42"]
    assert info.san_ip == ["10.1.2.3", "::1"]
    fingerprint = subprocess.run([require_peer("openssl"), "x509", "-in", str(cert), "-noout", "-fingerprint",
                                  "-sha256"], capture_output=True, text=True, check=True).stdout
    assert info.sha256 == fingerprint.split("=", 1)[1].strip().replace(":", "").lower()
    assert len(info.sha256) == 64


def test_identity_kept_as_strings_not_as_a_parsed_certificate(pki):
    """A live connection keeps the identity it used, not the parsed certificate (~650 B)."""
    cert, _ = pki.client("device", key_type="ec", dns=["d1.example"])
    info = info_for(cert)
    assert info.common_name == "device" and info.san_dns == ["d1.example"]
    assert info.subject_string == "CN=device" and info.serial == info.certificate.serial_number
    kept = vars(info)
    assert "certificate" not in kept
    assert kept["common_name"] == "device" and kept["subject_string"] == "CN=device"


def listener(**options) -> ListenerConfig:
    return ListenerConfig(**options)


def test_username_rules(pki):
    cert, _ = pki.client("alice", key_type="ec", subject=((NameOID.ORGANIZATION_NAME, "Org"),),
                         uris=["spiffe://example.org/a"])
    info = info_for(cert)
    assert username_from_tls(listener(), info) is None
    assert username_from_tls(listener(use_identity_as_username=True), info) == "alice"
    assert username_from_tls(listener(use_subject_as_username=True), info) == "CN=alice,O=Org"
    # use_identity_as_username wins over use_subject_as_username, as in Mosquitto
    assert username_from_tls(listener(use_identity_as_username=True, use_subject_as_username=True), info) == "alice"
    assert username_from_tls(listener(cert_identity_as_username="san_uri"), info) == "spiffe://example.org/a"
    assert username_from_tls(listener(cert_identity_as_username="san_dns"), info) is None
    assert clientid_from_tls(listener(cert_identity_as_clientid="sha256"), info) == info.sha256
    assert clientid_from_tls(listener(), info) is None


def test_every_identity_kind_the_config_accepts_is_implemented(pki):
    cert, _ = pki.client("kinds", key_type="ec", dns=["k.example"], emails=["k@example.com"],
                         uris=["spiffe://example.org/k"], ips=["10.0.0.1"])
    info = info_for(cert)
    values = {kind: info.identity(kind) for kind in CERT_IDENTITIES}
    assert all(values.values()), values
    with pytest.raises(ValueError, match="expected one of"):
        info.identity("serial")


def test_psk_identity_is_the_username():
    info = TlsInfo(version="TLSv1.2", cipher="PSK-AES128-GCM-SHA256", psk_identity="sensor-1")
    assert username_from_tls(listener(use_identity_as_username=True), info) == "sensor-1"
    assert username_from_tls(listener(cert_identity_as_username="cn"), info) == "sensor-1"
    assert username_from_tls(listener(use_subject_as_username=True), info) is None


def test_no_certificate_no_identity():
    info = TlsInfo(version="TLSv1.3", cipher="TLS_AES_256_GCM_SHA384")
    assert username_from_tls(listener(use_identity_as_username=True), info) is None
    assert username_from_tls(listener(use_identity_as_username=True), None) is None
