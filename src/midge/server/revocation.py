"""Is a TLS client's certificate still good? OCSP at connect, and re-checks of live ones.

One `Revocation` per listener context (`TlsListenerContext.revocation`): a reload builds
a new context, so the CRLs consulted here are always those of the context in use.
`check()` runs after a handshake when the listener has `require_ocsp`; `sweep()` runs
every `tls_watch_interval` for `disconnect_on_revocation`. OpenSSL itself refuses
revoked certificates at the handshake (the CRLs are loaded into the SSLContext); this is
for what changes while a connection is open, and for OCSP, which OpenSSL's server side
does not do.
"""

from __future__ import annotations

from datetime import datetime, timezone

from midge.security.identity import TlsInfo
from midge.server.tls_diagnostics import FailureKind, TlsFailure


class Revocation:
    """The revocation checks of one listener: its CRLs' serials and its OCSP checker."""

    def __init__(self, listener, name: str, crls: list, log=None):
        self.listener = listener
        self.name = name
        self.log = log
        self._revoked_serials = {(crl.issuer.public_bytes(), entry.serial_number)
                                 for crl in crls for entry in crl}
        self._ocsp = None

    async def check(self, info: TlsInfo) -> TlsFailure | None:
        """OCSP check of the client certificate when `require_ocsp`; None = allowed."""
        if not self.listener.require_ocsp or info.peer_cert is None:
            return None
        if self._ocsp is None:
            from midge.server.ocsp import OcspChecker  # asyncio and HTTP: only when used

            self._ocsp = OcspChecker.from_listener(self.listener, log=self.log)
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
        return await self.check(info)

    async def sweep(self, connections) -> list:
        """disconnect_on_revocation: [(connection, TlsFailure)] for live connections to drop.

        connections: iterable of (connection, TlsInfo | None) for this listener; the
        server calls this periodically (e.g. every tls_watch_interval) and closes those
        returned. Returns [] when the listener does not ask for it.
        """
        if not self.listener.disconnect_on_revocation:
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
