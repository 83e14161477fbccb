"""Certificates and PSK for the TLS scenarios, generated with `cryptography`.

One CA per key type signs a server certificate (SAN 127.0.0.1 / localhost) and a
client certificate, so a scenario measures RSA-2048 or P-256 end to end. Files are
written once into a directory and reused by both brokers in the same run.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

PSK_IDENTITY = "bench"
PSK_KEY_HEX = "6d69646765626568636e6d61726b6b6579"


@dataclass(frozen=True)
class PkiFiles:
    cafile: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def _new_key(kind: str):
    if kind == "rsa2048":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if kind == "p256":
        return ec.generate_private_key(ec.SECP256R1())
    raise ValueError(f"unknown key type {kind!r}")


def _name(common_name: str) -> x509.Name:
    return x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "midge bench"),
        x509.NameAttribute(NameOID.COMMON_NAME, common_name),
    ])


def _certificate(subject_key, subject: x509.Name, issuer_key, issuer: x509.Name,
                 *, ca: bool, usage=None, san=None) -> x509.Certificate:
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(subject_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                          content_commitment=False, key_encipherment=False,
                          data_encipherment=False, key_agreement=False,
                          encipher_only=False, decipher_only=False),
            critical=True)
    if usage is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    if san is not None:
        builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _write(path: Path, cert=None, key=None) -> None:
    if cert is not None:
        path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    else:
        path.write_bytes(key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()))


def make_pki(directory: Path, kind: str) -> PkiFiles:
    """Write CA, server and client certificates of key type `kind` into `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    files = PkiFiles(*(directory / f"{kind}-{n}.pem" for n in
                       ("ca", "server", "server-key", "client", "client-key")))
    if all(p.exists() for p in vars(files).values()):
        return files
    ca_key = _new_key(kind)
    ca_name = _name(f"midge bench CA {kind}")
    ca = _certificate(ca_key, ca_name, ca_key, ca_name, ca=True)
    server_key = _new_key(kind)
    server = _certificate(server_key, _name("localhost"), ca_key, ca_name, ca=False,
                          usage=ExtendedKeyUsageOID.SERVER_AUTH,
                          san=[x509.DNSName("localhost"),
                               x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
    client_key = _new_key(kind)
    client = _certificate(client_key, _name("bench-client"), ca_key, ca_name, ca=False,
                          usage=ExtendedKeyUsageOID.CLIENT_AUTH)
    _write(files.cafile, cert=ca)
    _write(files.server_cert, cert=server)
    _write(files.server_key, key=server_key)
    _write(files.client_cert, cert=client)
    _write(files.client_key, key=client_key)
    return files


def write_psk_file(directory: Path) -> Path:
    """A Mosquitto psk_file with the one identity the PSK scenario uses."""
    path = directory / "psk.txt"
    path.write_text(f"{PSK_IDENTITY}:{PSK_KEY_HEX}\n")
    return path
