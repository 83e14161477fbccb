"""One asyncio Protocol per network connection: bytes in, broker, bytes out.

The stack is TCP -> optional TLS stage -> optional WebSocket stage -> broker `Client`.
Stages share one shape (`feed(data) -> bytes`, `data_to_send()`, `send(data)`,
`handshake_complete`, `failure`, `close()`), so the connection composes them without
special cases. The connection owns no MQTT state: it feeds what it reads to the
broker's sans-I/O client and writes what the broker queued, once per received chunk
(`Server.drain`), with one `writelines` per client.
"""

from __future__ import annotations

import asyncio
import socket

from midge.broker.cleanup import attempt
from midge.log import LogType

# The first bytes of a TLS ClientHello record: handshake (0x16), major version 3.
_TLS_RECORD_START = b"\x16\x03"
_HTTP_START = (b"GET ", b"POST", b"HEAD", b"PUT ", b"OPTI")
# Shared empty tuple for `stages` / `held` until a connection needs a list (a plain TCP
# connection never does): two empty lists are 112 bytes per connection.
_NO_STAGES = ()


def format_peer(transport) -> str:
    peer = transport.get_extra_info("peername")
    if isinstance(peer, tuple) and len(peer) >= 2:
        return f"{peer[0]}:{peer[1]}"
    return str(peer) if peer else "unix-socket"


