"""A TLS listener's context: an `ssl.SSLContext` built like Mosquitto's, and its CRLs.

`TlsListenerContext.from_listener()` turns a listener's options into one `ssl.SSLContext`
(or raises `TlsSetupError` naming the option, the file and why), loads and checks its
CRLs, and installs the per-connection callbacks of `tls_stage.HandshakeCallbacks`.
`new_stage()` gives a connection its `TlsStage` (tls_stage.py); `revocation` checks live
certificates (revocation.py). The server rebuilds the context on reload and swaps it
whole: open connections keep theirs.
"""

from __future__ import annotations

import os
import ssl
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from cryptography import x509

from midge.server import ssl_private
from midge.server.revocation import Revocation
from midge.server.tls_stage import HandshakeCallbacks, TlsStage

#: Mosquitto's default `ciphers` (TLS <= 1.2 and PSK suites).
MOSQUITTO_CIPHERS = "DEFAULT:!aNULL:!eNULL:!LOW:!EXPORT:!SSLv2:@STRENGTH"
#: OpenSSL 3's default TLS 1.3 suites, in its order; the only `ciphers_tls1.3` value the
#: stdlib can honour (it has no SSL_CTX_set_ciphersuites before Python 3.15).
OPENSSL_TLS13_SUITES = "TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256:TLS_AES_128_GCM_SHA256"
_KNOWN_TLS13_SUITES = set(OPENSSL_TLS13_SUITES.split(":")) | {"TLS_AES_128_CCM_SHA256",
                                                             "TLS_AES_128_CCM_8_SHA256"}
_VERSIONS = {"tlsv1.3": ssl.TLSVersion.TLSv1_3, "tlsv1.2": ssl.TLSVersion.TLSv1_2,
             "tlsv1.1": ssl.TLSVersion.TLSv1_1}


class TlsSetupError(Exception):
    """A listener's TLS options cannot be used; `str()` names the option, the file and why."""

    def __init__(self, option: str, message: str, listener: str = ""):
        self.option = option
        self.message = message
        self.listener = listener
        where = f"listener {listener}: " if listener else ""
        super().__init__(f"{where}{option}: {message}")


def _readable(option: str, path: str, listener: str, directory: bool = False) -> Path:
    p = Path(path)
    if directory:
        if not p.is_dir():
            raise TlsSetupError(option, f"'{path}' is not a directory", listener)
        return p
    try:
        with open(p, "rb"):
            pass
    except OSError as exc:
        raise TlsSetupError(option, f"cannot read '{path}': {exc.strerror or exc}", listener) from None
    return p


def _ssl_reason(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None)
    library = getattr(exc, "library", None)
    if reason:
        return f"{reason.replace('_', ' ').lower()}" + (f" ({library})" if library else "")
    return str(exc)


def load_crls(path: str, option: str = "crlfile", listener: str = "",
              now: datetime | None = None) -> list[x509.CertificateRevocationList]:
    """Every CRL in a file (PEM, several allowed, or DER) or a directory of such files.

    Refuses an unreadable, unparsable, empty or expired CRL with a TlsSetupError.
    """
    now = now or datetime.now(timezone.utc)
    p = Path(path)
    files = sorted(f for f in p.iterdir() if f.is_file()) if p.is_dir() else [p]
    crls = []
    for file in files:
        try:
            data = file.read_bytes()
        except OSError as exc:
            raise TlsSetupError(option, f"cannot read '{file}': {exc.strerror or exc}", listener) from None
        try:
            if b"-----BEGIN X509 CRL-----" in data:
                found = []
                for block in data.split(b"-----END X509 CRL-----")[:-1]:
                    start = block.find(b"-----BEGIN X509 CRL-----")
                    found.append(x509.load_pem_x509_crl(block[start:] + b"-----END X509 CRL-----\n"))
            else:
                found = [x509.load_der_x509_crl(data)]
        except ValueError as exc:
            if p.is_dir():
                continue  # a directory may hold other files (README, hashes); only CRLs count
            raise TlsSetupError(option, f"'{file}' is not a PEM or DER CRL ({exc})", listener) from None
        for crl in found:
            next_update = crl.next_update_utc
            if next_update is not None and next_update < now:
                issuer = crl.issuer.rfc4514_string()
                raise TlsSetupError(
                    option, f"the CRL in '{file}' from {issuer} expired on "
                    f"{next_update:%Y-%m-%d %H:%M:%S} UTC (nextUpdate); OpenSSL would refuse every "
                    "client certificate; publish a fresh CRL", listener)
        crls.extend(found)
    if not crls:
        raise TlsSetupError(option, f"no CRL found in '{path}'", listener)
    return crls


