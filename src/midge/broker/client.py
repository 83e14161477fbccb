"""One network connection as the broker sees it: decode, dispatch, close.

`receive_data` is the hot path: it decodes the whole chunk in one call and
dispatches each packet through a dict keyed by packet class (one lookup, no
if-chain). Peer errors and unexpected exceptions never escape it: the client is
closed and the error logged.
"""

from __future__ import annotations

from midge.broker import keepalive
from midge.empty import EMPTY_MAP
from midge.log import LogType
from midge.protocol import errors
from midge.protocol.codec import Decoder, encode
from midge.protocol.constants import Property, ReasonCode
from midge.protocol.packets import Connack, Disconnect

# States: what the connection expects next.
EXPECT_CONNECT = 0
CONNECTED = 1
CLOSED = 2


# Mosquitto gives a connection that has not sent CONNECT the default keepalive of 60 s.
PRE_CONNECT_KEEPALIVE = 60

# Why a connection ended -> Mosquitto's log line (loop.c do_disconnect); None = no line.
CLOSE_LINES = {
    "disconnected": "Client {} disconnected.",
    "conn_lost": "Client {} closed its connection.",
    "keepalive": "Client {} has exceeded timeout, disconnecting.",
    "protocol": "Client {} disconnected due to protocol error.",
    "malformed": "Client {} disconnected due to malformed packet.",
    "oversize": "Client {} disconnected due to oversize packet.",
    "not_authorised": "Client {} disconnected, not authorised.",
    "not_supported": ("Client {} disconnected due to using not allowed feature "
                      "(QoS too high, retain not supported, or bad AUTH method)."),
    "administrative": "Client {} been disconnected by administrative action.",
    "internal": "Client {} disconnected due to an internal error.",
    "shutdown": None,
    "takeover": None,
    "refused": None,
}


def _close_kind_for(error) -> str:
    if isinstance(error, errors.PacketTooLarge):
        return "oversize"
    if isinstance(error, errors.MalformedPacket):
        return "malformed"
    return "protocol"


