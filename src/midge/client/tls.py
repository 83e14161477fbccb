"""Client TLS context and human-readable TLS failures.

Mosquitto's clients say "A TLS error occurred" and leave the user to guess. midge
says which check failed and on what: the host name the certificate did not match
(with the names it does carry), the date it expired, the issuer nobody trusts.
"""

from __future__ import annotations

import datetime
import ssl

from midge import files
from midge.client.options import TlsOptions

VERSIONS = {
    "tlsv1.1": ssl.TLSVersion.TLSv1_1,
    "tlsv1.2": ssl.TLSVersion.TLSv1_2,
    "tlsv1.3": ssl.TLSVersion.TLSv1_3,
}


class TlsSetupError(Exception):
    """The TLS options cannot produce a context (missing file, bad key, ...)."""


# How a failure names the option to fix: the command line's flags, or a bridge's options.
OPTION_NAMES = {
    "client": {"ca": "--cafile/--capath", "cert": "--cert/--key", "insecure": "--insecure",
               "version": "--tls-version", "psk": "--psk", "identity": "--psk-identity",
               "alpn": "--tls-alpn"},
    "bridge": {"ca": "bridge_cafile/bridge_capath", "cert": "bridge_certfile/bridge_keyfile",
               "insecure": "bridge_insecure", "version": "bridge_tls_version", "psk": "bridge_psk",
               "identity": "bridge_identity", "alpn": "bridge_alpn"},
}
_HANDSHAKE = 22
_CERTIFICATE = 11


def make_context(tls: TlsOptions) -> ssl.SSLContext:
    """An SSLContext for `tls`; raises TlsSetupError with a readable message."""
    if tls.engine:
        raise TlsSetupError(
            f"TLS engine {tls.engine!r} requested, but midge uses Python's ssl module, "
            "which cannot load OpenSSL engines; use a PEM key file instead.")
    if tls.keyform not in ("pem", "engine"):
        raise TlsSetupError(f"Invalid keyform {tls.keyform!r}: must be pem or engine.")
    if tls.keyform == "engine":
        raise TlsSetupError("--keyform engine needs an OpenSSL engine, which midge cannot load.")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        context.minimum_version = VERSIONS[tls.min_version or "tlsv1.2"]
    except KeyError:
        raise TlsSetupError(f"Unsupported TLS version {tls.min_version!r}: "
                            "use tlsv1.3, tlsv1.2 or tlsv1.1.") from None
    if tls.psk is not None:
        _psk_context(context, tls)
    else:
        _certificate_context(context, tls)
    if tls.ciphers:
        try:
            context.set_ciphers(tls.ciphers)
        except ssl.SSLError:
            raise TlsSetupError(f"No usable cipher in cipher list {tls.ciphers!r}.") from None
    if tls.alpn:
        context.set_alpn_protocols(tls.alpn)
    if tls.psk is None:
        _keep_server_certificate(context)
    return context


def _keep_server_certificate(context: ssl.SSLContext) -> None:
    """Keep the certificate the server sends, to explain a failed verification with it.

    OpenSSL's message callback sees the server's Certificate message during the one,
    verified, handshake; no second unverified connection is needed to fetch it.
    """
    context.server_certificate = None

    def seen(conn, direction, version, content_type, msg_type, data):
        if direction == "read" and content_type == _HANDSHAKE and msg_type == _CERTIFICATE:
            context.server_certificate = leaf_certificate(data, version)

    try:
        context._msg_callback = seen
    except (AttributeError, TypeError):  # an ssl module without it: explain without details
        pass


def leaf_certificate(message: bytes, version) -> bytes | None:
    """The first (leaf) DER certificate of a TLS Certificate handshake message."""
    try:
        body = message[4:]
        offset = 1 + body[0] if version == ssl.TLSVersion.TLSv1_3 else 0  # 1.3: request context
        if int.from_bytes(body[offset:offset + 3], "big") == 0:
            return None
        offset += 3
        length = int.from_bytes(body[offset:offset + 3], "big")
        der = bytes(body[offset + 3:offset + 3 + length])
        return der if len(der) == length else None
    except (IndexError, ValueError):
        return None


def _certificate_context(context: ssl.SSLContext, tls: TlsOptions) -> None:
    context.verify_mode = ssl.CERT_REQUIRED  # Mosquitto always verifies the chain
    context.check_hostname = not tls.insecure
    for path, what in ((tls.cafile, "CA file"), (tls.capath, "CA path")):
        if path is not None and not files.exists(path):
            raise TlsSetupError(f"{what} {path!r} not found.")
    if tls.cafile or tls.capath:
        try:
            # files.openable: a bridge reconnecting after midge switched to `user` still
            # reads root-only files, through the root keeper (server/keeper.py).
            with files.openable(tls.cafile) as cafile:
                context.load_verify_locations(cafile=cafile, capath=tls.capath)
        except ssl.SSLError as exc:
            raise TlsSetupError(f"Unable to load CA certificates from {tls.cafile or tls.capath}: "
                                f"{exc.reason or exc}.") from None
    if tls.use_os_certs or not (tls.cafile or tls.capath):
        context.load_default_certs()
    if tls.certfile or tls.keyfile:
        for path, what in ((tls.certfile, "certificate"), (tls.keyfile, "key")):
            if path is None or not files.exists(path):
                raise TlsSetupError(f"Client {what} file {path!r} not found.")
        try:
            with files.openable(tls.certfile) as certfile, files.openable(tls.keyfile) as keyfile:
                context.load_cert_chain(certfile, keyfile)
        except ssl.SSLError as exc:
            raise TlsSetupError(
                f"Unable to load client certificate {tls.certfile} with key {tls.keyfile}: "
                f"{exc.reason or exc} (does the key match the certificate?).") from None