class TlsListenerContext:
    """One listener's TLS configuration: the SSLContext and what its stages share."""

    def __init__(self, listener, ssl_context: ssl.SSLContext, files: list[str],
                 psk_lookup: Callable[[str], bytes | None] | None, log=None,
                 crls: list | None = None):
        self.listener = listener
        self.name = listener.name
        self.ssl_context = ssl_context
        self.files = files
        self.log = log
        self.crls = crls or []
        self.require_certificate = bool(listener.require_certificate)
        self.crl_check = listener.crl_check if listener.crlfile else None
        self.wants_chain = bool(listener.require_ocsp)
        self.callbacks = HandshakeCallbacks(psk_lookup)
        self.psk = False  # psk_hint set: stages track PSK sessions
        self.quiet_context: ssl.SSLContext | None = None
        self.revocation = Revocation(listener, self.name, self.crls, log)

    @classmethod
    def from_listener(cls, listener, psk_lookup=None, log=None) -> "TlsListenerContext":
        """Build the context for `listener`; raise TlsSetupError on any unusable option."""
        ssl_private.report(log)
        ctx, files, crls = build_ssl_context(listener)
        context = cls(listener, ctx, files, psk_lookup, log, crls)
        callbacks = context.callbacks
        psk_hint = listener.psk_hint
        if psk_hint:
            context.psk = True
            ctx.set_psk_server_callback(callbacks.psk, psk_hint)
            _no_psk_tickets(ctx)
        if ssl_private.set_message_callback is not None:
            # Only to explain failures (the certificate a client sent, the alert it sent);
            # without it, diagnostics lose detail. The callback costs ~3 us per record, so
            # a finished handshake moves its connection to a twin context without it
            # (`quiet_context`).
            ssl_private.set_message_callback(
                ctx, callbacks.message if context.require_certificate else callbacks.alert)
            quiet, _, _ = build_ssl_context(listener)
            if psk_hint:
                quiet.set_psk_server_callback(callbacks.psk, psk_hint)
                _no_psk_tickets(quiet)
            context.quiet_context = quiet
        return context

    def new_stage(self, peer: str = "") -> TlsStage:
        return TlsStage(self, peer)


def _check_crl_signatures(crls, cafile: str, name: str) -> None:
    """A CRL whose issuer is in cafile must carry that CA's signature.

    Otherwise OpenSSL would fail every handshake with "CRL signature failure"; better to
    say so at start (or keep the old context on reload).
    """
    try:
        cas = x509.load_pem_x509_certificates(Path(cafile).read_bytes())
    except (OSError, ValueError):
        return  # OpenSSL already loaded the file; leave odd formats to it
    for crl in crls:
        issuers = [ca for ca in cas if ca.subject == crl.issuer]
        if not issuers:
            continue
        if not any(_signed_by(crl, ca) for ca in issuers):
            raise TlsSetupError("crlfile", f"the CRL from {crl.issuer.rfc4514_string()} is not signed by "
                                "that CA in cafile (wrong or re-keyed CA?)", name)


def _signed_by(crl, ca) -> bool:
    try:
        return crl.is_signature_valid(ca.public_key())
    except (TypeError, ValueError):
        return False


def _no_psk_tickets(ctx: ssl.SSLContext) -> None:
    """Resumption must not lose the PSK identity, which Python cannot read from a session.

    No TLS 1.3 tickets (a resumed 1.3 session skips the PSK callback), and no TLS 1.2
    tickets: 1.2 sessions then resume by session id, which the stage maps to the identity.
    """
    ctx.num_tickets = 0
    ctx.options |= ssl.OP_NO_TICKET


