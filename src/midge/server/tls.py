"""TLS for a listener: an SSLContext built like Mosquitto's, and a per-connection stage.

`TlsListenerContext.from_listener()` turns a listener's options into one `ssl.SSLContext`
(or raises `TlsSetupError` naming the option, the file and why). `new_stage()` gives a
`TlsStage` that drives `ssl.SSLObject` over two `MemoryBIO`s: the server feeds it
ciphertext and writes what `data_to_send()` returns. No asyncio SSL transport, so no
256 KiB read buffer per connection (see docs/tls.md for the measured cost).

PSK identity per connection: the stdlib PSK server callback is told the identity but not
the connection. The stage sets `context._handshaking = self` around each call into
OpenSSL that can run the handshake (`do_handshake()`, `read()`), and the callback records
the identity on that stage. This is correct because the event loop is single-threaded and
OpenSSL calls the callback synchronously inside that call, on this thread; no other
stage can run in between.
"""

from __future__ import annotations

import _ssl
import os
import ssl
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from cryptography import x509

from midge import files as fileaccess
from midge.security.identity import TlsInfo
from midge.server.tls_diagnostics import (
    FailureKind,
    HandshakeFacts,
    TlsFailure,
    client_aborted,
    diagnose,
    sniff_plaintext,
)

__all__ = ["TlsListenerContext", "TlsStage", "TlsSetupError", "TlsFailure", "TlsInfo",
           "MOSQUITTO_CIPHERS", "OPENSSL_TLS13_SUITES"]

#: Mosquitto's default `ciphers` (TLS <= 1.2 and PSK suites).
MOSQUITTO_CIPHERS = "DEFAULT:!aNULL:!eNULL:!LOW:!EXPORT:!SSLv2:@STRENGTH"
#: OpenSSL 3's default TLS 1.3 suites, in its order; the only `ciphers_tls1.3` value the
#: stdlib can honour (it has no SSL_CTX_set_ciphersuites before Python 3.15).
OPENSSL_TLS13_SUITES = "TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256:TLS_AES_128_GCM_SHA256"
_KNOWN_TLS13_SUITES = set(OPENSSL_TLS13_SUITES.split(":")) | {"TLS_AES_128_CCM_SHA256",
                                                             "TLS_AES_128_CCM_8_SHA256"}
_VERSIONS = {"tlsv1.3": ssl.TLSVersion.TLSv1_3, "tlsv1.2": ssl.TLSVersion.TLSv1_2,
             "tlsv1.1": ssl.TLSVersion.TLSv1_1}
_READ_SIZE = 65536  # more than a TLS record's plaintext (16 KiB): one read empties a record
# A MemoryBIO never gives memory back: its buffer keeps room for the most bytes it ever
# held at once (x 4/3) for the life of the connection. So ciphertext goes into the
# incoming BIO in pieces, OpenSSL taking each before the next: small ones during the
# handshake (the client's certificate flight would otherwise leave ~1.4 KiB per idle
# connection), record-sized ones after it (a 256 KiB socket read would otherwise leave
# ~340 KiB per connection that once received a burst).
_HANDSHAKE_PIECE = 256
_RECORD_PIECE = 16384
_PSK_SESSION_LIMIT = 10000

# TLS record / handshake numbers seen by the message callback.
_CONTENT_ALERT = 21
_CONTENT_HANDSHAKE = 22
_HANDSHAKE_CERTIFICATE = 11


class TlsSetupError(Exception):
    """A listener's TLS options cannot be used; `str()` names the option, the file and why."""

    def __init__(self, option: str, message: str, listener: str = ""):
        self.option = option
        self.message = message
        self.listener = listener
        where = f"listener {listener}: " if listener else ""
        super().__init__(f"{where}{option}: {message}")


def _get(listener, name: str, default=None):
    value = getattr(listener, name, default)
    return default if value is None else value


def _listener_name(listener) -> str:
    name = getattr(listener, "name", None)
    if name:
        return str(name)
    port = getattr(listener, "port", None)
    return str(port) if port is not None else "?"


