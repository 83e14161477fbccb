"""`midge certs`: a development CA, server and client certificates in one command.

    midge certs --dir certs --server-name mqtt.lan --client alice --client bob

writes ca.crt/ca.key, server.crt/server.key (SANs localhost, 127.0.0.1, ::1 and the
given names), <client>.crt/<client>.key, and crl.pem (empty, or listing the clients
given with --revoke); keys are 0600. An existing
ca.crt/ca.key in the directory is reused, so clients can be added later. Prints a
mosquitto.conf snippet and client commands that work with the files. For development
and tests, not production PKI. `make_dev_pki()` does the same for Python callers.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import ipaddress
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

_DEFAULT_SANS = ["localhost", "127.0.0.1", "::1"]


def _new_key(key_type: str):
    if key_type == "ec":
        return ec.generate_private_key(ec.SECP256R1())
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _write_key(path: Path, key) -> None:
    data = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    os.chmod(path, 0o600)  # also when the file existed with looser permissions


def _write_cert(path: Path, cert: x509.Certificate) -> None:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _san(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


def _leaf(subject: str, key, ca_cert, ca_key, days: int, *, server: bool, sans=()):
    now = _dt.datetime.now(_dt.timezone.utc)
    usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
    builder = (x509.CertificateBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
               .issuer_name(ca_cert.subject)
               .public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - _dt.timedelta(minutes=5))
               .not_valid_after(now + _dt.timedelta(days=days))
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_cert.public_key()),
                              critical=False))
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName([_san(s) for s in sans]), critical=False)
    return builder.sign(ca_key, hashes.SHA256())


def _load_or_make_ca(directory: Path, key_type: str, days: int):
    cert_path, key_path = directory / "ca.crt", directory / "ca.key"
    if cert_path.exists() and key_path.exists():
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), None)
        return cert, key, False
    key = _new_key(key_type)
    now = _dt.datetime.now(_dt.timezone.utc)
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "midge development"),
                      x509.NameAttribute(NameOID.COMMON_NAME, "midge development CA")])
    cert = (x509.CertificateBuilder()
            .subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _dt.timedelta(minutes=5))
            .not_valid_after(now + _dt.timedelta(days=max(days, 3650)))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                         key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, key_cert_sign=True, crl_sign=True,
                                         encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    _write_key(key_path, key)
    _write_cert(cert_path, cert)
    return cert, key, True


def _crl(ca_cert, ca_key, days: int, serials=()):
    now = _dt.datetime.now(_dt.timezone.utc)
    builder = (x509.CertificateRevocationListBuilder()
               .issuer_name(ca_cert.subject)
               .last_update(now - _dt.timedelta(minutes=5))
               .next_update(now + _dt.timedelta(days=days)))
    for serial in sorted(set(serials)):
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(now).build())
    return builder.sign(ca_key, hashes.SHA256())


def _revoked_serials(crl_path: Path) -> list[int]:
    if not crl_path.exists():
        return []
    return [entry.serial_number for entry in x509.load_pem_x509_crl(crl_path.read_bytes())]


def _safe_filename(name: str) -> str:
    keep = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
    return keep.strip(".") or "client"


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="midge certs",
        description="Create a development CA, a server certificate and client certificates.")
    parser.add_argument("--dir", default="certs", help="output directory (default: ./certs)")
    parser.add_argument("--server-name", action="append", default=[], metavar="NAME",
                        help="extra DNS name or IP address for the server certificate (repeatable); "
                        "localhost, 127.0.0.1 and ::1 are always included")
    parser.add_argument("--client", action="append", default=[], metavar="NAME",
                        help="make a client certificate with this CN (repeatable)")
    parser.add_argument("--revoke", action="append", default=[], metavar="NAME",
                        help="add the client certificate NAME.crt in DIR to crl.pem (repeatable)")
    parser.add_argument("--days", type=int, default=365, help="validity of server/client certificates "
                        "and of the CRL, in days (default 365)")
    parser.add_argument("--key-type", choices=("rsa", "ec"), default="rsa",
                        help="rsa (2048 bits, default) or ec (P-256)")
    parser.add_argument("--port", type=int, default=8883, help="port used in the printed examples")
    args = parser.parse_args(argv)
    if args.days < 1:
        parser.error("--days must be at least 1")
    return args


@dataclass(frozen=True, slots=True)
class DevPki:
    """What `make_dev_pki` wrote: paths of the CA, the server pair and each client pair."""

    directory: Path
    created: bool                    # a new CA (False: ca.crt/ca.key were reused)
    server_names: tuple[str, ...]    # the server certificate's SANs
    clients: tuple[str, ...]         # file stems of the client pairs made this time

    @property
    def cafile(self) -> Path:
        return self.directory / "ca.crt"

    @property
    def server_certfile(self) -> Path:
        return self.directory / "server.crt"

    @property
    def server_keyfile(self) -> Path:
        return self.directory / "server.key"

    @property
    def crlfile(self) -> Path:
        return self.directory / "crl.pem"

    def client_files(self, name: str) -> tuple[Path, Path]:
        """(certfile, keyfile) of client `name`."""
        stem = _safe_filename(name)
        return self.directory / f"{stem}.crt", self.directory / f"{stem}.key"


def make_dev_pki(directory, *, server_names=(), clients=(), revoke=(), days: int = 365,
                 key_type: str = "rsa") -> DevPki:
    """Write (or extend) a development PKI in `directory`: what `midge certs` does, for
    Python callers too (the pytest plugin's TLS broker). Raises OSError / ValueError."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    ca_cert, ca_key, created = _load_or_make_ca(directory, key_type, days)
    server_names = list(server_names)
    first = server_names[0] if server_names else "localhost"
    sans = list(dict.fromkeys(_DEFAULT_SANS + server_names))
    server_files = (directory / "server.crt", directory / "server.key")
    # Keep a working server certificate when only clients are added or revoked.
    if created or server_names or not all(f.exists() for f in server_files):
        server_key = _new_key(key_type)
        _write_key(server_files[1], server_key)
        _write_cert(server_files[0], _leaf(first, server_key, ca_cert, ca_key, days,
                                           server=True, sans=sans))
    else:
        existing = x509.load_pem_x509_certificate(server_files[0].read_bytes())
        try:
            sans = [str(v.value) for v in existing.extensions.get_extension_for_class(
                x509.SubjectAlternativeName).value]
        except x509.ExtensionNotFound:
            sans = []
    stems = []
    for name in clients:
        key = _new_key(key_type)
        stem = _safe_filename(name)
        _write_key(directory / f"{stem}.key", key)
        _write_cert(directory / f"{stem}.crt", _leaf(name, key, ca_cert, ca_key, days, server=False))
        stems.append(stem)
    crl_path = directory / "crl.pem"
    serials = [] if created else _revoked_serials(crl_path)
    for name in revoke:
        path = directory / f"{_safe_filename(name)}.crt"
        serials.append(x509.load_pem_x509_certificate(path.read_bytes()).serial_number)
    crl_path.write_bytes(_crl(ca_cert, ca_key, days, serials).public_bytes(serialization.Encoding.PEM))
    return DevPki(directory, created, tuple(sans), tuple(stems))


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    directory = Path(args.dir)
    try:
        pki = make_dev_pki(directory, server_names=args.server_name, clients=args.client,
                           revoke=args.revoke, days=args.days, key_type=args.key_type)
    except (OSError, ValueError) as exc:
        print(f"midge certs: {exc}", file=sys.stderr)
        return 1
    created, sans, clients = pki.created, pki.server_names, list(pki.clients)

    d = directory.resolve()
    print(f"{'Created' if created else 'Reused'} CA {d}/ca.crt; server certificate {d}/server.crt "
          f"for {', '.join(sans)}" + (f"; clients: {', '.join(clients)}" if clients else "")
          + (f"; revoked: {', '.join(args.revoke)}" if args.revoke else ""))
    print(f"\n# mosquitto.conf (works with midge and mosquitto)\nlistener {args.port}\n"
          f"cafile {d}/ca.crt\ncertfile {d}/server.crt\nkeyfile {d}/server.key\n"
          + ("require_certificate true\nuse_identity_as_username true\n"
             f"crlfile {d}/crl.pem\n" if clients else "allow_anonymous true\n"))
    host = "localhost"
    tls = f"--cafile {d}/ca.crt"
    if clients:
        tls += f" --cert {d}/{clients[0]}.crt --key {d}/{clients[0]}.key"
    print(f"# subscribe\nmosquitto_sub -h {host} -p {args.port} {tls} -t 'test/#' -v")
    print(f"midge sub -h {host} -p {args.port} {tls} -t 'test/#' -v")
    print(f"# publish\nmosquitto_pub -h {host} -p {args.port} {tls} -t test/hello -m hi")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
