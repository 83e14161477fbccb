"""Sans-I/O MQTT client session: packets in, packets and bytes out.

The session knows MQTT (packet identifiers, QoS 1/2 flows in both directions,
receive maximum, keepalive) and nothing about sockets or clocks: bytes come in
through `feed(data, now)` and are handled one packet at a time by `next_event()`
(or all at once by `receive_data(data, now)`); bytes to write come out of
`data_to_send(now)`, and the driver calls `handle_timer(now)` at `next_deadline()`.
`midge pub/sub/rr` and the bridge drive it through `midge.client.connection`.

Events are packet objects the application cares about:
`Connack`, `Publish` (an incoming message, once: QoS 2 messages are delivered at
PUBREL like libmosquitto), `Puback`/`Pubcomp` (an outgoing QoS 1/2 message is
complete), `Suback`, `Unsuback`, `Disconnect` (the server closed the session), and
`ProtocolViolation` when the server's bytes are malformed.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Callable

from midge.client.trace import describe
from midge.protocol.codec import Decoder, encode, encode_publish
from midge.protocol.constants import PacketType, Property
from midge.protocol.errors import TopicAliasInvalid
from midge.protocol.packets import (
    Connect, Disconnect, Pingreq, Puback, Pubcomp, Publish, Pubrec, Pubrel, Subscribe,
    Unsubscribe,
)
from midge.protocol.properties import encode_varint


@dataclass(slots=True)
class ProtocolViolation:
    """The server sent something the client cannot accept; the driver should close
    (after a v5 DISCONNECT with `reason_code`)."""

    error: Exception

    @property
    def reason_code(self) -> int:
        return getattr(self.error, "reason_code", 0x81)


class ClientSession:
    """One MQTT connection's state, from CONNECT to DISCONNECT."""

    def __init__(self, connect: Connect, trace: Callable[[str], None] | None = None):
        self.connect_packet = connect
        self.version = connect.protocol_version
        self.client_id = connect.client_id
        self.trace = trace
        self.decoder = Decoder(version=self.version, role="client")
        # Per-connection state
        self.connected = False
        self.output: list[bytes] = []
        self.keepalive = connect.keepalive
        self.last_sent = 0.0
        self.ping_outstanding = False
        self.ping_sent = 0.0
        self.server_receive_maximum = 65535
        self.max_qos = 2
        # Packet identifiers and QoS flows
        self.next_id = 0
        self.inflight: dict[int, Publish] = {}  # our QoS 1/2 publishes awaiting ack
        self.pending: deque[Publish] = deque()  # waiting for receive-maximum room
        self.pending_ids: set[int] = set()
        self.incoming_qos2: dict[int, Publish] = {}  # received, PUBREL not yet seen
        self.requests: set[int] = set()  # SUBSCRIBE / UNSUBSCRIBE ids
        self.topic_aliases: dict[int, str] = {}  # server -> client aliases
        # Received packets not yet handled (see next_event)
        self.incoming: deque = deque()
        self.violation_reported = False

    # -- local intent ----------------------------------------------------

    def start(self) -> None:
        """Queue the CONNECT packet."""
        self._send(self.connect_packet)

    def publish(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False,
                properties: dict | None = None) -> int:
        """Queue a PUBLISH; returns its packet identifier (0 for QoS 0)."""
        if qos == 0:
            # libmosquitto numbers QoS 0 messages too (seen only in the -d trace)
            self.next_id = self.next_id % 65535 + 1
            if self.trace is None:  # hot path of `pub -l`: no packet object
                self.output.append(encode_publish(topic, payload, 0, retain, False, None,
                                                  properties, self.version))
                return 0
            self._send(Publish(topic, payload, 0, retain, False, None, properties or {}), self.next_id)
            return 0
        packet = Publish(topic, payload, qos, retain, False, None, properties or {})
        packet.packet_id = self._new_id()
        if len(self.inflight) < self.server_receive_maximum:
            self.inflight[packet.packet_id] = packet
            self._send(packet)
        else:
            self.pending.append(packet)
            self.pending_ids.add(packet.packet_id)
        return packet.packet_id

    def publish_batch(self, topic: str, payloads: list[bytes], retain: bool = False,
                      properties: dict | None = None) -> None:
        """Queue many QoS 0 PUBLISHes to one topic: the load-generator path of `pub -l`.

        The topic (and properties) part is encoded once; each message costs one
        length prefix and a join, so the whole batch becomes a single bytes object.
        """
        if self.trace is not None:
            for payload in payloads:
                self.publish(topic, payload, 0, retain, properties)
            return
        self.next_id = (self.next_id + len(payloads) - 1) % 65535 + 1
        # Speed: the PUBLISH minus its payload is the same for every message.
        body_start = encode_publish(topic, b"", 0, retain, False, None, properties, self.version)
        first, rest = body_start[0:1], body_start[_varint_end(body_start):]
        fixed = len(rest)
        parts = []
        append = parts.append
        for payload in payloads:
            size = fixed + len(payload)
            if size < 0x80:
                append(first + bytes((size,)))
            else:
                append(first + encode_varint(size))
            append(rest)
            append(payload)
        self.output.append(b"".join(parts))

    def subscribe(self, subscriptions: list, properties: dict | None = None) -> int:
        packet = Subscribe(self._new_id(), list(subscriptions), properties or {})
        self.requests.add(packet.packet_id)
        self._send(packet)
        return packet.packet_id

    def unsubscribe(self, topics: list[str], properties: dict | None = None) -> int:
        packet = Unsubscribe(self._new_id(), list(topics), properties or {})
        self.requests.add(packet.packet_id)
        self._send(packet)
        return packet.packet_id

    def disconnect(self, reason_code: int = 0, properties: dict | None = None) -> None:
        self._send(Disconnect(reason_code, properties or {}))
        self.connected = False

    @property
    def inflight_count(self) -> int:
        """Outgoing QoS 1/2 messages not yet complete (sent or waiting)."""
        return len(self.inflight) + len(self.pending)

    # -- driver interface ------------------------------------------------

    def data_to_send(self, now: float | None = None) -> list[bytes]:
        """Encoded packets to write, in order; `now` is when they are written."""
        out, self.output = self.output, []
        if out and now is not None:
            self.last_sent = now
        return out

    def next_deadline(self) -> float | None:
        if not self.keepalive or not self.connected:
            return None
        if self.ping_outstanding:  # the server has one keepalive period to answer
            return self.ping_sent + self.keepalive
        return self.last_sent + self.keepalive

    def handle_timer(self, now: float) -> bool:
        """Send PINGREQ when idle; False when the server missed a PINGRESP (close)."""
        deadline = self.next_deadline()
        if deadline is None or now < deadline:
            return True
        if self.ping_outstanding and now >= self.ping_sent + self.keepalive:
            return False
        if self.ping_outstanding:
            return True
        self.ping_outstanding = True
        self.ping_sent = now
        self._send(Pingreq())
        return True

    def receive_data(self, data: bytes, now: float) -> list:
        """Feed `data` and return every resulting event."""
        self.feed(data, now)
        events = []
        while (event := self.next_event()) is not None:
            events.append(event)
        return events

    def feed(self, data: bytes, now: float) -> None:
        """Decode `data`; its packets are handled one by one by `next_event()`."""
        self.incoming.extend(self.decoder.feed(data))

    def next_event(self):
        """Handle buffered packets until one makes an event; None when all are handled.

        Pulling one at a time keeps the `-d` trace lines of a packet next to what
        the application prints for it, as libmosquitto's callbacks do.
        """
        while self.incoming:
            packet = self.incoming.popleft()
            if packet.type == PacketType.CONNACK:
                self._connack(packet)  # the assigned identifier names the trace line
            if self.trace is not None:
                for line in describe(packet, "received", self.client_id):
                    self.trace(line)
            event = self._handle(packet)
            if event is not None:
                return event
        if self.decoder.error is not None and not self.violation_reported:
            self.violation_reported = True
            return ProtocolViolation(self.decoder.error)
        return None

    # -- packet handlers -------------------------------------------------

    def _handle(self, packet):
        kind = packet.type
        if kind == PacketType.PUBLISH:
            alias = packet.properties.get(Property.TOPIC_ALIAS) if packet.properties else None
            if alias is not None and not self._resolve_alias(packet, alias):
                return ProtocolViolation(TopicAliasInvalid(f"unknown topic alias {alias} from the server"))
            if packet.qos == 1:
                self._send(Puback(packet.packet_id))
            elif packet.qos == 2:
                self._send(Pubrec(packet.packet_id))
                self.incoming_qos2[packet.packet_id] = packet
                return None
            return packet
        if kind == PacketType.PUBREL:
            self._send(Pubcomp(packet.packet_id))
            return self.incoming_qos2.pop(packet.packet_id, None)
        if kind == PacketType.PUBACK:
            return self._complete(packet)
        if kind == PacketType.PUBREC:
            if packet.reason_code >= 0x80:
                return self._complete(packet)
            self._send(Pubrel(packet.packet_id))
            return None
        if kind == PacketType.PUBCOMP:
            return self._complete(packet)
        if kind == PacketType.PINGRESP:
            self.ping_outstanding = False
            return None
        if kind == PacketType.CONNACK:
            return packet
        if kind in (PacketType.SUBACK, PacketType.UNSUBACK):
            self.requests.discard(packet.packet_id)
            return packet
        return packet  # DISCONNECT, AUTH

    def _resolve_alias(self, packet, alias: int) -> bool:
        """Topic aliases the server chose (we allowed them with Topic Alias Maximum)."""
        if packet.topic:
            self.topic_aliases[alias] = packet.topic
            return True
        topic = self.topic_aliases.get(alias)
        if topic is None:
            return False
        packet.topic = topic
        return True

    def _connack(self, packet) -> None:
        if packet.reason_code != 0:
            return
        self.connected = True
        props = packet.properties
        self.server_receive_maximum = props.get(Property.RECEIVE_MAXIMUM, 65535)
        self.max_qos = props.get(Property.MAXIMUM_QOS, 2)
        if Property.SERVER_KEEP_ALIVE in props:
            self.keepalive = props[Property.SERVER_KEEP_ALIVE]
        if Property.ASSIGNED_CLIENT_IDENTIFIER in props:
            self.client_id = props[Property.ASSIGNED_CLIENT_IDENTIFIER]

    def _complete(self, packet):
        if self.inflight.pop(packet.packet_id, None) is None:
            return None
        while self.pending and len(self.inflight) < self.server_receive_maximum:
            waiting = self.pending.popleft()
            self.pending_ids.discard(waiting.packet_id)
            self.inflight[waiting.packet_id] = waiting
            self._send(waiting)
        return packet

    def _new_id(self) -> int:
        for _ in range(65535):
            self.next_id = self.next_id % 65535 + 1
            candidate = self.next_id
            if candidate not in self.inflight and candidate not in self.requests \
                    and candidate not in self.pending_ids:
                return self.next_id
        raise RuntimeError("no free packet identifier")

    def _send(self, packet, mid: int = 0) -> None:
        if self.trace is not None:
            for line in describe(packet, "sending", self.client_id, mid):
                self.trace(line)
        self.output.append(encode(packet, self.version))


def _varint_end(packet: bytes) -> int:
    """Index just past the fixed header (type byte + remaining length)."""
    index = 1
    while packet[index] & 0x80:
        index += 1
    return index + 1