def _readable(option: str, path: str, listener: str, directory: bool = False) -> Path:
    p = Path(path)
    if directory:
        if not fileaccess.is_dir(p):
            raise TlsSetupError(option, f"'{path}' is not a directory", listener)
        return p
    try:
        fileaccess.read_bytes(p)  # after the switch to `user`: via the root keeper
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
    is_dir = fileaccess.is_dir(p)
    files = (sorted(p / name for name in fileaccess.listdir(p) if fileaccess.is_file(p / name))
             if is_dir else [p])
    crls = []
    for file in files:
        try:
            data = fileaccess.read_bytes(file)
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
            if is_dir:
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
    """One listener's TLS configuration: the SSLContext and what the stages share."""

    def __init__(self, listener, ssl_context: ssl.SSLContext, files: list[str],
                 psk_lookup: Callable[[str], bytes | None] | None, log=None,
                 crls: list | None = None):
        self.listener = listener
        self.name = _listener_name(listener)
        self.ssl_context = ssl_context
        self.files = files
        self.log = log
        self.crls = crls or []
        self.require_certificate = bool(_get(listener, "require_certificate", False))
        self.crl_check = _get(listener, "crl_check", "leaf") if _get(listener, "crlfile") else None
        self._psk_lookup = psk_lookup
        self.wants_chain = bool(_get(listener, "require_ocsp", False))
        self._handshaking: TlsStage | None = None
        self._psk_sessions: dict[bytes, str] = {}
        self.psk = False  # psk_hint set: stages track PSK sessions
        self._ocsp = None
        self.quiet_context: ssl.SSLContext | None = None
        self.certificate_not_after: datetime | None = None  # certfile's leaf, for metrics
        self._revoked_serials = {(crl.issuer.public_bytes(), entry.serial_number)
                                 for crl in self.crls for entry in crl}

    # -- building -------------------------------------------------------------------

    @classmethod
    def from_listener(cls, listener, psk_lookup=None, log=None) -> "TlsListenerContext":
        """Build the context for `listener`; raise TlsSetupError on any unusable option."""
        ctx, files, crls = build_ssl_context(listener)
        context = cls(listener, ctx, files, psk_lookup, log, crls)
        context.certificate_not_after = _not_after(_get(listener, "certfile"))
        if log is not None and _get(listener, "require_ocsp", False):
            from midge.server.ocsp import unreachable_responder

            warning = unreachable_responder(listener)
            if warning:
                where = getattr(listener, "origins", {}).get("require_ocsp")
                prefix = f"{where[0]}:{where[1]}: " if where else ""
                log.warning(f"Warning: {prefix}listener {context.name}: {warning}")
        psk_hint = _get(listener, "psk_hint")
        if psk_hint:
            context.psk = True
            ctx.set_psk_server_callback(context._psk_callback, psk_hint)
            _no_psk_tickets(ctx)
        if hasattr(ctx, "_msg_callback"):
            # Only to explain failures (the certificate a client sent, the alert it sent);
            # private but stable since Python 3.8. Without it, diagnostics lose detail.
            # The callback costs ~3 us per record, so a finished handshake moves its
            # connection to a twin context without it (`quiet_context`).
            _set_message_callback(ctx, context._message_callback if context.require_certificate
                                  else context._alert_callback)
            quiet, _, _ = build_ssl_context(listener)
            if psk_hint:
                quiet.set_psk_server_callback(context._psk_callback, psk_hint)
                _no_psk_tickets(quiet)
            context.quiet_context = quiet
        return context

    # -- connections ----------------------------------------------------------------

    def new_stage(self, peer: str = "") -> "TlsStage":
        return TlsStage(self, peer)

    def _psk_callback(self, identity: str | None) -> bytes:
        stage = self._handshaking
        if stage is None or identity is None or self._psk_lookup is None:
            return b""
        facts = stage._facts
        if facts is not None:
            facts.psk_identity = identity
        try:
            identity.encode("utf-8")  # Mosquitto 2.0.16+: identities must be UTF-8
            key = self._psk_lookup(identity)
        except Exception:  # an error in a plugin or bad identity: refuse, never raise into OpenSSL
            key = None
        if facts is not None:
            facts.psk_known = bool(key)
        if key:
            stage._psk_identity = identity
            return key
        return b""

    def _message_callback(self, conn, direction, version, content_type, msg_type, data) -> None:
        stage = self._handshaking
        if stage is None or direction != "read" or stage._facts is None:
            return
        if content_type == _CONTENT_HANDSHAKE and msg_type == _HANDSHAKE_CERTIFICATE:
            stage._facts.client_certificate = _first_certificate(data, version)
        elif content_type == _CONTENT_ALERT and len(data) >= 2:
            stage._facts.alert_from_client = data[1]

    def _alert_callback(self, conn, direction, version, content_type, msg_type, data) -> None:
        stage = self._handshaking
        if (stage is not None and direction == "read" and content_type == _CONTENT_ALERT
                and stage._facts is not None and len(data) >= 2):
            stage._facts.alert_from_client = data[1]

    # -- revocation -----------------------------------------------------------------

    async def check_revocation(self, info: TlsInfo) -> TlsFailure | None:
        """OCSP check of the client certificate when `require_ocsp`; None = allowed."""
        if not _get(self.listener, "require_ocsp", False) or info.peer_cert is None:
            return None
        from midge.server.ocsp import OcspChecker
        if self._ocsp is None:
            self._ocsp = OcspChecker.from_listener(self.listener, self.ssl_context, self.log)
        return await self._ocsp.check(info, listener=self.name)

    async def recheck(self, info: TlsInfo, now: datetime | None = None) -> TlsFailure | None:
        """For disconnect_on_revocation: is a live connection's certificate still good?

        Expired now, revoked in this context's CRLs (a reloaded context has the new ones),
        or revoked by OCSP (when require_ocsp). The server calls this periodically.
        """
        cert = info.certificate
        if cert is None:
            return None
        now = now or datetime.now(timezone.utc)
        if cert.not_valid_after_utc < now:
            return TlsFailure(FailureKind.EXPIRED, f"the client certificate expired on "
                              f"{cert.not_valid_after_utc:%Y-%m-%d %H:%M:%S} UTC (subject "
                              f"{info.subject_string})", "midge", listener=self.name)
        if (cert.issuer.public_bytes(), cert.serial_number) in self._revoked_serials:
            return TlsFailure(FailureKind.REVOKED, f"the client certificate serial {cert.serial_number:X} "
                              f"is now revoked by the CRL (subject {info.subject_string})", "midge",
                              listener=self.name)
        return await self.check_revocation(info)

    async def sweep(self, connections) -> list:
        """disconnect_on_revocation: [(connection, TlsFailure)] for live connections to drop.

        connections: iterable of (connection, TlsInfo | None) for this listener; the
        server calls this periodically (e.g. every tls_watch_interval) and closes those
        returned. Returns [] when the listener does not ask for it.
        """
        if not _get(self.listener, "disconnect_on_revocation", False):
            return []
        doomed = []
        now = datetime.now(timezone.utc)
        for connection, info in connections:
            if info is None or info.peer_cert is None:
                continue
            failure = await self.recheck(info, now)
            if failure is not None:
                doomed.append((connection, failure))
        return doomed



