"""Who a TLS client is: its certificate or PSK identity, turned into a username/client id.

`TlsInfo` is what the TLS stage hands the broker after a handshake. Its helpers parse the
peer certificate once (cached) with `cryptography`; no ssl import here (sans-I/O layer).

Mosquitto's rules (reference §3.4, §3.5):
- `use_identity_as_username`: the PSK identity, or the certificate's first CN (DER order),
  taken as raw bytes that must be valid UTF-8 without NUL.
- `use_subject_as_username`: `X509_NAME_print_ex(..., XN_FLAG_RFC2253)` of the subject:
  RDNs reversed, joined by `,` (multi-valued parts by `+`), short names, RFC 2253
  escapes, `\\XX` for control bytes and for every UTF-8 byte >= 0x80.
midge adds `cert_identity_as_username` / `cert_identity_as_clientid` with one of
`IDENTITY_KINDS`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cached_property

from cryptography import x509
from cryptography.x509.name import _ASN1Type
from cryptography.x509.oid import NameOID


IDENTITY_KINDS = ("cn", "subject", "san_dns", "san_email", "san_uri", "san_ip", "sha256")

# OpenSSL's short names (OBJ_nid2sn) for the attributes seen in subjects.
_SHORT_NAMES = {
    NameOID.COMMON_NAME.dotted_string: "CN",
    NameOID.COUNTRY_NAME.dotted_string: "C",
    NameOID.LOCALITY_NAME.dotted_string: "L",
    NameOID.STATE_OR_PROVINCE_NAME.dotted_string: "ST",
    NameOID.STREET_ADDRESS.dotted_string: "street",
    NameOID.ORGANIZATION_NAME.dotted_string: "O",
    NameOID.ORGANIZATIONAL_UNIT_NAME.dotted_string: "OU",
    NameOID.SERIAL_NUMBER.dotted_string: "serialNumber",
    NameOID.SURNAME.dotted_string: "SN",
    NameOID.GIVEN_NAME.dotted_string: "GN",
    NameOID.TITLE.dotted_string: "title",
    NameOID.GENERATION_QUALIFIER.dotted_string: "generationQualifier",
    NameOID.X500_UNIQUE_IDENTIFIER.dotted_string: "x500UniqueIdentifier",
    NameOID.DN_QUALIFIER.dotted_string: "dnQualifier",
    NameOID.PSEUDONYM.dotted_string: "pseudonym",
    NameOID.USER_ID.dotted_string: "UID",
    NameOID.DOMAIN_COMPONENT.dotted_string: "DC",
    NameOID.EMAIL_ADDRESS.dotted_string: "emailAddress",
    NameOID.JURISDICTION_COUNTRY_NAME.dotted_string: "jurisdictionC",
    NameOID.JURISDICTION_LOCALITY_NAME.dotted_string: "jurisdictionL",
    NameOID.JURISDICTION_STATE_OR_PROVINCE_NAME.dotted_string: "jurisdictionST",
    NameOID.BUSINESS_CATEGORY.dotted_string: "businessCategory",
    NameOID.POSTAL_ADDRESS.dotted_string: "postalAddress",
    NameOID.POSTAL_CODE.dotted_string: "postalCode",
    NameOID.INN.dotted_string: "INN",
    NameOID.OGRN.dotted_string: "OGRN",
    NameOID.SNILS.dotted_string: "SNILS",
    NameOID.UNSTRUCTURED_NAME.dotted_string: "unstructuredName",
    "2.5.4.41": "name",
    "2.5.4.43": "initials",
    "2.5.4.13": "description",
    "2.5.4.72": "role",
    "2.5.4.97": "organizationIdentifier",
}

_RFC2253_SPECIAL = frozenset(',+"\\<>;')


def _raw_value(attribute: x509.NameAttribute) -> bytes:
    """The attribute's content octets as stored in the certificate (best effort)."""
    value = attribute.value
    if isinstance(value, bytes):
        return value
    kind = attribute._type
    if kind == _ASN1Type.BMPString:
        return value.encode("utf-16-be", "surrogatepass")
    if kind == _ASN1Type.UniversalString:
        return value.encode("utf-32-be", "surrogatepass")
    if kind == _ASN1Type.UTF8String:
        return value.encode("utf-8", "surrogateescape")
    return value.encode("latin-1", "replace")  # one-byte string types


def _escape_rfc2253(text: str) -> str:
    """ASN1_STRFLGS_RFC2253 escaping of a decoded string value."""
    data = text.encode("utf-8", "surrogateescape")
    out = []
    last = len(data) - 1
    for index, byte in enumerate(data):
        char = chr(byte)
        if byte >= 0x80 or byte < 0x20 or byte == 0x7F:
            out.append(f"\\{byte:02X}")
        elif char in _RFC2253_SPECIAL:
            out.append("\\" + char)
        elif index == 0 and char in "# ":
            out.append("\\" + char)
        elif index == last and char == " ":
            out.append("\\ ")
        else:
            out.append(char)
    return "".join(out)


