"""Turn a failed TLS handshake into one plain sentence an operator can act on.

OpenSSL reports failures as reason codes ("PEER_DID_NOT_RETURN_A_CERTIFICATE") and
verify codes (10 = certificate has expired). The TLS stage collects a few facts while the
handshake runs (the first bytes, the certificate the client sent, the alert the client
sent, the PSK identity it offered) and `diagnose()` maps them to a `TlsFailure`.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field

from cryptography import x509

from midge.security.identity import subject_string

# OpenSSL X509_V_ERR_* codes we explain.
_UNABLE_TO_GET_ISSUER_CERT = 2
_UNABLE_TO_GET_CRL = 3
_CERT_SIGNATURE_FAILURE = 7
_CERT_NOT_YET_VALID = 9
_CERT_HAS_EXPIRED = 10
_CRL_NOT_YET_VALID = 11
_CRL_HAS_EXPIRED = 12
_DEPTH_ZERO_SELF_SIGNED_CERT = 18
_SELF_SIGNED_CERT_IN_CHAIN = 19
_UNABLE_TO_GET_ISSUER_CERT_LOCALLY = 20
_UNABLE_TO_VERIFY_LEAF_SIGNATURE = 21
_CERT_REVOKED = 23
_INVALID_PURPOSE = 26
_UNKNOWN_CA_CODES = {_UNABLE_TO_GET_ISSUER_CERT, _DEPTH_ZERO_SELF_SIGNED_CERT,
                     _SELF_SIGNED_CERT_IN_CHAIN, _UNABLE_TO_GET_ISSUER_CERT_LOCALLY,
                     _UNABLE_TO_VERIFY_LEAF_SIGNATURE}

# TLS alert descriptions a client may send us (RFC 8446 §6).
ALERT_NAMES = {
    0: "close notify", 10: "unexpected message", 20: "bad record mac", 40: "handshake failure",
    42: "bad certificate", 43: "unsupported certificate", 44: "certificate revoked",
    45: "certificate expired", 46: "certificate unknown", 47: "illegal parameter",
    48: "unknown CA", 50: "decode error", 51: "decrypt error", 70: "protocol version",
    71: "insufficient security", 80: "internal error", 86: "inappropriate fallback",
    90: "user canceled", 109: "missing extension", 110: "unsupported extension",
    112: "unrecognized name", 115: "unknown PSK identity", 116: "certificate required",
    120: "no application protocol",
}


class FailureKind:
    """Names of the failure kinds (stable strings, usable in tests and metrics)."""

    NO_CERTIFICATE = "no_certificate"
    UNKNOWN_CA = "unknown_ca"
    EXPIRED = "expired"
    NOT_YET_VALID = "not_yet_valid"
    REVOKED = "revoked"
    CRL_EXPIRED = "crl_expired"
    CRL_MISSING = "crl_missing"
    BAD_CERTIFICATE = "bad_certificate"
    PSK_UNKNOWN = "psk_identity_unknown"
    PSK_MISMATCH = "psk_key_mismatch"
    VERSION = "protocol_version"
    NO_SHARED_CIPHER = "no_shared_cipher"
    PLAINTEXT_MQTT = "plaintext_mqtt"
    HTTP = "http"
    NOT_TLS = "not_tls"
    CLIENT_REFUSED = "client_refused_server"
    CLIENT_ABORTED = "client_aborted"
    OCSP = "ocsp"
    TIMEOUT = "timeout"  # not finished within tls_handshake_timeout (counted, never diagnosed)
    OTHER = "other"


_NOT_A_HANDSHAKE = {FailureKind.PLAINTEXT_MQTT, FailureKind.HTTP, FailureKind.NOT_TLS,
                    FailureKind.CLIENT_ABORTED}


@dataclass(frozen=True)
class TlsFailure:
    """Why a TLS handshake (or a revocation check) failed, in plain words.

    side: "midge" when the broker refused the client, "client" when the client refused
    or abandoned the handshake.
    """

    kind: str
    reason: str
    side: str = "midge"
    peer: str = ""
    listener: str = ""
    details: dict = field(default_factory=dict, compare=False)

    def __str__(self) -> str:
        if self.side == "midge":
            who = "refused by midge"
        elif self.kind in _NOT_A_HANDSHAKE:
            who = "failed"
        else:
            who = "refused by the client"
        return f"TLS handshake {who}: {self.reason}"

    def log_line(self) -> str:
        """The whole story in one line: peer, listener, side, reason."""
        where = f" on listener {self.listener}" if self.listener else ""
        return f"TLS handshake from {self.peer}{where} failed, {self}"


@dataclass
class HandshakeFacts:
    """What the TLS stage saw during one handshake."""

    first_bytes: bytes = b""
    client_certificate: bytes | None = None  # DER of the leaf the client sent
    alert_from_client: int | None = None
    psk_identity: str | None = None
    psk_known: bool | None = None
    require_certificate: bool = False
    crl_check: str | None = None


def sniff_plaintext(first_bytes: bytes) -> tuple[str, str] | None:
    """(kind, reason) when the first bytes are obviously not a TLS record."""
    if not first_bytes:
        return None
    first = first_bytes[0]
    if first == 0x10:
        return (FailureKind.PLAINTEXT_MQTT,
                "the client sent plaintext MQTT (CONNECT) to a TLS port; "
                "it must use TLS here (mosquitto_sub: --cafile ...), or connect to a plain listener")
    head = first_bytes[:8].upper()
    if head.startswith((b"GET ", b"POST ", b"HEAD ", b"PUT ", b"OPTIONS ", b"CONNECT ", b"PRI ")):
        return (FailureKind.HTTP, "the client sent plaintext HTTP to a TLS port (use https:// or wss://)")
    if first not in (0x14, 0x15, 0x16, 0x17) and not (first & 0x80):  # 0x80: SSLv2 hello
        return (FailureKind.NOT_TLS, f"the client sent bytes that are not TLS (first byte 0x{first:02x})")
    return None


def _when(moment) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def _certificate(der: bytes | None) -> x509.Certificate | None:
    if der is None:
        return None
    try:
        return x509.load_der_x509_certificate(der)
    except ValueError:
        return None


def _verify_failure(exc: ssl.SSLCertVerificationError, facts: HandshakeFacts) -> tuple[str, str, dict]:
    code = exc.verify_code
    cert = _certificate(facts.client_certificate)
    subject = subject_string(cert.subject) if cert is not None else None
    about = f" (subject {subject})" if subject else ""
    details = {"verify_code": code, "subject": subject}
    if code == _CERT_HAS_EXPIRED:
        when = f" on {_when(cert.not_valid_after_utc)}" if cert is not None else ""
        return FailureKind.EXPIRED, f"the client certificate expired{when}{about}", details
    if code == _CERT_NOT_YET_VALID:
        when = f" until {_when(cert.not_valid_before_utc)}" if cert is not None else ""
        return (FailureKind.NOT_YET_VALID,
                f"the client certificate is not valid yet{when}{about}; check the clocks", details)
    if code == _CERT_REVOKED:
        serial = f" serial {cert.serial_number:X}" if cert is not None else ""
        return FailureKind.REVOKED, f"the client certificate{serial} is revoked by the CRL{about}", details
    if code == _CRL_HAS_EXPIRED:
        return (FailureKind.CRL_EXPIRED,
                "the CRL in crlfile has expired (its nextUpdate is past), so OpenSSL refuses every "
                "certificate; publish a fresh CRL", details)
    if code == _CRL_NOT_YET_VALID:
        return FailureKind.CRL_EXPIRED, "the CRL in crlfile is not valid yet; check the clocks", details
    if code == _UNABLE_TO_GET_CRL:
        hint = (" (crl_check chain needs a CRL from every CA in the chain, the root included)"
                if facts.crl_check == "chain" else "")
        return (FailureKind.CRL_MISSING,
                f"no CRL from the issuer of the client certificate is loaded{hint}{about}", details)
    if code in _UNKNOWN_CA_CODES:
        issuer = f" issued by {subject_string(cert.issuer)}" if cert is not None else ""
        return (FailureKind.UNKNOWN_CA,
                f"unknown CA: the client certificate{issuer} does not chain to a CA in cafile/capath"
                f"{about}; if it was issued by an intermediate CA, the client must send the "
                "intermediate with its certificate, or cafile must hold the intermediate and its root",
                details)
    if code == _INVALID_PURPOSE:
        return (FailureKind.BAD_CERTIFICATE,
                f"the client certificate is not for client authentication (extendedKeyUsage){about}",
                details)
    if code == _CERT_SIGNATURE_FAILURE:
        return FailureKind.BAD_CERTIFICATE, f"the client certificate's signature is invalid{about}", details
    return (FailureKind.BAD_CERTIFICATE,
            f"the client certificate did not verify: {exc.verify_message} (code {code}){about}", details)


def diagnose(exc: BaseException, facts: HandshakeFacts, peer: str = "", listener: str = "") -> TlsFailure:
    """Explain an `ssl.SSLError` raised by the server's handshake."""
    kind, reason, side, details = _explain(exc, facts)
    return TlsFailure(kind, reason, side, peer, listener, details)


