"""OCSP checking of client certificates (no broker does this today; Mosquitto has no
`require_ocsp` listener option, only `bridge_require_ocsp` for stapled server responses).

After a client's handshake verified its chain, `OcspChecker.check(info)` asks the
responder named by `ocsp_responder` or by the certificate's AIA extension, over HTTP POST
with asyncio (no new dependency), and returns None (good) or a TlsFailure. Answers are
cached per certificate for `ocsp_cache_seconds` (never beyond the response's nextUpdate);
concurrent checks of one certificate share one request. Network or responder trouble
fails the connection, or lets it through with a warning when `ocsp_soft_fail` is true.
A revoked or unknown status always refuses (unknown only when hard-failing).
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timedelta, timezone
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509 import ocsp
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID

from midge.security.identity import TlsInfo, subject_string
from midge.server.tls_diagnostics import FailureKind, TlsFailure

CLOCK_SKEW = timedelta(seconds=300)  # as Mosquitto's bridge OCSP check
_MAX_RESPONSE = 1 << 20


class OcspError(Exception):
    """The responder could not give a usable answer (network, HTTP, signature, ...)."""


def responder_url(cert: x509.Certificate, configured: str | None = None) -> str | None:
    """The configured responder, else the first OCSP URL in the certificate's AIA."""
    if configured:
        return configured
    try:
        aia = cert.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
    except x509.ExtensionNotFound:
        return None
    for description in aia:
        if description.access_method == AuthorityInformationAccessOID.OCSP:
            return description.access_location.value
    return None


def build_request(cert: x509.Certificate, issuer: x509.Certificate) -> bytes:
    builder = ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, hashes.SHA1())
    return builder.build().public_bytes(Encoding.DER)