class Client:
    """A connection plus the MQTT state bound to it (not the session)."""

    __slots__ = (
        "broker", "listener", "peer", "tls", "io", "output", "closing", "write_paused",
        "state", "decoder", "version", "client_id", "username", "keepalive", "clean_start",
        "session", "will", "last_activity", "keepalive_bucket", "receive_maximum",
        "max_packet_out", "topic_alias_max_out", "aliases_in", "request_problem_info",
        "paused_qos0", "mount_point", "max_qos", "max_topic_alias", "is_bridge",
        "pending", "acl_cache", "connected_at", "deferred", "deferred_error", "connect_delayed",
        "deferred_resume_pending", "handlers", "aliases_out", "alias_set_by_last",
        "bridge", "__weakref__",
    )

    def __init__(self, broker, listener, peer, tls, io, now, handlers):
        self.broker = broker
        self.listener = listener
        self.peer = peer
        self.tls = tls
        self.io = io
        self.output: list[bytes] = []
        self.closing = False
        self.write_paused = False
        self.state = EXPECT_CONNECT
        max_packet = broker.limits.max_packet_size or None
        self.decoder = Decoder(version=None, max_packet_size=max_packet, role="server")
        self.version = 4
        self.client_id = None
        self.username = None
        self.keepalive = PRE_CONNECT_KEEPALIVE
        self.clean_start = True
        self.session = None
        self.will = None
        self.last_activity = now
        self.keepalive_bucket = 0           # keepalive.py: the second whose bucket holds us, 0 = none
        self.receive_maximum = 65535        # the client's, for our outgoing QoS 1/2
        self.max_packet_out = 0             # the client's maximum packet size (0 = none)
        self.topic_alias_max_out = 0
        self.aliases_in: dict[int, str] = EMPTY_MAP   # a dict of its own from the first alias
        self.aliases_out: dict[str, int] = EMPTY_MAP   # topic -> alias we set (v5, per connection)
        self.alias_set_by_last = None
        self.request_problem_info = True
        self.paused_qos0 = 0
        listener_limits = broker.listener_limits(listener)
        self.mount_point = listener_limits.mount_point
        self.max_qos = listener_limits.max_qos
        self.max_topic_alias = listener_limits.max_topic_alias
        self.is_bridge = False              # the peer said it is a bridge (CONNECT flag)
        self.bridge = None                  # the BridgeConfig when midge's own bridge is the peer
        self.pending = False
        self.acl_cache = None
        self.connected_at = None
        self.handlers = handlers            # packet class -> handler (broker.py's tables)
        self.deferred = None            # packets held while CONNECT waits (login delay, async auth)
        self.deferred_error = None
        self.connect_delayed = False
        self.deferred_resume_pending = False

    def __repr__(self):
        return f"<Client {self.client_id!r} from {self.peer} state={self.state}>"

    @property
    def id_for_log(self) -> str:
        return self.client_id if self.client_id else "<unknown>"

    # -- Server interface ------------------------------------------------------------

    def receive_data(self, data: bytes, now: float) -> None:
        if self.state == CLOSED:
            return
        broker = self.broker
        broker.now = now
        stats = broker.stats
        stats.bytes_received += len(data)
        self.last_activity = now
        try:
            packets = self.decoder.feed(data)
            if packets:
                stats.messages_received += len(packets)
            self._process(packets, self.decoder.error, now)
        except Exception as exc:  # a bug must cost one connection, never the broker
            self._internal_error(exc, now)

    def _process(self, packets, error, now) -> None:
        for index, packet in enumerate(packets):
            if self.deferred is not None:
                self.deferred.extend(packets[index:])
                break
            self.handlers[packet.__class__](self, packet, now)  # re-read: CONNECT swaps it
            if self.state == CLOSED:
                return
        if error is not None and self.state != CLOSED:
            if self.deferred is not None:
                self.deferred_error = error
            else:
                self._peer_error(error, now)

    def resume_deferred(self, now: float) -> None:
        """Handle the packets held while CONNECT waited (login delay or async auth)."""
        self.deferred_resume_pending = False
        packets, self.deferred = self.deferred or [], None
        error, self.deferred_error = self.deferred_error, None
        if self.state == CLOSED:
            return
        try:
            self._process(packets, error, now)
        except Exception as exc:
            self._internal_error(exc, now)

    def _internal_error(self, exc, now) -> None:
        log = self.broker.log
        if log.enabled(LogType.ERROR):
            import traceback
            detail = "".join(traceback.format_exception_only(exc)).strip()
            log.error(f"Internal error handling data from client {self.id_for_log}: {detail}")
            if log.enabled(LogType.DEBUG):
                log.debug("".join(traceback.format_exception(exc)))
        if self.state != CLOSED:
            self.close(now, "internal", reason_code=ReasonCode.UNSPECIFIED_ERROR)

    def connection_lost(self, now: float) -> None:
        if self.state == CLOSED:
            return
        self.broker.now = now
        self.close(now, "conn_lost")

    # -- Errors and closing ----------------------------------------------------------

    def _peer_error(self, error, now) -> None:
        log = self.broker.log
        if self.state == EXPECT_CONNECT:
            if isinstance(error, errors.UnsupportedProtocolVersion):
                version = error.protocol_version
                # Mosquitto answers an unknown protocol level with CONNACK rc 1 (v3 format),
                # and a v5 client with 0x84.
                if version == 5:
                    self.version = 5
                    self.send_packet(Connack(False, ReasonCode.UNSUPPORTED_PROTOCOL_VERSION))
                else:
                    self.version = 4
                    self.send_packet(Connack(False, 1))
            elif self.decoder.version == 5:
                self.version = 5
                self.send_packet(Connack(False, error.reason_code))
        if log.enabled(LogType.NOTICE) and self.broker.limits.connection_messages:
            log.notice(f"Client {self.id_for_log} sent a bad packet: {error}")
        self.close(now, _close_kind_for(error), reason_code=error.reason_code,
                   reason_string=str(error) or None)

    def protocol_error(self, now, reason_code=ReasonCode.PROTOCOL_ERROR, message=None,
                       kind="protocol") -> None:
        """Close for a peer error found by the broker (not the decoder)."""
        log = self.broker.log
        if message and log.enabled(LogType.NOTICE) and self.broker.limits.connection_messages:
            log.notice(f"Client {self.id_for_log}: {message}")
        self.close(now, kind, reason_code=reason_code, reason_string=message)

    def close(self, now, kind, reason_code=None, reason_string=None, send_will=True) -> None:
        """End the connection: v5 DISCONNECT if asked, log, then session bookkeeping."""
        if self.state == CLOSED:
            return
        broker = self.broker
        if reason_code is not None and self.version == 5 and self.state == CONNECTED:
            props = {}
            if reason_string and self.request_problem_info:
                props[Property.REASON_STRING] = reason_string
            data = encode(Disconnect(reason_code, props), 5)
            if props and self.max_packet_out and len(data) > self.max_packet_out:
                # The reason string is optional: drop it rather than exceed the
                # client's maximum packet size (v5 3.14.2.2.3).
                data = encode(Disconnect(reason_code, {}), 5)
            broker.write(self, data)
        line = CLOSE_LINES.get(kind)
        if line is not None and broker.limits.connection_messages and broker.log.enabled(LogType.NOTICE):
            broker.log.notice(line.format(self.id_for_log))
        was_connected = self.state == CONNECTED
        self.state = CLOSED
        keepalive.remove(self)
        self.closing = True
        broker.mark_pending(self)
        if was_connected:
            broker.client_gone(self, now, send_will)

    # -- Output ----------------------------------------------------------------------

    def send_packet(self, packet) -> None:
        data = encode(packet, self.version)
        self.broker.write(self, data)

    def send_bytes(self, data: bytes) -> None:
        self.broker.write(self, data)
