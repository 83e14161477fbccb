"""A throw-away PKI for tests, made with `cryptography` (no openssl CLI needed).

    pki = make_pki(tmp_path)
    pki.ca_cert, pki.server_cert, pki.server_key          # paths (PEM)
    cert, key = pki.client("alice")                        # signed by the root CA
    cert, key = pki.client("bob", issuer="intermediate", dns=["bob.example"])
    crl = pki.crl(revoked=[cert])                          # CRL of the root CA

Everything is cached by its arguments, so asking twice returns the same files.
Keys are RSA-2048 by default, `key_type="ec"` gives P-256.
"""

from __future__ import annotations

import datetime as _dt
import ipaddress
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID, NameOID

NOW = _dt.datetime.now(_dt.timezone.utc)
DAY = _dt.timedelta(days=1)


def new_key(key_type: str = "rsa"):
    if key_type == "ec":
        return ec.generate_private_key(ec.SECP256R1())
    if key_type == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    raise ValueError(f"key_type must be 'rsa' or 'ec', not {key_type!r}")


def write_key(path: Path, key, password: bytes | None = None) -> Path:
    encryption = (serialization.BestAvailableEncryption(password) if password
                  else serialization.NoEncryption())
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.PKCS8, encryption))
    path.chmod(0o600)
    return path


def pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


@dataclass
class Authority:
    """A CA: its certificate, key and (for intermediates) the chain above it."""

    cert: x509.Certificate
    key: object
    chain: list[x509.Certificate] = field(default_factory=list)