async def post(url: str, body: bytes, timeout: float) -> bytes:
    """HTTP/1.0 POST of an OCSP request; returns the response body."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise OcspError(f"unsupported responder URL {url!r} (http or https only)")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query

    async def exchange() -> bytes:
        ssl_arg = None
        if parts.scheme == "https":
            import ssl
            ssl_arg = ssl.create_default_context()
        reader, writer = await asyncio.open_connection(parts.hostname, port, ssl=ssl_arg)
        try:
            host = parts.hostname if parts.port is None else f"{parts.hostname}:{parts.port}"
            writer.write(f"POST {path} HTTP/1.0\r\nHost: {host}\r\n"
                         f"Content-Type: application/ocsp-request\r\nContent-Length: {len(body)}\r\n"
                         "Connection: close\r\n\r\n".encode("ascii") + body)
            await writer.drain()
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError:
                raise OcspError("responder sent no HTTP response") from None
            except asyncio.LimitOverrunError:
                raise OcspError("responder sent oversized HTTP headers") from None
            lines = head.decode("latin-1").split("\r\n")
            fields = lines[0].split()
            if len(fields) < 2 or fields[1] != "200":
                raise OcspError(f"responder answered {lines[0]!r}")
            length = None
            for line in lines[1:]:
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length" and value.strip().isdigit():
                    length = int(value.strip())
            if length is not None:
                if length > _MAX_RESPONSE:
                    raise OcspError("responder answer too large")
                try:
                    payload = await reader.readexactly(length)
                except asyncio.IncompleteReadError:
                    raise OcspError("responder closed before sending its whole answer") from None
            else:  # no Content-Length: the body ends at EOF
                payload = await reader.read(_MAX_RESPONSE + 1)
                while len(payload) <= _MAX_RESPONSE:
                    more = await reader.read(65536)
                    if not more:
                        break
                    payload += more
                if len(payload) > _MAX_RESPONSE:
                    raise OcspError("responder answer too large")
        finally:
            writer.close()
        return payload

    try:
        return await asyncio.wait_for(exchange(), timeout)
    except asyncio.TimeoutError:
        raise OcspError(f"no answer from {url} within {timeout:g} s (ocsp_timeout)") from None
    except OSError as exc:
        raise OcspError(f"cannot reach {url}: {exc.strerror or exc}") from None


def _verify_signature(response: ocsp.OCSPResponse, signer: x509.Certificate) -> None:
    key = signer.public_key()
    algorithm = response.signature_hash_algorithm
    try:
        if isinstance(key, rsa.RSAPublicKey):
            key.verify(response.signature, response.tbs_response_bytes, padding.PKCS1v15(), algorithm)
        elif isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(response.signature, response.tbs_response_bytes, ec.ECDSA(algorithm))
        else:
            key.verify(response.signature, response.tbs_response_bytes)
    except InvalidSignature:
        raise OcspError("the OCSP response signature does not verify") from None


def _signer(response: ocsp.OCSPResponse, issuer: x509.Certificate) -> x509.Certificate:
    """The issuer itself, or a certificate it delegated OCSP signing to (RFC 6960 §4.2.2.2)."""
    def is_responder(cert: x509.Certificate) -> bool:
        if response.responder_name is not None:
            return cert.subject == response.responder_name
        # SHA-1 of the subjectPublicKey bits: what RFC 5280 method 1 SKIs are
        key_hash = x509.SubjectKeyIdentifier.from_public_key(cert.public_key()).digest
        return response.responder_key_hash == key_hash

    if is_responder(issuer):
        return issuer
    for cert in response.certificates:
        if not is_responder(cert):
            continue
        if cert.issuer != issuer.subject:
            continue
        try:
            cert.verify_directly_issued_by(issuer)
            usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        except (ValueError, TypeError, InvalidSignature, x509.ExtensionNotFound):
            continue
        if ExtendedKeyUsageOID.OCSP_SIGNING in usage:
            return cert
    raise OcspError("the OCSP response is not signed by the issuer nor by a delegated responder")


def evaluate(data: bytes, cert: x509.Certificate, issuer: x509.Certificate,
             now: datetime | None = None) -> tuple[ocsp.OCSPCertStatus, ocsp.OCSPResponse]:
    """Parse and check a DER OCSP response for `cert`; raise OcspError when unusable."""
    now = now or datetime.now(timezone.utc)
    try:
        response = ocsp.load_der_ocsp_response(data)
    except ValueError as exc:
        raise OcspError(f"not an OCSP response ({exc})") from None
    if response.response_status != ocsp.OCSPResponseStatus.SUCCESSFUL:
        raise OcspError(f"responder status {response.response_status.name.lower()}")
    _verify_signature(response, _signer(response, issuer))
    for single in response.responses:
        if single.serial_number != cert.serial_number:
            continue
        if single.this_update_utc > now + CLOCK_SKEW:
            raise OcspError("the OCSP response is not valid yet (thisUpdate in the future)")
        if single.next_update_utc is not None and single.next_update_utc < now - CLOCK_SKEW:
            raise OcspError("the OCSP response is stale (nextUpdate has passed)")
        return single.certificate_status, single
    raise OcspError("the OCSP response does not cover this certificate")


class OcspChecker:
    """One listener's OCSP settings, cache and in-flight requests."""

    def __init__(self, responder: str | None = None, timeout: float = 5.0, cache_seconds: float = 300,
                 soft_fail: bool = False, log=None, clock=time.monotonic):
        self.responder = responder
        self.timeout = timeout
        self.cache_seconds = cache_seconds
        self.soft_fail = soft_fail
        self.log = log
        self.clock = clock
        self._cache: dict[tuple, tuple[float, TlsFailure | None]] = {}
        self._pending: dict[tuple, asyncio.Future] = {}
        self.requests = 0  # responder round trips made (for tests and $SYS)

    @classmethod
    def from_listener(cls, listener, log=None) -> "OcspChecker":
        return cls(listener.ocsp_responder, listener.ocsp_timeout, float(listener.ocsp_cache_seconds),
                   listener.ocsp_soft_fail, log)

    async def check(self, info: TlsInfo, listener: str = "") -> TlsFailure | None:
        cert = info.certificate
        if cert is None:
            return None
        issuer = _issuer_of(info)
        if issuer is None:
            return self._trouble(info, listener, "the issuer of the client certificate is not known "
                                 "(no verified chain), so no OCSP request can be made")
        key = (cert.issuer.public_bytes(), cert.serial_number)
        now = self.clock()
        cached = self._cache.get(key)
        if cached is not None and cached[0] > now:
            return _relabel(cached[1], info, listener)
        pending = self._pending.get(key)
        if pending is not None:
            return _relabel(await asyncio.shield(pending), info, listener)
        future = asyncio.get_running_loop().create_future()
        self._pending[key] = future
        try:
            result = await self._ask(info, cert, issuer, key, listener)
            future.set_result(result)
            return result
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: waiters get it, no "never retrieved" warning
            raise
        finally:
            del self._pending[key]

    async def _ask(self, info, cert, issuer, key, listener) -> TlsFailure | None:
        url = responder_url(cert, self.responder)
        if url is None:
            return self._trouble(info, listener, "the client certificate names no OCSP responder "
                                 "(no AIA extension) and ocsp_responder is not set")
        try:
            self.requests += 1
            data = await post(url, build_request(cert, issuer), self.timeout)
            status, single = evaluate(data, cert, issuer)
        except OcspError as exc:
            return self._trouble(info, listener, f"OCSP check failed: {exc}")
        about = f"serial {cert.serial_number:X}, subject {subject_string(cert.subject)}"
        lifetime = self.cache_seconds
        if single.next_update_utc is not None:
            remaining = (single.next_update_utc - datetime.now(timezone.utc)).total_seconds()
            lifetime = max(0.0, min(lifetime, remaining))
        if status == ocsp.OCSPCertStatus.GOOD:
            result = None
        elif status == ocsp.OCSPCertStatus.REVOKED:
            when = single.revocation_time_utc
            reason = single.revocation_reason
            result = TlsFailure(FailureKind.REVOKED,
                                f"the OCSP responder {url} says the client certificate ({about}) was "
                                f"revoked on {when:%Y-%m-%d %H:%M:%S} UTC"
                                + (f" ({reason.name})" if reason is not None else ""),
                                "midge", info_peer(info), listener, {"ocsp": url})
        else:
            if self.soft_fail:
                self._warn(f"OCSP responder {url} does not know the client certificate ({about}); "
                           "allowed because ocsp_soft_fail is true")
                return None
            result = TlsFailure(FailureKind.OCSP, f"the OCSP responder {url} does not know the client "
                                f"certificate ({about})", "midge", info_peer(info), listener, {"ocsp": url})
        self._cache[key] = (self.clock() + lifetime, result)
        if len(self._cache) > 100000:
            self._expire()
        return result

    def _trouble(self, info, listener, reason: str) -> TlsFailure | None:
        if self.soft_fail:
            self._warn(f"{reason}; allowed because ocsp_soft_fail is true")
            return None
        return TlsFailure(FailureKind.OCSP, reason, "midge", info_peer(info), listener)

    def _warn(self, line: str) -> None:
        if self.log is not None:
            self.log.warning(line)

    def _expire(self) -> None:
        now = self.clock()
        for key in [k for k, (until, _) in self._cache.items() if until <= now]:
            del self._cache[key]


def info_peer(info: TlsInfo) -> str:
    return info.peer


def _relabel(failure: TlsFailure | None, info: TlsInfo, listener: str) -> TlsFailure | None:
    if failure is None:
        return None
    return TlsFailure(failure.kind, failure.reason, failure.side, info_peer(info), listener, failure.details)


def _issuer_of(info: TlsInfo) -> x509.Certificate | None:
    """The issuer from the verified chain the TLS stage recorded."""
    chain = info.verified_chain
    if len(chain) < 2:
        return None
    try:
        return x509.load_der_x509_certificate(chain[1])
    except ValueError:
        return None