def build_ssl_context(listener) -> tuple[ssl.SSLContext, list[str], list]:
    """The listener's SSLContext like Mosquitto's, its files, and its CRLs (parsed)."""
    name = listener.name
    files: list[str] = []

    def fail(option, message):
        raise TlsSetupError(option, message, name)

    keyform = str(listener.tls_keyform).lower()
    if keyform == "engine" or listener.tls_engine or listener.tls_engine_kpass_sha1:
        option = ("tls_engine" if listener.tls_engine else
                  "tls_keyform" if keyform == "engine" else "tls_engine_kpass_sha1")
        fail(option, "OpenSSL engine keys cannot be loaded by midge (Python's ssl module has no "
             "ENGINE or provider API); export the key to a PEM keyfile (encrypted keys are "
             "fine with keyfile_password_file), or terminate TLS in front of midge")

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    # As Mosquitto: no compression, server cipher preference, no renegotiation.
    ctx.options |= (ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE
                    | ssl.OP_NO_RENEGOTIATION | ssl.OP_SINGLE_DH_USE | ssl.OP_SINGLE_ECDH_USE)
    # Mosquitto sets neither VERIFY_X509_STRICT nor VERIFY_X509_PARTIAL_CHAIN; nor do we.
    ctx.verify_flags &= ~(ssl.VERIFY_X509_STRICT | ssl.VERIFY_X509_PARTIAL_CHAIN)

    version = listener.tls_version
    if version is None:
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    elif version in _VERSIONS:
        ctx.minimum_version = _VERSIONS[version]
    else:
        fail("tls_version", f"Unsupported tls_version '{version}'; use tlsv1.3, tlsv1.2 or tlsv1.1 "
             "(a minimum version)")

    ciphers = listener.ciphers or MOSQUITTO_CIPHERS
    try:
        ctx.set_ciphers(ciphers)
    except ssl.SSLError:
        fail("ciphers", f"no usable cipher in '{ciphers}' (see `openssl ciphers -v '{ciphers}'`)")

    suites = listener.ciphers_tls1_3
    if suites is not None:
        names = [s for s in suites.split(":") if s]
        unknown = [s for s in names if s not in _KNOWN_TLS13_SUITES]
        if unknown:
            fail("ciphers_tls1.3", f"unknown TLS 1.3 ciphersuite {unknown[0]!r}; known: "
                 + ", ".join(sorted(_KNOWN_TLS13_SUITES)))
        if ":".join(names) != OPENSSL_TLS13_SUITES:
            fail("ciphers_tls1.3", f"'{suites}' cannot be applied: Python's ssl module (before "
                 "3.15) cannot set TLS 1.3 ciphersuites, and midge will not silently use others. "
                 f"Remove the option to use OpenSSL's default ({OPENSSL_TLS13_SUITES}), or set "
                 "`Ciphersuites` in the system OpenSSL configuration (OPENSSL_CONF) for the "
                 "whole process")

    certfile, keyfile = listener.certfile, listener.keyfile
    if bool(certfile) != bool(keyfile):
        fail("keyfile" if certfile else "certfile",
             "certfile and keyfile must be given together (Mosquitto would silently serve "
             "plaintext here)")
    if certfile:
        _readable("certfile", certfile, name)
        key_path = _readable("keyfile", keyfile, name)
        files += [str(certfile), str(keyfile)]
        password = _key_password(listener, key_path, name, files)
        try:
            ctx.load_cert_chain(certfile, keyfile, password=password)
        except ssl.SSLError as exc:
            reason = _ssl_reason(exc)
            if exc.reason in ("KEY_VALUES_MISMATCH", "NO_CERTIFICATE_ASSIGNED"):
                fail("keyfile", f"'{keyfile}' is not the private key of the certificate in '{certfile}'")
            if listener.keyfile_password_file and b"ENCRYPTED" in key_path.read_bytes():
                fail("keyfile_password_file", f"cannot decrypt '{keyfile}' with the password in "
                     f"'{listener.keyfile_password_file}' ({reason})")
            fail("certfile", f"cannot load '{certfile}' / '{keyfile}': {reason}")
        except (ValueError, TypeError) as exc:
            fail("keyfile", f"cannot load '{keyfile}': {exc}")

    cafile, capath = listener.cafile, listener.capath
    if cafile:
        _readable("cafile", cafile, name)
        files.append(str(cafile))
    if capath:
        _readable("capath", capath, name, directory=True)
        files.append(str(capath))
    if cafile or capath:
        try:
            ctx.load_verify_locations(cafile=cafile, capath=capath)
        except ssl.SSLError as exc:
            fail("cafile" if cafile else "capath", f"cannot load CA certificates from "
                 f"'{cafile or capath}': {_ssl_reason(exc)}")

    require = bool(listener.require_certificate)
    if require:
        if not (cafile or capath):
            fail("require_certificate", "true needs cafile or capath: without a CA no client "
                 "certificate can be verified and every client would be refused")
        ctx.verify_mode = ssl.CERT_REQUIRED
    else:
        ctx.verify_mode = ssl.CERT_NONE  # as Mosquitto: never ask for a client certificate

    crls = []
    crlfile = listener.crlfile
    if crlfile:
        crl_check = listener.crl_check
        if crl_check not in ("leaf", "chain"):
            fail("crl_check", f"'{crl_check}' is not leaf or chain")
        if not Path(crlfile).exists():
            fail("crlfile", f"cannot read '{crlfile}': No such file or directory")
        crls = load_crls(crlfile, listener=name)
        if cafile:
            _check_crl_signatures(crls, cafile, name)
        files.append(str(crlfile))
        _load_crls_into(ctx, crls, name)
        ctx.verify_flags |= (ssl.VERIFY_CRL_CHECK_CHAIN if crl_check == "chain"
                             else ssl.VERIFY_CRL_CHECK_LEAF)

    dhparamfile = listener.dhparamfile
    if dhparamfile:
        _readable("dhparamfile", dhparamfile, name)
        try:
            ctx.load_dh_params(dhparamfile)
        except (ssl.SSLError, OSError) as exc:
            fail("dhparamfile", f"cannot load DH parameters from '{dhparamfile}': {_ssl_reason(exc)}")
        files.append(str(dhparamfile))

    psk_hint = listener.psk_hint
    psk_file = listener.security.psk_file
    if not certfile and not psk_hint:
        fail("certfile", "TLS needs certfile and keyfile, or psk_hint")
    if psk_file and not listener.psk_tls13:
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2  # Mosquitto 2.0.12+: no PSK over TLS 1.3
        if version == "tlsv1.3":
            fail("psk_tls13", "false turns TLS 1.3 off, but tls_version tlsv1.3 allows nothing else")
    if psk_file:
        files.append(str(psk_file))
    # One TLS 1.3 session ticket per handshake instead of OpenSSL's default two: a client
    # resumes one connection at a time, and each ticket costs an encryption and a record
    # (bench: full P-256 handshakes 580 -> 640 per CPU-second, resumed ones unchanged).
    ctx.num_tickets = 1

    return ctx, files, crls