def _psk_context(context: ssl.SSLContext, tls: TlsOptions) -> None:
    # TLS 1.3 PSK in OpenSSL needs session-ticket plumbing Mosquitto does not do;
    # like mosquitto 2.0.12+, PSK connections use TLS 1.2 and PSK ciphers.
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    if context.minimum_version > ssl.TLSVersion.TLSv1_2:
        raise TlsSetupError("TLS-PSK needs TLS 1.2: --tls-version tlsv1.3 cannot be used with --psk.")
    context.set_ciphers(tls.ciphers or "PSK")
    identity, key = tls.psk_identity, tls.psk
    context.set_psk_client_callback(lambda hint: (identity, key))


def explain(exc: BaseException, host: str, peer_cert: bytes | None = None, names: str = "client") -> str:
    """One line telling the user which TLS check failed and on what.

    names: "client" names the command line's flags (--cafile), "bridge" a bridge's
    options (bridge_cafile), so the message points at what to change.
    """
    n = OPTION_NAMES.get(names, OPTION_NAMES["client"])
    if isinstance(exc, ssl.SSLCertVerificationError):
        message = _verify_message(exc, host, n)
        details = _describe_certificate(peer_cert) if peer_cert else ""
        return f"TLS error: {message}{details}"
    if isinstance(exc, ssl.SSLError):
        reason = exc.reason or str(exc)
        psk_differs = (f"the PSK key ({n['psk']}) differs from the server's key for this identity "
                       f"({n['identity']})")
        hints = {
            "TLSV1_ALERT_UNKNOWN_CA": "the server does not trust the client certificate's issuer",
            "SSLV3_ALERT_BAD_CERTIFICATE": "the server rejected the client certificate",
            "TLSV13_ALERT_CERTIFICATE_REQUIRED": f"the server requires a client certificate ({n['cert']})",
            "SSLV3_ALERT_HANDSHAKE_FAILURE": "no TLS version/cipher in common, or the server wanted a certificate",
            "WRONG_VERSION_NUMBER": "the server does not speak TLS on this port",
            "TLSV1_ALERT_PROTOCOL_VERSION": f"no TLS version in common (see {n['version']})",
            "NO_PROTOCOLS_AVAILABLE": f"no TLS version allowed (see {n['version']})",
            "TLSV1_ALERT_UNKNOWN_PSK_IDENTITY": f"the server does not know this PSK identity ({n['identity']})",
            "DECRYPTION_FAILED_OR_BAD_RECORD_MAC": psk_differs,
            "SSLV3_ALERT_BAD_RECORD_MAC": psk_differs,
            "TLSV1_ALERT_DECRYPT_ERROR": psk_differs,
            "NO_APPLICATION_PROTOCOL": f"the server accepted none of the {n['alpn']} protocols",
        }
        hint = hints.get(reason)
        if hint is None and "unknown psk identity" in reason.lower():
            hint, reason = hints["TLSV1_ALERT_UNKNOWN_PSK_IDENTITY"], "TLSV1_ALERT_UNKNOWN_PSK_IDENTITY"
        return f"TLS error: {hint} ({reason})" if hint else f"TLS error: {reason}"
    return f"TLS error: {exc}"


def _verify_message(exc: ssl.SSLCertVerificationError, host: str, n: dict) -> str:
    code = getattr(exc, "verify_code", None)
    text = getattr(exc, "verify_message", "") or str(exc)
    if code == 62 or "Hostname mismatch" in text or "IP address mismatch" in text:
        return (f"the server certificate is not valid for the host name {host!r} "
                f"({n['insecure']} skips this check)")
    if code == 10:
        return "the server certificate has expired"
    if code == 9:
        return "the server certificate is not yet valid"
    if code == 18:
        return f"the server certificate is self-signed and not in {n['ca']}"
    if code in (2, 19, 20):
        return f"the server certificate's issuer is not trusted (check {n['ca']})"
    return f"the server certificate failed verification: {text}"


def _describe_certificate(der: bytes) -> str:
    try:
        from cryptography import x509
    except ImportError:  # pragma: no cover
        return ""
    try:
        cert = x509.load_der_x509_certificate(der)
    except ValueError:
        return ""
    parts = [f"subject {cert.subject.rfc4514_string()}", f"issuer {cert.issuer.rfc4514_string()}"]
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = [str(n) for n in san.get_values_for_type(x509.DNSName)]
        names += [str(ip) for ip in san.get_values_for_type(x509.IPAddress)]
        parts.append("names " + ", ".join(names) if names else "no DNS/IP names")
    except x509.ExtensionNotFound:
        parts.append("no subjectAltName")
    fmt = "%Y-%m-%d %H:%M:%S UTC"
    parts.append(f"valid {cert.not_valid_before_utc.strftime(fmt)} to {cert.not_valid_after_utc.strftime(fmt)}")
    now = datetime.datetime.now(datetime.timezone.utc)
    if now > cert.not_valid_after_utc:
        parts.append("expired")
    return " [" + "; ".join(parts) + "]"