def _not_after(certfile) -> datetime | None:
    """When the first certificate of `certfile` expires (None without one)."""
    if not certfile:
        return None
    try:
        return x509.load_pem_x509_certificates(fileaccess.read_bytes(certfile))[0].not_valid_after_utc
    except (OSError, ValueError, IndexError):
        return None


def _check_crl_signatures(crls, cafile: str, name: str) -> None:
    """A CRL whose issuer is in cafile must carry that CA's signature.

    Otherwise OpenSSL would fail every handshake with "CRL signature failure"; better to
    say so at start (or keep the old context on reload).
    """
    try:
        cas = x509.load_pem_x509_certificates(fileaccess.read_bytes(cafile))
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


def _set_message_callback(ctx: ssl.SSLContext, callback) -> None:
    """Install the TLS message callback, with raw ints rather than ssl.py's enums.

    ssl.py's `_msg_callback` setter wraps the callback in a function that turns version,
    content type and message type into enums before each call, ~25 calls a handshake
    (bench handshake-p256 profile: 3 % of the broker's CPU). The callbacks here compare
    plain numbers, so the C object's own attribute is set when it exists.
    """
    raw = getattr(_ssl._SSLContext, "_msg_callback", None)
    if hasattr(raw, "__set__"):
        raw.__set__(ctx, callback)
    else:
        ctx._msg_callback = callback


def _no_psk_tickets(ctx: ssl.SSLContext) -> None:
    """Resumption must not lose the PSK identity, which Python cannot read from a session.

    No TLS 1.3 tickets (a resumed 1.3 session skips the PSK callback), and no TLS 1.2
    tickets: 1.2 sessions then resume by session id, which the stage maps to the identity.
    """
    ctx.num_tickets = 0
    ctx.options |= ssl.OP_NO_TICKET


