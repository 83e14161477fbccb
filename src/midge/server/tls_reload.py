"""Live TLS reload: notice changed certificate/key/CA/CRL files and rebuild the context.

The server calls `TlsFileWatcher.check()` every `tls_watch_interval` seconds. Each TLS
listener's files are fingerprinted by (mtime, size, inode) — a renewal that replaces the
file by rename changes the inode even when mtime and size do not. A change rebuilds the
listener's context from disk; new connections get it, open ones keep theirs. A new file
that does not work (half-written renewal, key not matching, expired CRL) is refused with
one precise line and the old context stays; the next change is tried again.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta, timezone
from typing import Callable

#: How long before a CRL's nextUpdate the watcher starts warning.
CRL_WARNING = timedelta(days=1)


def _stat(path: str) -> tuple:
    try:
        st = os.stat(path)
    except OSError as exc:
        return ("missing", exc.errno)
    signature = (st.st_mtime_ns, st.st_size, st.st_ino)
    if os.path.isdir(path):  # capath / CRL directory: the entries count too
        try:
            names = sorted(os.listdir(path))
        except OSError:
            names = []
        signature += tuple((name,) + _stat(os.path.join(path, name)) for name in names)
    return signature


def fingerprint(files: list[str]) -> tuple:
    """What the watcher compares between two polls."""
    return tuple((path, _stat(path)) for path in files)


def _changed(before: tuple, after: tuple) -> list[str]:
    old = dict(before)
    return [path for path, sig in after if old.get(path) != sig]


class TlsFileWatcher:
    """Polls each TLS listener's files; swaps in a rebuilt context when they change.

    listeners: objects with `.listener` (ListenerConfig) and `.tls` (TlsListenerContext
    or None), e.g. the server's ListenerState. make_context(listener) builds a context or
    raises. on_psk_file_change(listener), if given, is called when a listener's psk_file
    changed (the security layer owns the PSK keys).
    """

    def __init__(self, listeners, make_context: Callable, log=None,
                 on_psk_file_change: Callable | None = None):
        self.listeners = listeners
        self.make_context = make_context
        self.log = log
        self.on_psk_file_change = on_psk_file_change
        self._seen: dict[int, tuple] = {}
        self._crl_warned: set = set()
        for state in listeners:
            if state.tls is not None:
                self._seen[id(state)] = fingerprint(state.tls.files)

    def check(self, now: datetime | None = None) -> list:
        """Poll once; return the states whose context was replaced."""
        replaced = []
        for state in self.listeners:
            context = state.tls
            if context is None:
                continue
            self._warn_crl_expiry(context, now or datetime.now(timezone.utc))
            before = self._seen.get(id(state))
            now = fingerprint(context.files)
            if before is None:
                self._seen[id(state)] = now
                continue
            if now == before:
                continue
            changed = _changed(before, now)
            self._seen[id(state)] = now
            listener = state.listener
            name = context.name
            psk_file = listener.security.psk_file
            if psk_file and str(psk_file) in changed and self.on_psk_file_change is not None:
                try:
                    self.on_psk_file_change(listener)
                except Exception as exc:
                    self._error(f"TLS reload of listener {name}: psk_file '{psk_file}' refused, "
                                f"keeping the old keys: {exc}")
            try:
                new_context = self.make_context(listener)
            except Exception as exc:
                self._error(f"TLS reload of listener {name} after a change to {', '.join(changed)} "
                            f"refused, keeping the old certificates: {exc}")
                continue
            if new_context is None:
                continue
            state.tls = new_context
            self._seen[id(state)] = fingerprint(new_context.files)
            replaced.append(state)
            self._notice(f"TLS files of listener {name} changed ({', '.join(changed)}): reloaded; "
                         "new connections use them, open connections keep theirs")
        return replaced

    def _warn_crl_expiry(self, context, now: datetime) -> None:
        """Say once, a day ahead and again when it happens, that a CRL runs out.

        Past its nextUpdate a CRL makes OpenSSL refuse every client certificate (the
        classic Mosquitto lock-out); a fresh file is picked up by the watcher.
        """
        for crl in context.crls:
            next_update = crl.next_update_utc
            if next_update is None or next_update - now > CRL_WARNING:
                continue
            expired = next_update <= now
            key = (id(context), crl.signature, expired)
            if key in self._crl_warned:
                continue
            self._crl_warned.add(key)
            issuer = crl.issuer.rfc4514_string()
            name = context.name
            if expired:
                self._error(f"TLS listener {name}: the CRL from {issuer} expired on "
                            f"{next_update:%Y-%m-%d %H:%M:%S} UTC; every client certificate is now "
                            "refused until a fresh CRL is written to crlfile")
            else:
                self._warning(f"TLS listener {name}: the CRL from {issuer} expires on "
                              f"{next_update:%Y-%m-%d %H:%M:%S} UTC; after that every client "
                              "certificate will be refused: publish a fresh CRL")

    def _warning(self, line: str) -> None:
        if self.log is not None:
            self.log.warning(line)

    def _error(self, line: str) -> None:
        if self.log is not None:
            self.log.error(line)

    def _notice(self, line: str) -> None:
        if self.log is not None:
            self.log.notice(line)
