"""One asyncio Protocol per network connection: bytes in, broker, bytes out.

The stack is TCP -> optional TLS stage -> broker `Client`. The connection owns no MQTT
state: it feeds what it reads to the broker's sans-I/O client and writes what the broker
queued, once per received chunk (`Server.drain`), with one `writelines` per client.
"""

from __future__ import annotations

import asyncio
import socket

from midge.log import LogType

# The first bytes of a TLS ClientHello record: handshake (0x16), major version 3.
_TLS_RECORD_START = b"\x16\x03"


def format_peer(transport) -> str:
    peer = transport.get_extra_info("peername")
    if isinstance(peer, tuple) and len(peer) >= 2:
        return f"{peer[0]}:{peer[1]}"
    return str(peer) if peer else "unix-socket"


class Connection(asyncio.Protocol):
    """A client connection on one listener."""

    __slots__ = (
        "server", "listener_state", "transport", "peer", "client", "stage",
        "handshake_timer", "checking_revocation", "held_plaintext", "first_read", "closed",
        "counted",
    )

    def __init__(self, server, listener_state):
        self.server = server
        self.listener_state = listener_state
        self.transport = None
        self.peer = "?"
        self.client = None  # broker.Client, once the transport is ready for MQTT
        self.stage = None  # TlsStage on TLS listeners
        self.handshake_timer = None
        self.checking_revocation = False
        self.held_plaintext: list[bytes] = []
        self.first_read = True
        self.closed = False  # we closed (or are closing) the transport
        self.counted = False  # counted in the listener's connection_count

    # -- Protocol interface ---------------------------------------------------------

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.peer = format_peer(transport)
        server = self.server
        state = self.listener_state
        listener = state.listener
        log = server.log
        # Mosquitto checks max_connections at accept, before TLS, and closes silently.
        if 0 <= listener.max_connections <= state.connection_count:
            if log.enabled(LogType.NOTICE):
                log.notice(f"Client connection from {self.peer} denied: max_connections exceeded.")
            self.closed = True
            transport.abort()
            return
        state.connection_count += 1
        self.counted = True
        server.connections.add(self)
        if server.config.set_tcp_nodelay:
            sock = transport.get_extra_info("socket")
            if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if server.config.connection_messages and log.enabled(LogType.NOTICE):
            log.notice(f"New connection from {self.peer} on port {listener.port}.")
        if state.tls is not None:
            self.stage = state.tls.new_stage(self.peer)
            timeout = getattr(listener, "tls_handshake_timeout", 10.0) or 0
            if timeout > 0:
                self.handshake_timer = server.loop.call_later(timeout, self._handshake_timed_out)
        else:
            self._start_mqtt(None)

    def data_received(self, data: bytes) -> None:
        stage = self.stage
        if stage is None:
            if self.first_read:
                self.first_read = False
                if data.startswith(_TLS_RECORD_START):
                    self._refuse_plain("a TLS handshake was sent to a plain MQTT listener; "
                                       "the client needs a listener with certfile/keyfile or psk_hint")
                    return
            self.client.receive_data(data, self.server.loop.time())
            self.server.drain()
            return
        self._tls_data_received(stage, data)

    def eof_received(self):
        return False  # close the transport; connection_lost tells the broker

    def connection_lost(self, exc) -> None:
        if self.handshake_timer is not None:
            self.handshake_timer.cancel()
            self.handshake_timer = None
        self.closed = True
        if self.counted:
            self.counted = False
            self.server.connections.discard(self)
            self.listener_state.connection_count -= 1
        client, self.client = self.client, None
        if client is not None:
            client.connection_lost(self.server.loop.time())
            self.server.drain()

    def pause_writing(self) -> None:
        if self.client is not None:
            self.client.write_paused = True

    def resume_writing(self) -> None:
        if self.client is not None:
            self.client.write_paused = False
            self.server.broker.writing_resumed(self.client, self.server.loop.time())
            self.server.drain()

    # -- Called by Server.drain ---------------------------------------------------

    def flush(self) -> None:
        """Write what the broker queued for this client; close if it asked to."""
        client = self.client
        if client is None:
            return
        transport = self.transport
        output = client.output
        if output and not self.closed:
            if self.stage is None:
                transport.writelines(output)
            else:
                self.stage.send(b"".join(output))
                transport.write(self.stage.data_to_send())
        output.clear()
        if client.closing and not self.closed:
            self.close()

    def close(self) -> None:
        if self.closed:
            return
        if self.stage is not None:
            try:
                self.stage.close()
                pending = self.stage.data_to_send()
                if pending:
                    self.transport.write(pending)
            except Exception:  # a broken TLS state must not keep the socket open
                pass
        self.transport.close()

    # -- TLS ----------------------------------------------------------------------

    def _tls_data_received(self, stage, data: bytes) -> None:
        try:
            plain = stage.feed(data)
        except Exception as exc:  # never let a peer's bytes escape as an exception
            self.server.log.error(f"Client connection from {self.peer} failed: TLS error: {exc!r}")
            self.closed = True
            self.transport.abort()
            return
        outgoing = stage.data_to_send()
        if outgoing:
            self.transport.write(outgoing)
        failure = stage.failure
        if failure is not None:
            self._tls_failed(failure)
            return
        if self.client is None:
            if not stage.handshake_complete:
                return
            self._handshake_done()
            if self.client is None:  # waiting for the revocation check
                if plain:
                    self.held_plaintext.append(plain)
                return
        if plain:
            self.client.receive_data(plain, self.server.loop.time())
            self.server.drain()

    def _handshake_done(self) -> None:
        if self.handshake_timer is not None:
            self.handshake_timer.cancel()
            self.handshake_timer = None
        info = self.stage.info
        log = self.server.log
        if log.enabled(LogType.DEBUG):
            log.debug(f"TLS handshake with {self.peer} on listener {self.listener_state.listener.port} "
                      f"complete: {getattr(info, 'version', '?')} {getattr(info, 'cipher', '?')}")
        tls = self.listener_state.tls
        if getattr(self.listener_state.listener, "require_ocsp", False) and hasattr(tls, "check_revocation"):
            self.checking_revocation = True
            task = self.server.loop.create_task(tls.check_revocation(info))
            task.add_done_callback(self._revocation_checked)
            return
        self._start_mqtt(info)

    def _revocation_checked(self, task) -> None:
        self.checking_revocation = False
        if self.closed:
            return
        failure = task.exception() or task.result()
        if failure is not None:
            self._tls_failed(failure)
            return
        self._start_mqtt(self.stage.info)
        held, self.held_plaintext = self.held_plaintext, []
        for plain in held:
            self.client.receive_data(plain, self.server.loop.time())
        self.server.drain()

    def _tls_failed(self, failure) -> None:
        log = self.server.log
        if log.enabled(LogType.NOTICE):
            log.notice(f"Client connection from {self.peer} on listener "
                       f"{self.listener_state.listener.port} failed: {failure}")
        self.closed = True
        self.close()

    def _handshake_timed_out(self) -> None:
        self.handshake_timer = None
        if self.client is None and not self.closed:
            timeout = self.listener_state.listener.tls_handshake_timeout
            self._tls_failed(f"TLS handshake not finished after {timeout:g} s (tls_handshake_timeout)")

    # -- MQTT ---------------------------------------------------------------------

    def _start_mqtt(self, tls_info) -> None:
        server = self.server
        self.client = server.broker.new_client(
            self.listener_state.listener, self.peer, tls_info, self, server.loop.time()
        )

    def _refuse_plain(self, reason: str) -> None:
        log = self.server.log
        if log.enabled(LogType.NOTICE):
            log.notice(f"Client connection from {self.peer} on listener "
                       f"{self.listener_state.listener.port} refused: {reason}.")
        self.closed = True
        self.transport.close()