def _explain(exc: BaseException, facts: HandshakeFacts) -> tuple[str, str, str, dict]:
    sniffed = sniff_plaintext(facts.first_bytes)
    if sniffed is not None:
        return sniffed[0], sniffed[1], "client", {}
    if isinstance(exc, ssl.SSLCertVerificationError):
        kind, reason, details = _verify_failure(exc, facts)
        return kind, reason, "midge", details
    openssl_reason = (getattr(exc, "reason", None) or "").upper()
    if facts.psk_identity is not None and facts.psk_known is False:
        return (FailureKind.PSK_UNKNOWN, f"PSK identity '{facts.psk_identity}' unknown (not in psk_file "
                "nor known to a plugin)", "midge", {"psk_identity": facts.psk_identity})
    if facts.alert_from_client is not None and openssl_reason.startswith(("SSLV3_ALERT", "TLSV1_ALERT",
                                                                         "TLSV13_ALERT")):
        alert = ALERT_NAMES.get(facts.alert_from_client, f"alert {facts.alert_from_client}")
        if facts.alert_from_client in (42, 43, 44, 45, 46, 48):
            return (FailureKind.CLIENT_REFUSED,
                    f"the client rejected midge's certificate (alert '{alert}'): check that the client "
                    "trusts the CA that signed certfile and that the name it connects to is in the "
                    "certificate's subjectAltName", "client", {"alert": alert})
        if facts.alert_from_client in (20, 51) and facts.psk_identity is not None:
            return (FailureKind.PSK_MISMATCH, f"the PSK for identity '{facts.psk_identity}' differs "
                    f"between the client and psk_file (alert '{alert}')", "client", {"alert": alert})
        return FailureKind.OTHER, f"the client sent alert '{alert}'", "client", {"alert": alert}
    if "PEER_DID_NOT_RETURN_A_CERTIFICATE" in openssl_reason:
        return (FailureKind.NO_CERTIFICATE, "no client certificate: the listener has require_certificate "
                "true and the client sent none", "midge", {})
    if "NO_SHARED_CIPHER" in openssl_reason or "NO_CIPHERS_AVAILABLE" in openssl_reason:
        return (FailureKind.NO_SHARED_CIPHER, "no cipher in common between the client and the listener's "
                "ciphers / TLS version settings", "midge", {})
    if openssl_reason in ("UNSUPPORTED_PROTOCOL", "VERSION_TOO_LOW", "WRONG_SSL_VERSION",
                          "UNKNOWN_PROTOCOL") or "PROTOCOL_VERSION" in openssl_reason:
        return (FailureKind.VERSION, "the client's TLS version is below the listener's minimum "
                "(tls_version)", "midge", {})
    if "HTTP_REQUEST" in openssl_reason:
        return FailureKind.HTTP, "the client sent plaintext HTTP to a TLS port", "client", {}
    if "WRONG_VERSION_NUMBER" in openssl_reason:
        return FailureKind.NOT_TLS, "the client sent bytes that are not TLS", "client", {}
    if "BAD_RECORD_MAC" in openssl_reason or "DECRYPTION_FAILED" in openssl_reason:
        if facts.psk_identity is not None:
            return (FailureKind.PSK_MISMATCH, f"the PSK for identity '{facts.psk_identity}' differs "
                    "between the client and psk_file", "midge", {})
    if "BINDER_DOES_NOT_VERIFY" in openssl_reason and facts.psk_identity is not None:
        return (FailureKind.PSK_MISMATCH, f"the PSK for identity '{facts.psk_identity}' differs "
                "between the client and psk_file", "midge", {})
    if "UNEXPECTED_EOF" in openssl_reason or isinstance(exc, ssl.SSLEOFError):
        return FailureKind.CLIENT_ABORTED, "the client closed the connection during the handshake", "client", {}
    text = getattr(exc, "reason", None) or str(exc)
    return FailureKind.OTHER, f"OpenSSL: {text}", "midge", {}


def client_aborted(facts: HandshakeFacts, peer: str = "", listener: str = "") -> TlsFailure:
    """The connection closed before the handshake finished."""
    sniffed = sniff_plaintext(facts.first_bytes)
    if sniffed is not None:
        return TlsFailure(sniffed[0], sniffed[1], "client", peer, listener)
    if not facts.first_bytes:
        reason = "the client connected and closed without sending anything"
    elif facts.alert_from_client is not None:
        alert = ALERT_NAMES.get(facts.alert_from_client, str(facts.alert_from_client))
        reason = f"the client aborted the handshake with alert '{alert}'"
    else:
        reason = "the client closed the connection during the handshake"
    return TlsFailure(FailureKind.CLIENT_ABORTED, reason, "client", peer, listener)


def success_line(info, peer: str = "", listener: str = "") -> str:
    """The debug line for a finished handshake: version, cipher and identity."""
    where = f" on listener {listener}" if listener else ""
    return f"TLS handshake with {peer}{where}: {info.version} {info.cipher}, {info.describe()}"