def _name(common_name: str, extra: list[tuple] = ()) -> x509.Name:
    attrs = [x509.NameAttribute(oid, value) for oid, value in extra]
    return x509.Name(attrs + [x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _sign(subject: x509.Name, public_key, issuer: Authority | None, issuer_key, *,
          ca: bool, not_before, not_after, sans=(), client: bool = False,
          server: bool = False, ocsp_url: str | None = None, path_length=None):
    builder = (x509.CertificateBuilder()
               .subject_name(subject)
               .issuer_name(issuer.cert.subject if issuer else subject)
               .public_key(public_key)
               .serial_number(x509.random_serial_number())
               .not_valid_before(not_before)
               .not_valid_after(not_after)
               .add_extension(x509.BasicConstraints(ca=ca, path_length=path_length), critical=True)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False))
    if issuer is not None:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.cert.public_key()),
            critical=False)
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                          data_encipherment=False, key_agreement=False, key_cert_sign=True,
                          crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
    else:
        usages = ([ExtendedKeyUsageOID.CLIENT_AUTH] if client else []) + \
                 ([ExtendedKeyUsageOID.SERVER_AUTH] if server else [])
        if usages:
            builder = builder.add_extension(x509.ExtendedKeyUsage(usages), critical=False)
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(list(sans)), critical=False)
    if ocsp_url:
        builder = builder.add_extension(x509.AuthorityInformationAccess([
            x509.AccessDescription(AuthorityInformationAccessOID.OCSP,
                                   x509.UniformResourceIdentifier(ocsp_url))]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _sans(dns=(), emails=(), uris=(), ips=()):
    return ([x509.DNSName(d) for d in dns] + [x509.RFC822Name(e) for e in emails]
            + [x509.UniformResourceIdentifier(u) for u in uris]
            + [x509.IPAddress(ipaddress.ip_address(i)) for i in ips])


class Pki:
    """Files of a test PKI under `directory`; see the module docstring."""

    def __init__(self, directory: Path):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self._cache: dict = {}
        self.authorities: dict[str, Authority] = {}
        self.certs: dict[Path, x509.Certificate] = {}

        root_key = new_key("rsa")
        root_name = _name("midge test root CA", [(NameOID.COUNTRY_NAME, "GB"),
                                                 (NameOID.ORGANIZATION_NAME, "midge tests")])
        root = _sign(root_name, root_key.public_key(), None, root_key, ca=True,
                     not_before=NOW - DAY, not_after=NOW + 3650 * DAY)
        self.authorities["ca"] = Authority(root, root_key)
        self.ca_cert = self._write_cert("ca.crt", [root])
        self.ca_key = write_key(self.dir / "ca.key", root_key)

        inter_key = new_key("rsa")
        inter = _sign(_name("midge test intermediate CA", [(NameOID.ORGANIZATION_NAME, "midge tests")]),
                      inter_key.public_key(), self.authorities["ca"], root_key, ca=True,
                      path_length=0, not_before=NOW - DAY, not_after=NOW + 3650 * DAY)
        self.authorities["intermediate"] = Authority(inter, inter_key, [inter])
        self.intermediate_cert = self._write_cert("intermediate.crt", [inter])
        self.intermediate_key = write_key(self.dir / "intermediate.key", inter_key)
        # Root + intermediate in one file: a cafile that trusts both.
        self.ca_bundle = self._write_cert("ca-bundle.crt", [root, inter])

        other_key = new_key("ec")
        other = _sign(_name("some other CA"), other_key.public_key(), None, other_key, ca=True,
                      not_before=NOW - DAY, not_after=NOW + 3650 * DAY)
        self.authorities["other"] = Authority(other, other_key)
        self.other_ca_cert = self._write_cert("other-ca.crt", [other])

        self.server_cert, self.server_key = self.server("localhost")
        self.server_ec_cert, self.server_ec_key = self.server("localhost", key_type="ec")

    # -- files -------------------------------------------------------------------------

    def _write_cert(self, filename: str, certs: list[x509.Certificate]) -> Path:
        path = self.dir / filename
        path.write_bytes(b"".join(pem(c) for c in certs))
        self.certs[path] = certs[0]
        return path

    def cert(self, path) -> x509.Certificate:
        """The parsed leaf certificate written at `path` (or a (cert, key) pair)."""
        if isinstance(path, tuple):
            path = path[0]
        return self.certs[Path(path)]

    def server(self, name: str = "localhost", *, key_type: str = "rsa", dns=(), ips=(),
               issuer: str = "ca", expired: bool = False) -> tuple[Path, Path]:
        """A server certificate with SANs `localhost`, 127.0.0.1, ::1 (+ dns, ips)."""
        key_args = ("server", name, key_type, tuple(dns), tuple(ips), issuer, expired)
        if key_args in self._cache:
            return self._cache[key_args]
        authority = self.authorities[issuer]
        key = new_key(key_type)
        not_after = NOW - DAY if expired else NOW + 365 * DAY
        cert = _sign(_name(name), key.public_key(), authority, authority.key, ca=False,
                     server=True, not_before=NOW - 2 * DAY, not_after=not_after,
                     sans=_sans(dns=["localhost", *dns], ips=["127.0.0.1", "::1", *ips]))
        stem = f"server-{len(self._cache)}-{key_type}"
        result = (self._write_cert(f"{stem}.crt", [cert, *authority.chain]),
                  write_key(self.dir / f"{stem}.key", key))
        self._cache[key_args] = result
        return result

    def client(self, name: str = "client", *, key_type: str = "rsa", issuer: str = "ca",
               expired: bool = False, not_yet_valid: bool = False, dns=(), emails=(),
               uris=(), ips=(), subject: tuple = (), ocsp_url: str | None = None,
               with_chain: bool = True, password: bytes | None = None) -> tuple[Path, Path]:
        """A client certificate (cert path, key path) with CN `name`.

        issuer: "ca", "intermediate" (the cert file then also holds the intermediate,
        unless with_chain=False) or "other" (a CA the broker does not trust).
        subject: extra (NameOID, value) pairs placed before the CN in DER order.
        password: write the key encrypted with it.
        """
        key_args = ("client", name, key_type, issuer, expired, not_yet_valid, tuple(dns),
                    tuple(emails), tuple(uris), tuple(ips), tuple(subject), ocsp_url,
                    with_chain, password)
        if key_args in self._cache:
            return self._cache[key_args]
        authority = self.authorities[issuer]
        key = new_key(key_type)
        if expired:
            not_before, not_after = NOW - 30 * DAY, NOW - DAY
        elif not_yet_valid:
            not_before, not_after = NOW + 10 * DAY, NOW + 40 * DAY
        else:
            not_before, not_after = NOW - DAY, NOW + 365 * DAY
        cert = _sign(_name(name, list(subject)), key.public_key(), authority, authority.key,
                     ca=False, client=True, not_before=not_before, not_after=not_after,
                     sans=_sans(dns, emails, uris, ips), ocsp_url=ocsp_url)
        stem = f"client-{len(self._cache)}"
        chain = authority.chain if with_chain else []
        result = (self._write_cert(f"{stem}.crt", [cert, *chain]),
                  write_key(self.dir / f"{stem}.key", key, password))
        self._cache[key_args] = result
        return result

    def crl(self, revoked=(), *, issuer: str = "ca", expired: bool = False,
            filename: str | None = None) -> Path:
        """A PEM CRL from `issuer` revoking the given client certificate paths."""
        authority = self.authorities[issuer]
        next_update = NOW - DAY if expired else NOW + 30 * DAY
        builder = (x509.CertificateRevocationListBuilder()
                   .issuer_name(authority.cert.subject)
                   .last_update(NOW - 2 * DAY)
                   .next_update(next_update))
        for path in revoked:
            entry = (x509.RevokedCertificateBuilder()
                     .serial_number(self.cert(path).serial_number)
                     .revocation_date(NOW - DAY).build())
            builder = builder.add_revoked_certificate(entry)
        crl = builder.sign(authority.key, hashes.SHA256())
        path = self.dir / (filename or f"crl-{len(self._cache)}.pem")
        self._cache[("crl", path)] = path
        path.write_bytes(crl.public_bytes(serialization.Encoding.PEM))
        return path

    def ocsp_index(self, revoked=(), good=(), filename: str = "index.txt") -> Path:
        """An `openssl ocsp -index` file listing `good` and `revoked` certificate paths."""
        def stamp(t):
            return t.strftime("%y%m%d%H%M%SZ")
        lines = []
        for status, paths in (("V", good), ("R", revoked)):
            for p in paths:
                c = self.cert(p)
                revoked_at = stamp(NOW - DAY) if status == "R" else ""
                subject = "/" + "/".join(a.rfc4514_string() for a in c.subject)
                lines.append(f"{status}\t{stamp(c.not_valid_after_utc)}\t{revoked_at}\t"
                             f"{c.serial_number:X}\tunknown\t{subject}\n")
        path = self.dir / filename
        path.write_text("".join(lines))
        return path


def make_pki(directory) -> Pki:
    """Create a PKI (root CA, intermediate, other CA, RSA and EC servers) in `directory`."""
    return Pki(Path(directory))