class Connection(asyncio.Protocol):
    """A client connection on one listener."""

    __slots__ = (
        "server", "listener_state", "transport", "peer", "client", "stages", "ready",
        "handshake_timer", "held", "first_read", "closed", "counted", "tls_info", "waiting",
        "cluster_wait",
    )

    def __init__(self, server, listener_state):
        self.server = server
        self.listener_state = listener_state
        self.transport = None
        self.peer = "?"
        self.client = None  # broker.Client, once every stage's handshake is done
        self.stages: list = _NO_STAGES  # [TlsStage] [WebSocketStage], outermost first
        self.ready = 0  # how many stages finished their handshake
        self.handshake_timer = None
        self.held: list[bytes] = _NO_STAGES  # MQTT bytes received while a revocation check runs
        self.first_read = True
        self.closed = False  # we closed (or are closing) the transport
        self.counted = False  # counted in the listener's connection_count
        self.tls_info = None
        self.waiting = False  # a revocation (OCSP) check runs: hold what the TLS stage decrypts
        self.cluster_wait = 0      # server/cluster.py holds the output until this many acknowledgements are in

    # -- Protocol interface ---------------------------------------------------------

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.peer = format_peer(transport)
        server = self.server
        state = self.listener_state
        listener = state.listener
        log = server.log
        # Mosquitto checks max_connections at accept, before TLS, and closes at once.
        if 0 <= listener.max_connections <= state.connection_count:
            if log.enabled(LogType.NOTICE):
                log.notice(f"Client connection from {self.peer} denied: max_connections "
                           f"({listener.max_connections}) reached on port {listener.port}.")
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
        if server.config.connection_messages and log.enabled(LogType.NOTICE) and not state.metrics:
            log.notice(f"New connection from {self.peer} on port {listener.port}.")
        if state.tls is None and not state.websockets and not state.metrics:
            self._start_mqtt()  # plain MQTT over TCP: no stages, no handshake timer
            return
        self.stages = []
        if state.tls is not None:
            self.stages.append(state.tls.new_stage(self.peer))
        if state.websockets:
            from midge.server.websocket import WebSocketStage

            self.stages.append(WebSocketStage(self.peer, listener.http_dir))
        elif state.metrics:
            from midge.server.metrics import MetricsStage

            self.stages.append(MetricsStage(server, state, self))
        timeout = listener.tls_handshake_timeout
        if timeout > 0:
            self.handshake_timer = server.loop.call_later(timeout, self._handshake_timed_out)

    def data_received(self, data: bytes) -> None:
        if self.stages:
            self._stages_received(data)
            return
        if self.first_read:
            self.first_read = False
            if data.startswith(_TLS_RECORD_START):
                self._refuse("a TLS handshake was sent to a plain MQTT listener; the client "
                             "needs a listener with certfile/keyfile or psk_hint")
                return
            if data.startswith(_HTTP_START):
                self._refuse("an HTTP request was sent to an MQTT listener; WebSocket clients "
                             "need a listener with 'protocol websockets'")
                return
        # The hot path: hand the whole chunk to the broker, then write what it queued.
        self.client.receive_data(data, self.server.loop.time())
        self.server.drain()

    def eof_received(self):
        return False  # close the transport; connection_lost tells the broker

    def connection_lost(self, exc) -> None:
        if self.handshake_timer is not None:
            self.handshake_timer.cancel()
            self.handshake_timer = None
        if not self.closed and self.client is None and self.stages and not (
                self.listener_state.metrics and self.listener_state.tls is None):
            # The client went away mid-handshake: say so, with what we learnt of it.
            # (only a TLS stage can say what it learnt of a client that left mid-handshake;
            # an HTTP probe of a plain metrics port that closes at once is no news)
            abort_failure = getattr(self.stages[0], "abort_failure", None)
            reason = abort_failure() if abort_failure is not None else "closed before the handshake finished"
            if abort_failure is not None and not self.stages[0].handshake_complete:
                self._count_tls(reason.kind)
            log = self.server.log
            if log.enabled(LogType.NOTICE):
                log.notice(f"Client connection from {self.peer} on port "
                           f"{self.listener_state.listener.port} failed: {reason}")
        self.closed = True
        if self.counted:
            self.counted = False
            self.server.connections.discard(self)
            self.listener_state.connection_count -= 1
        client, self.client = self.client, None
        if client is not None:
            # Nothing may escape this event loop callback, and the lines below must run
            # whatever happened (issue 14); what failed is logged.
            attempt(self.server.log, f"closing client {client.id_for_log} (connection lost)",
                    client.connection_lost, self.server.loop.time())
            # A persistent session keeps its last Client (ACL checks while offline): it
            # must not keep this connection, its transport and TLS stage too (~5 KiB
            # TCP, ~30-55 KiB TLS per offline session).
            client.io = None
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

    def set_reading(self, reading: bool) -> None:
        """Flow control (broker/flow.py): stop or resume reading this socket."""
        if self.closed or self.transport is None:
            return
        if reading:
            if not self.transport.is_reading():
                self.transport.resume_reading()
        elif self.transport.is_reading():
            self.transport.pause_reading()

    def flush(self) -> None:
        """Write what the broker queued for this client; close if it asked to."""
        client = self.client
        if client is None or self.cluster_wait:
            return   # (cluster_wait: e.g. a SUBACK waits until every node knows the new filter)
        output = client.output
        if output and not self.closed:
            if self.stages:
                self._transmit(len(self.stages), b"".join(output))
            else:
                self.transport.writelines(output)
        output.clear()
        if client.closing and not self.closed:
            self.close()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for level in range(len(self.stages) - 1, -1, -1):
            try:
                self.stages[level].close()
                pending = self.stages[level].data_to_send()
                if pending:
                    self._transmit(level, pending)
            except Exception:  # a broken stage must not keep the socket open
                break
        self.transport.close()

    # -- Stages (TLS, WebSocket) ---------------------------------------------------

    def stage_output(self, stage) -> None:
        """Send what `stage` produced on its own, outside `data_received` (the metrics
        stage's answer after a password hashed off the loop); close if it is done."""
        if self.closed or stage not in self.stages:
            return
        outgoing = stage.data_to_send()
        if outgoing:
            self._transmit(self.stages.index(stage), outgoing)
        if stage.closed_by_peer:
            self.close()

    def _transmit(self, level: int, data: bytes) -> None:
        """Send bytes produced above stage `level` down through the stages below it."""
        for stage in reversed(self.stages[:level]):
            stage.send(data)
            data = stage.data_to_send()
        if data:
            self.transport.write(data)

    def _stages_received(self, data: bytes, start: int = 0) -> None:
        """Pass received bytes up the stack from stage `start`; MQTT bytes go to the broker."""
        stages = self.stages
        for level in range(start, len(stages)):
            stage = stages[level]
            try:
                data = stage.feed(data)
                outgoing = stage.data_to_send()
            except Exception as exc:  # a peer's bytes must never escape as an exception
                self._failed(f"{type(stage).__name__} error: {exc!r}")
                return
            if outgoing:
                self._transmit(level, outgoing)
            failure = stage.failure
            if failure is not None:
                self._failed(failure)
                return
            if getattr(stage, "closed_by_peer", False) or getattr(stage, "served", False):
                # Deliver what arrived with the close first (e.g. a DISCONNECT), then close.
                # (`served`: the WebSocket stage answered a plain HTTP request for a file.)
                if data:
                    self._stages_received(data, level + 1)
                self.close()
                return
            if level == self.ready:
                if not stage.handshake_complete:
                    return
                self.ready += 1
                self._stage_ready(stage)
            if self.waiting:
                if data:  # for the stage above, once the revocation check passes
                    if not self.held:
                        self.held = []
                    self.held.append(data)
                return
            if not data:
                return
        if self.client is not None:
            self.client.receive_data(data, self.server.loop.time())
            self.server.drain()

    def _stage_ready(self, stage) -> None:
        """A stage finished its handshake; start MQTT once all have (and checks passed)."""
        info = stage.info
        if info is not None:
            self.tls_info = info
            log = self.server.log
            if log.enabled(LogType.DEBUG):
                from midge.server.tls_diagnostics import success_line

                log.debug(success_line(info, self.peer, self.listener_state.listener.name))
            if self.listener_state.listener.require_ocsp:
                self.waiting = True
                task = self.server.loop.create_task(self.listener_state.tls.revocation.check(info))
                task.add_done_callback(self._revocation_checked)
                return
            self._count_tls("success")
        if self.ready == len(self.stages):
            self._start_mqtt()

    def _revocation_checked(self, task) -> None:
        self.waiting = False
        if self.closed:
            return
        failure = task.exception() or task.result()
        if failure is not None:
            self._failed(failure)
            return
        self._count_tls("success")
        if self.ready == len(self.stages):
            self._start_mqtt()
        held, self.held = self.held, _NO_STAGES
        for data in held:  # plaintext the TLS stage (level 0) produced meanwhile
            self._stages_received(data, start=1)

    def _count_tls(self, outcome: str) -> None:
        """One TLS handshake's result for the listener's metrics ("success" or a kind)."""
        results = self.listener_state.tls_results
        results[outcome] = results.get(outcome, 0) + 1

    def _failed(self, reason) -> None:
        kind = getattr(reason, "kind", None)  # a TlsFailure (handshake or OCSP refusal)
        if kind is not None and self.listener_state.tls is not None:
            self._count_tls(kind)
        log = self.server.log
        if log.enabled(LogType.NOTICE):
            log.notice(f"Client connection from {self.peer} on port "
                       f"{self.listener_state.listener.port} failed: {reason}")
        self.close()

    def _handshake_timed_out(self) -> None:
        self.handshake_timer = None
        if self.client is None and not self.closed:
            if self.listener_state.tls is not None and not self.stages[0].handshake_complete:
                self._count_tls("timeout")
            timeout = self.listener_state.listener.tls_handshake_timeout
            self._failed(f"handshake not finished after {timeout:g} s (tls_handshake_timeout)")

    # -- MQTT ---------------------------------------------------------------------

    def _start_mqtt(self) -> None:
        if self.handshake_timer is not None:
            self.handshake_timer.cancel()
            self.handshake_timer = None
        server = self.server
        self.client = server.broker.new_client(
            self.listener_state.listener, self.peer, self.tls_info, self, server.loop.time()
        )

    def _refuse(self, reason: str) -> None:
        log = self.server.log
        if log.enabled(LogType.NOTICE):
            log.notice(f"Client connection from {self.peer} on port "
                       f"{self.listener_state.listener.port} refused: {reason}.")
        self.close()