def _key_password(listener, key_path: Path, name: str, files: list[str]):
    """The keyfile password callback: never let OpenSSL prompt on a terminal."""
    encrypted = b"ENCRYPTED" in key_path.read_bytes()
    password_file = listener.keyfile_password_file
    if password_file:
        _readable("keyfile_password_file", password_file, name)
        files.append(str(password_file))
        lines = Path(password_file).read_bytes().splitlines()
        secret = lines[0] if lines else b""
        return lambda: secret
    if encrypted:
        raise TlsSetupError("keyfile", f"'{key_path}' is encrypted; give its password in a file with "
                            "keyfile_password_file (midge never prompts), or decrypt the key", name)
    return lambda: b""


def _load_crls_into(ctx: ssl.SSLContext, crls, name: str) -> None:
    """load_verify_locations reads CRLs only from files: write them as one PEM file."""
    from cryptography.hazmat.primitives.serialization import Encoding

    handle, path = tempfile.mkstemp(prefix="midge-crl-", suffix=".pem")
    try:
        with os.fdopen(handle, "wb") as out:
            for crl in crls:
                out.write(crl.public_bytes(Encoding.PEM))
        ctx.load_verify_locations(cafile=path)
    except ssl.SSLError as exc:
        raise TlsSetupError("crlfile", f"OpenSSL refused the CRLs: {_ssl_reason(exc)}", name) from None
    finally:
        os.unlink(path)