def _der_dump(attribute: x509.NameAttribute) -> str:
    """`#` + hex of the value's DER encoding, as OpenSSL prints unknown attributes."""
    content = _raw_value(attribute)
    length = len(content)
    if length < 0x80:
        header = bytes([attribute._type.value, length])
    else:
        size = length.to_bytes((length.bit_length() + 7) // 8, "big")
        header = bytes([attribute._type.value, 0x80 | len(size)]) + size
    return "#" + (header + content).hex().upper()


def subject_string(name: x509.Name) -> str:
    """`name` exactly as Mosquitto's use_subject_as_username prints it (RFC 2253 form)."""
    parts = []
    for rdn_index, rdn in enumerate(name.rdns):
        for attribute in rdn:
            parts.append((rdn_index, attribute))
    parts.reverse()  # XN_FLAG_DN_REV reverses every entry, multi-valued parts included
    out = []
    previous = None
    for rdn_index, attribute in parts:
        if previous is not None:
            out.append("+" if rdn_index == previous else ",")
        previous = rdn_index
        dotted = attribute.oid.dotted_string
        short = _SHORT_NAMES.get(dotted)
        if short is None:
            out.append(f"{dotted}={_der_dump(attribute)}")
        else:
            out.append(f"{short}={_escape_rfc2253(str(attribute.value))}")
    return "".join(out)


def common_name(name: x509.Name) -> str | None:
    """The first CN in DER order, when its bytes are valid UTF-8 without NUL (Mosquitto)."""
    for attribute in name:
        if attribute.oid == NameOID.COMMON_NAME:
            raw = _raw_value(attribute)
            if b"\x00" in raw:
                return None
            try:
                return raw.decode("utf-8")
            except UnicodeDecodeError:
                return None
    return None


@dataclass(eq=False)
class TlsInfo:
    """A finished TLS handshake: what the broker may ask about the peer.

    peer_cert is the client's leaf certificate (DER) or None; psk_identity is set for
    PSK handshakes. verified_chain (leaf first, DER) is recorded only where revocation
    checks need the issuer (require_ocsp). Derived values (common name, subject, SHA-256)
    are computed on first use and cached; the parsed certificate itself is not kept: it
    would cost ~650 B for the life of each connection that used its identity, to save a
    parse of a few microseconds on the rare second use.
    """

    version: str
    cipher: str
    peer_cert: bytes | None = None
    psk_identity: str | None = None
    listener: str = ""
    verified_chain: tuple = ()
    peer: str = ""

    @property
    def certificate(self) -> x509.Certificate | None:
        """The peer certificate, parsed anew on each use (see the class docstring)."""
        if self.peer_cert is None:
            return None
        return x509.load_der_x509_certificate(self.peer_cert)

    @cached_property
    def common_name(self) -> str | None:
        cert = self.certificate
        return None if cert is None else common_name(cert.subject)

    @cached_property
    def subject_string(self) -> str | None:
        cert = self.certificate
        return None if cert is None else subject_string(cert.subject)

    @cached_property
    def sha256(self) -> str | None:
        """SHA-256 of the DER certificate: 64 lowercase hex digits, no colons."""
        return None if self.peer_cert is None else hashlib.sha256(self.peer_cert).hexdigest()

    def _san_values(self, kind) -> list[str]:
        cert = self.certificate
        if cert is None:
            return []
        try:
            sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        except x509.ExtensionNotFound:
            return []
        return [str(value) for value in sans.get_values_for_type(kind)]

    @property
    def san_dns(self) -> list[str]:
        return self._san_values(x509.DNSName)

    @property
    def san_email(self) -> list[str]:
        return self._san_values(x509.RFC822Name)

    @property
    def san_uri(self) -> list[str]:
        return self._san_values(x509.UniformResourceIdentifier)

    @property
    def san_ip(self) -> list[str]:
        return self._san_values(x509.IPAddress)

    @property
    def serial(self) -> int | None:
        cert = self.certificate
        return None if cert is None else cert.serial_number

    def identity(self, kind: str) -> str | None:
        """The value of one of IDENTITY_KINDS; a PSK connection answers its PSK identity."""
        if self.psk_identity is not None:
            return self.psk_identity
        if self.peer_cert is None:
            return None
        if kind == "cn":
            return self.common_name
        if kind == "subject":
            return self.subject_string
        if kind == "sha256":
            return self.sha256
        if kind in ("san_dns", "san_email", "san_uri", "san_ip"):
            values = getattr(self, kind)
            value = values[0] if values else None
            if value is not None and "\x00" in value:
                return None
            return value
        raise ValueError(f"unknown identity kind {kind!r}; expected one of {IDENTITY_KINDS}")

    def describe(self) -> str:
        """Short identity text for log lines."""
        if self.psk_identity is not None:
            return f"PSK identity '{self.psk_identity}'"
        if self.peer_cert is None:
            return "no client certificate"
        return f"certificate {self.subject_string} (sha256 {(self.sha256 or "")[:16]}...)"


def username_from_tls(listener, tls: TlsInfo | None) -> str | None:
    """The username a TLS identity gives on `listener`; None = no usable identity.

    Precedence as Mosquitto: use_identity_as_username, then use_subject_as_username;
    then midge's cert_identity_as_username.
    """
    if tls is None:
        return None
    if getattr(listener, "use_identity_as_username", False):
        if tls.psk_identity is not None:
            return tls.psk_identity
        return tls.common_name
    if getattr(listener, "use_subject_as_username", False):
        if tls.psk_identity is not None:
            return None  # Mosquitto: a PSK connection has no subject
        return tls.subject_string
    kind = getattr(listener, "cert_identity_as_username", None)
    if kind:
        return tls.identity(kind)
    return None


def clientid_from_tls(listener, tls: TlsInfo | None) -> str | None:
    """The client id from `cert_identity_as_clientid`; None when unset or unavailable."""
    kind = getattr(listener, "cert_identity_as_clientid", None)
    if not kind or tls is None:
        return None
    return tls.identity(kind)