def build_ssl_context(listener) -> tuple[ssl.SSLContext, list[str], list]:
    """The listener's SSLContext like Mosquitto's, its files, and its CRLs (parsed)."""
    name = _listener_name(listener)
    files: list[str] = []

    def fail(option, message):
        raise TlsSetupError(option, message, name)

    keyform = str(_get(listener, "tls_keyform", "pem")).lower()
    if keyform == "engine" or _get(listener, "tls_engine") or _get(listener, "tls_engine_kpass_sha1"):
        option = ("tls_engine" if _get(listener, "tls_engine") else
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

    version = _get(listener, "tls_version")
    if version is None:
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    elif version in _VERSIONS:
        ctx.minimum_version = _VERSIONS[version]
    else:
        fail("tls_version", f"Unsupported tls_version '{version}'; use tlsv1.3, tlsv1.2 or tlsv1.1 "
             "(a minimum version)")

    ciphers = _get(listener, "ciphers", MOSQUITTO_CIPHERS)
    try:
        ctx.set_ciphers(ciphers)
    except ssl.SSLError:
        fail("ciphers", f"no usable cipher in '{ciphers}' (see `openssl ciphers -v '{ciphers}'`)")

    suites = _get(listener, "ciphers_tls1_3")
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

    certfile, keyfile = _get(listener, "certfile"), _get(listener, "keyfile")
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
            with fileaccess.openable(certfile) as cert_path, fileaccess.openable(keyfile) as key_path_:
                ctx.load_cert_chain(cert_path, key_path_, password=password)
        except ssl.SSLError as exc:
            reason = _ssl_reason(exc)
            if exc.reason in ("KEY_VALUES_MISMATCH", "NO_CERTIFICATE_ASSIGNED"):
                fail("keyfile", f"'{keyfile}' is not the private key of the certificate in '{certfile}'")
            if _get(listener, "keyfile_password_file") and b"ENCRYPTED" in fileaccess.read_bytes(key_path):
                fail("keyfile_password_file", f"cannot decrypt '{keyfile}' with the password in "
                     f"'{_get(listener, 'keyfile_password_file')}' ({reason})")
            fail("certfile", f"cannot load '{certfile}' / '{keyfile}': {reason}")
        except (ValueError, TypeError) as exc:
            fail("keyfile", f"cannot load '{keyfile}': {exc}")

    cafile, capath = _get(listener, "cafile"), _get(listener, "capath")
    if cafile:
        _readable("cafile", cafile, name)
        files.append(str(cafile))
    if capath:
        _readable("capath", capath, name, directory=True)
        files.append(str(capath))
    if cafile or capath:
        try:
            with fileaccess.openable(cafile) as ca_path:
                ctx.load_verify_locations(cafile=ca_path, capath=capath)
        except ssl.SSLError as exc:
            fail("cafile" if cafile else "capath", f"cannot load CA certificates from "
                 f"'{cafile or capath}': {_ssl_reason(exc)}")

    require = bool(_get(listener, "require_certificate", False))
    if require:
        if not (cafile or capath):
            fail("require_certificate", "true needs cafile or capath: without a CA no client "
                 "certificate can be verified and every client would be refused")
        ctx.verify_mode = ssl.CERT_REQUIRED
    else:
        ctx.verify_mode = ssl.CERT_NONE  # as Mosquitto: never ask for a client certificate

    crls = []
    crlfile = _get(listener, "crlfile")
    if crlfile:
        crl_check = _get(listener, "crl_check", "leaf")
        if crl_check not in ("leaf", "chain"):
            fail("crl_check", f"'{crl_check}' is not leaf or chain")
        if not fileaccess.exists(crlfile):
            fail("crlfile", f"cannot read '{crlfile}': No such file or directory")
        crls = load_crls(crlfile, listener=name)
        if cafile:
            _check_crl_signatures(crls, cafile, name)
        files.append(str(crlfile))
        _load_crls_into(ctx, crls, name)
        ctx.verify_flags |= (ssl.VERIFY_CRL_CHECK_CHAIN if crl_check == "chain"
                             else ssl.VERIFY_CRL_CHECK_LEAF)

    dhparamfile = _get(listener, "dhparamfile")
    if dhparamfile:
        _readable("dhparamfile", dhparamfile, name)
        try:
            with fileaccess.openable(dhparamfile) as dh_path:
                ctx.load_dh_params(dh_path)
        except (ssl.SSLError, OSError) as exc:
            fail("dhparamfile", f"cannot load DH parameters from '{dhparamfile}': {_ssl_reason(exc)}")
        files.append(str(dhparamfile))

    psk_hint = _get(listener, "psk_hint")
    security = getattr(listener, "security", None)
    psk_file = getattr(security, "psk_file", None) if security is not None else None
    if not certfile and not psk_hint:
        fail("certfile", "TLS needs certfile and keyfile, or psk_hint")
    if psk_file and not _get(listener, "psk_tls13", True):
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
    encrypted = b"ENCRYPTED" in fileaccess.read_bytes(key_path)
    password_file = _get(listener, "keyfile_password_file")
    if password_file:
        _readable("keyfile_password_file", password_file, name)
        files.append(str(password_file))
        lines = fileaccess.read_bytes(password_file).splitlines()
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


def _first_certificate(message: bytes, version: int) -> bytes | None:
    """The leaf DER from a Certificate handshake message (with its 4-byte header)."""
    try:
        body = message[4:]
        offset = 0
        if version == ssl.TLSVersion.TLSv1_3:
            offset = 1 + body[0]  # certificate_request_context
        list_length = int.from_bytes(body[offset:offset + 3], "big")
        if list_length == 0:
            return None
        offset += 3
        cert_length = int.from_bytes(body[offset:offset + 3], "big")
        der = body[offset + 3:offset + 3 + cert_length]
        return bytes(der) if len(der) == cert_length else None
    except (IndexError, ValueError):
        return None


class TlsStage:
    """One connection's TLS: ciphertext in through `feed`, out through `data_to_send`."""

    __slots__ = ("_context", "peer", "_incoming", "_outgoing", "_ssl", "handshake_complete",
                 "failure", "info", "_facts", "_psk_identity", "closed", "closed_by_peer",
                 "_sealed")

    def __init__(self, context: TlsListenerContext, peer: str = ""):
        self._context = context
        self.peer = peer
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._ssl = context.ssl_context.wrap_bio(self._incoming, self._outgoing, server_side=True)
        self.handshake_complete = False
        self.failure: TlsFailure | None = None
        self.info: TlsInfo | None = None
        self._facts: HandshakeFacts | None = HandshakeFacts(
            require_certificate=context.require_certificate, crl_check=context.crl_check)
        self._psk_identity: str | None = None
        self.closed = False
        self.closed_by_peer = False  # the client sent close_notify
        self._sealed: list[bytes] | tuple = ()  # records of a large send() not yet collected

    def feed(self, data: bytes) -> bytes:
        """Ciphertext from the socket in; application bytes out (may be b"")."""
        if self.failure is not None or self.closed:
            return b""
        if not self.handshake_complete:
            facts = self._facts
            if not facts.first_bytes and data:
                facts.first_bytes = bytes(data[:8])
                sniffed = sniff_plaintext(facts.first_bytes)
                if sniffed is not None:
                    self._fail(TlsFailure(sniffed[0], sniffed[1], "client", self.peer, self._context.name))
                    return b""
            data = self._feed_handshake(data)
            if data is None:
                return b""
        chunks: list[bytes] = []
        if len(data) <= _RECORD_PIECE:
            self._incoming.write(data)
            self._read(chunks)
        else:
            view = memoryview(data)
            for start in range(0, len(data), _RECORD_PIECE):
                self._incoming.write(view[start:start + _RECORD_PIECE])
                self._read(chunks)
                if self.failure is not None or self.closed:
                    break
        if not chunks:
            return b""
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def _feed_handshake(self, data) -> bytes | None:
        """Hand `data` to the handshake in small pieces (see _HANDSHAKE_PIECE).

        Returns the bytes not yet given to OpenSSL once the handshake is complete (the
        start of the MQTT stream may follow the client's Finished), None until then or
        when it failed.
        """
        incoming = self._incoming
        for start in range(0, len(data), _HANDSHAKE_PIECE):
            incoming.write(data[start:start + _HANDSHAKE_PIECE])
            if self._handshake():
                return data[start + _HANDSHAKE_PIECE:]
            if self.failure is not None:
                return None
        return None

    def _handshake(self) -> bool:
        context = self._context
        context._handshaking = self
        try:
            self._ssl.do_handshake()
        except ssl.SSLWantReadError:
            return False
        except ssl.SSLError as exc:
            self._fail(diagnose(exc, self._facts, self.peer, context.name))
            return False
        finally:
            context._handshaking = None
        self.handshake_complete = True
        self.info = self._make_info()
        if context.quiet_context is not None:
            self._ssl.context = context.quiet_context  # drop the diagnostics callback
        self._facts = None  # only needed to explain a failure
        return True

    def _make_info(self) -> TlsInfo:
        ssl_object = self._ssl
        cipher = ssl_object.cipher()
        psk_identity = self._psk_identity
        if self._context.psk:
            # Only PSK listeners need the session: `ssl_object.session` builds an
            # SSLSession (bench: 8 % of a certificate handshake).
            sessions = self._context._psk_sessions
            session = ssl_object.session
            if psk_identity is not None:
                if session is not None and session.id:
                    if len(sessions) >= _PSK_SESSION_LIMIT:
                        del sessions[next(iter(sessions))]  # forget the oldest
                    sessions[session.id] = psk_identity
            elif ssl_object.session_reused and session is not None:
                psk_identity = sessions.get(session.id)  # a TLS 1.2 PSK session resumed by id
        peer_cert = ssl_object.getpeercert(binary_form=True)
        chain = ()
        if peer_cert is not None and self._context.wants_chain:
            chain = tuple(ssl_object.get_verified_chain())
        return TlsInfo(
            # Interned: a handful of distinct names, ~110 B less per connection.
            version=sys.intern(ssl_object.version() or ""),
            cipher=sys.intern(cipher[0]) if cipher else "",
            peer_cert=peer_cert,
            psk_identity=psk_identity,
            listener=self._context.name,
            verified_chain=chain,
            peer=self.peer,
        )

    def _read(self, chunks: list) -> None:
        """Decrypt the records in the incoming BIO, appending their plaintext to `chunks`.

        Reads only while the BIO holds ciphertext: each read takes one whole record
        (OpenSSL reads no further ahead) and its plaintext (_READ_SIZE is larger than a
        record), so an empty BIO means nothing is left to read. A read on an empty BIO
        would cost an SSLWantReadError and a 17 KiB read buffer allocated and freed
        (bench: one 100-byte record per socket read, 2.5 -> 1.2 us in feed()).
        """
        context = self._context
        incoming = self._incoming
        # The C object's read, skipping SSLObject.read's Python frame (~25 ns a record);
        # SSLObject has wrapped `_sslobj` since Python 3.5.
        read = self._ssl._sslobj.read
        context._handshaking = self
        try:
            while incoming.pending:
                try:
                    chunk = read(_READ_SIZE)
                except ssl.SSLWantReadError:
                    break  # the BIO held the start of a record; OpenSSL keeps it
                except ssl.SSLZeroReturnError:
                    self.closed = self.closed_by_peer = True  # close_notify from the client
                    break
                except ssl.SSLError as exc:
                    facts = self._facts or HandshakeFacts()
                    self._fail(diagnose(exc, facts, self.peer, context.name))
                    break
                if not chunk:
                    break
                chunks.append(chunk)
        finally:
            context._handshaking = None

    def _fail(self, failure: TlsFailure) -> None:
        self.failure = failure  # the server logs it (str() reads well after "failed: ")

    def data_to_send(self) -> bytes:
        """Ciphertext to write to the socket (handshake, alerts, records)."""
        outgoing = self._outgoing
        data = outgoing.read() if outgoing.pending else b""
        if self._sealed:
            data = b"".join((*self._sealed, data))
            self._sealed = ()
        return data

    def send(self, data: bytes) -> None:
        """Encrypt application bytes; collect them with data_to_send()."""
        if not self.handshake_complete or self.failure is not None:
            raise ssl.SSLError("TLS stage cannot send before its handshake completes")
        if len(data) <= _RECORD_PIECE:
            self._ssl.write(data)
            return
        # A large write is encrypted one record at a time and taken out of the outgoing
        # BIO at once, so that the BIO, which keeps its largest size, stays record-sized.
        outgoing = self._outgoing
        sealed = self._sealed
        if not sealed:
            self._sealed = sealed = []
        view = memoryview(data)
        for start in range(0, len(data), _RECORD_PIECE):
            self._ssl.write(view[start:start + _RECORD_PIECE])
            sealed.append(outgoing.read())

    def close(self) -> None:
        """Queue close_notify."""
        if self.closed and not self.handshake_complete:
            return
        self.closed = True
        try:
            self._ssl.unwrap()
        except ssl.SSLError:
            pass  # want-read after sending close_notify, or a failed handshake: nothing to do

    def abort_failure(self) -> TlsFailure:
        """The failure to log when the socket closes before the handshake completed."""
        return client_aborted(self._facts or HandshakeFacts(), self.peer, self._context.name)
