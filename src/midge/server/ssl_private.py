"""The private CPython `ssl` names midge uses for speed, resolved once, with public fallbacks.

Each is checked when this module is imported (the server imports it when it builds its
first TLS context, at start-up) and replaced by the public way when the check fails, so
that a CPython change costs some speed or log detail, known at start, rather than
failing every TLS connection at run time:

- `record_layer(ssl_object)`: what the TLS stage calls `read()` on for each record.
  Preferred: `SSLObject._sslobj`, the C `_ssl._SSLSocket` that `SSLObject` has wrapped
  since Python 3.5; its `read()` skips `SSLObject.read`'s Python frame on every record
  (the per-message path of TLS connections). Fallback: the `SSLObject` itself. Checked
  by a real handshake in memory (TLS 1.2 PSK: no certificate needed; ~1 ms) and one
  record read through it.
- `set_message_callback(ctx, callback)`: installs the TLS message hook that feeds the
  handshake diagnostics (the client's certificate, the alert it sent). Preferred: the C
  attribute `_ssl._SSLContext._msg_callback`, which passes plain ints; ssl.py's
  `SSLContext._msg_callback` (private too, Python 3.8+) wraps every call to turn them
  into enums (~3 % of a mutual P-256 handshake). Fallback: that wrapper; then None, and
  the diagnostics lose the certificate's subject and dates but stay correct. Checked by
  the hook seeing a ClientHello go out.

`SELF_TEST` says which paths are in use; `report(log)` logs it (debug when both shortcuts
work, a warning naming the fallback otherwise).
"""

from __future__ import annotations

import ssl
from operator import attrgetter
from typing import Callable

_KEY = bytes(range(16))
_PLAINTEXT = b"midge TLS self-test"
_CONTENT_HANDSHAKE, _CLIENT_HELLO = 22, 1


class SelfTestError(Exception):
    """The in-memory handshake did not finish."""


def _client_context() -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def _psk_contexts() -> tuple[ssl.SSLContext, ssl.SSLContext]:
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    client = _client_context()
    for ctx in (server, client):
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        ctx.set_ciphers("PSK")
    server.set_psk_server_callback(lambda identity: _KEY)
    client.set_psk_client_callback(lambda hint: ("midge", _KEY))
    return server, client


def _handshake(server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext):
    """Two SSLObjects over MemoryBIOs, handshake done: (server, client, pump)."""
    server_in, server_out, client_in, client_out = (ssl.MemoryBIO() for _ in range(4))
    server = server_ctx.wrap_bio(server_in, server_out, server_side=True)
    client = client_ctx.wrap_bio(client_in, client_out)

    def pump():
        server_in.write(client_out.read())
        client_in.write(server_out.read())

    for _ in range(8):
        done = 0
        for side in (client, server):
            try:
                side.do_handshake()
                done += 1
            except ssl.SSLWantReadError:
                pass
        pump()
        if done == 2:
            return server, client, pump
    raise SelfTestError("the in-memory handshake did not finish")


def _check_record_layer(candidate: Callable) -> None:
    """Raise unless `candidate(server).read(n)` returns the record the client sent.

    Where this OpenSSL cannot run a PSK handshake, a weaker check: the candidate's read()
    on a fresh client object starts the handshake and asks for more data.
    """
    try:
        server, client, pump = _handshake(*_psk_contexts())
    except (ssl.SSLError, NotImplementedError, ValueError, SelfTestError):
        probe = _client_context().wrap_bio(ssl.MemoryBIO(), ssl.MemoryBIO())
        try:
            candidate(probe).read(1)
        except ssl.SSLWantReadError:
            return
        raise ValueError("read() on a fresh client object did not ask for the handshake")
    client.write(_PLAINTEXT)
    pump()
    got = candidate(server).read(65536)
    if got != _PLAINTEXT:
        raise ValueError(f"read {got!r}, expected {_PLAINTEXT!r}")


def _check_message_callback(setter: Callable) -> None:
    """Raise unless the hook installed by `setter` sees the ClientHello go out."""
    seen = []

    def hook(conn, direction, version, content_type, msg_type, data):
        seen.append((direction, content_type, msg_type))

    ctx = _client_context()
    setter(ctx, hook)
    try:
        ctx.wrap_bio(ssl.MemoryBIO(), ssl.MemoryBIO()).do_handshake()
    except ssl.SSLWantReadError:
        pass
    if ("write", _CONTENT_HANDSHAKE, _CLIENT_HELLO) not in seen:
        raise ValueError(f"the hook did not see the ClientHello (saw {seen[:4]!r})")


def _public_record_layer(ssl_object: ssl.SSLObject) -> ssl.SSLObject:
    return ssl_object


def record_layer_candidates() -> list[tuple[str, Callable]]:
    """The objects to read records from, best first."""
    return [("SSLObject._sslobj.read (C)", attrgetter("_sslobj")),
            ("SSLObject.read (public)", _public_record_layer)]


def message_callback_candidates() -> list[tuple[str, Callable]]:
    """The ways to install the message hook, best first (None: not in this Python)."""
    try:
        import _ssl  # private: the C half of the ssl module

        raw = _ssl._SSLContext._msg_callback.__set__
    except (ImportError, AttributeError):
        raw = None
    wrapped = getattr(ssl.SSLContext, "_msg_callback", None)
    wrapped = wrapped.fset if isinstance(wrapped, property) else None
    return [("_ssl._SSLContext._msg_callback (ints)", raw),
            ("ssl.SSLContext._msg_callback (enums)", wrapped)]


def resolve(candidates: list[tuple[str, Callable]], check: Callable):
    """The first candidate that passes `check`: (name, callable, why the earlier ones failed).

    (None, None, notes) when none passes.
    """
    notes = []
    for name, candidate in candidates:
        if candidate is None:
            notes.append(f"{name} missing")
            continue
        try:
            check(candidate)
        except Exception as exc:  # any way a private name can break: say which, fall back
            notes.append(f"{name} failed: {exc!r}")
            continue
        return name, candidate, notes
    return None, None, notes


def _resolve_all():
    record_name, record, record_notes = resolve(record_layer_candidates(), _check_record_layer)
    if record is None:
        raise RuntimeError("TLS self-test: even SSLObject.read cannot read a record in memory "
                           f"({'; '.join(record_notes)}); Python's ssl module is broken")
    hook_name, hook, hook_notes = resolve(message_callback_candidates(), _check_message_callback)
    return record_name, record, hook_name, hook, record_notes + hook_notes


_record_name, record_layer, _hook_name, set_message_callback, _notes = _resolve_all()

#: One line for the log: the paths in use, and why a fallback was taken.
SELF_TEST = (f"TLS self-test: records read through {_record_name}; handshake message hook "
             f"{_hook_name or 'unavailable (diagnostics lose certificate details)'}"
             + (f" ({'; '.join(_notes)})" if _notes else ""))
#: Both preferred paths passed: the normal case on CPython 3.8+.
SHORTCUTS_OK = not _notes


def report(log) -> None:
    """Log which paths are in use: debug when both shortcuts work, else a warning."""
    if log is None:
        return
    if SHORTCUTS_OK:
        log.debug(SELF_TEST)
    else:
        log.warning(SELF_TEST + "; midge works, a little slower or with less detail")
