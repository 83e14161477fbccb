"""One TLS connection as a stage: `ssl.SSLObject` over two `MemoryBIO`s, and OpenSSL's callbacks.

`TlsStage` is what `server/connection.py` puts under MQTT: the server feeds it ciphertext
and writes what `data_to_send()` returns. No asyncio SSL transport, so no 256 KiB read
buffer per connection (see docs/tls.md for the measured cost). `feed`, `_read`, `send`
and `data_to_send` are on the per-message path of every TLS connection.

PSK identity per connection: the stdlib PSK server callback is told the identity but not
the connection. One `HandshakeCallbacks` per listener context receives OpenSSL's
callbacks; the stage sets `callbacks.current = self` around `do_handshake()`, the only
call into OpenSSL that runs the handshake (renegotiation is off), and the callback
records the identity on that stage. This is correct because the event loop is
single-threaded and OpenSSL calls the callback synchronously inside that call, on this
thread; no other stage can run in between.
"""

from __future__ import annotations

import ssl
import sys
from typing import TYPE_CHECKING, Callable

from midge.security.identity import TlsInfo
from midge.server.ssl_private import record_layer
from midge.server.tls_diagnostics import HandshakeFacts, TlsFailure, client_aborted, diagnose, sniff_plaintext

if TYPE_CHECKING:
    from midge.server.tls_context import TlsListenerContext

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


class HandshakeCallbacks:
    """OpenSSL's per-context callbacks, routed to the stage whose handshake is running.

    `psk_lookup(identity)` gives a PSK identity's key (None: unknown). `psk_sessions`
    maps TLS 1.2 session ids to the PSK identity that opened them, for resumption.
    """

    __slots__ = ("current", "psk_lookup", "psk_sessions")

    def __init__(self, psk_lookup: Callable[[str], bytes | None] | None = None):
        self.current: TlsStage | None = None
        self.psk_lookup = psk_lookup
        self.psk_sessions: dict[bytes, str] = {}

    def psk(self, identity: str | None) -> bytes:
        """The PSK server callback: the key for `identity`, b"" to refuse."""
        stage = self.current
        if stage is None or identity is None or self.psk_lookup is None:
            return b""
        facts = stage._facts
        if facts is not None:
            facts.psk_identity = identity
        try:
            identity.encode("utf-8")  # Mosquitto 2.0.16+: identities must be UTF-8
            key = self.psk_lookup(identity)
        except Exception:  # an error in a plugin or bad identity: refuse, never raise into OpenSSL
            key = None
        if facts is not None:
            facts.psk_known = bool(key)
        if key:
            stage._psk_identity = identity
            return key
        return b""

    def message(self, conn, direction, version, content_type, msg_type, data) -> None:
        """Message hook with require_certificate: the client's certificate and alert."""
        stage = self.current
        if stage is None or direction != "read" or stage._facts is None:
            return
        if content_type == _CONTENT_HANDSHAKE and msg_type == _HANDSHAKE_CERTIFICATE:
            stage._facts.client_certificate = _first_certificate(data, version)
        elif content_type == _CONTENT_ALERT and len(data) >= 2:
            stage._facts.alert_from_client = data[1]

    def alert(self, conn, direction, version, content_type, msg_type, data) -> None:
        """Message hook without require_certificate: only the alert the client sent."""
        stage = self.current
        if (stage is not None and direction == "read" and content_type == _CONTENT_ALERT
                and stage._facts is not None and len(data) >= 2):
            stage._facts.alert_from_client = data[1]


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

    __slots__ = ("_context", "peer", "_incoming", "_outgoing", "_ssl", "_records",
                 "handshake_complete", "failure", "info", "_facts", "_psk_identity", "closed",
                 "closed_by_peer", "_sealed")

    def __init__(self, context: TlsListenerContext, peer: str = ""):
        self._context = context
        self.peer = peer
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._ssl = context.ssl_context.wrap_bio(self._incoming, self._outgoing, server_side=True)
        self._records = record_layer(self._ssl)  # read() decrypts one record (ssl_private.py)
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
        callbacks = context.callbacks
        callbacks.current = self
        try:
            self._ssl.do_handshake()
        except ssl.SSLWantReadError:
            return False
        except ssl.SSLError as exc:
            self._fail(diagnose(exc, self._facts, self.peer, context.name))
            return False
        finally:
            callbacks.current = None
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
            sessions = self._context.callbacks.psk_sessions
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

        Called only once the handshake is complete, so no callback can need
        `callbacks.current` here: OpenSSL runs none of them for application data.
        """
        incoming = self._incoming
        read = self._records.read
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
                self._fail(diagnose(exc, facts, self.peer, self._context.name))
                break
            if not chunk:
                break
            chunks.append(chunk)

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
