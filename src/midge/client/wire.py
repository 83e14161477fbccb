"""Client-side MQTT codec: what a client sends and what it receives.

This is the client's own small codec, used until (and unless) the shared codec
`midge.protocol.codec` is importable; it has the same API (`encode(packet,
version)`, `Decoder(version, role="client").feed(data)`, `decoder.error`) so the
session does not care which one it gets. It only encodes client->server packets
and decodes server->client packets (plus PUBLISH/acks in both directions).
"""

from __future__ import annotations

import struct

from midge.protocol.constants import PacketType, Property
from midge.protocol.packets import (
    Auth, Connack, Connect, Disconnect, Pingreq, Pingresp, Puback, Pubcomp, Publish,
    Pubrec, Pubrel, Suback, Subscribe, Unsuback, Unsubscribe,
)

BYTE, TWO, FOUR, VARINT, UTF8, BINARY, PAIR = range(7)

PROPERTY_TYPES = {
    Property.PAYLOAD_FORMAT_INDICATOR: BYTE,
    Property.MESSAGE_EXPIRY_INTERVAL: FOUR,
    Property.CONTENT_TYPE: UTF8,
    Property.RESPONSE_TOPIC: UTF8,
    Property.CORRELATION_DATA: BINARY,
    Property.SUBSCRIPTION_IDENTIFIER: VARINT,
    Property.SESSION_EXPIRY_INTERVAL: FOUR,
    Property.ASSIGNED_CLIENT_IDENTIFIER: UTF8,
    Property.SERVER_KEEP_ALIVE: TWO,
    Property.AUTHENTICATION_METHOD: UTF8,
    Property.AUTHENTICATION_DATA: BINARY,
    Property.REQUEST_PROBLEM_INFORMATION: BYTE,
    Property.WILL_DELAY_INTERVAL: FOUR,
    Property.REQUEST_RESPONSE_INFORMATION: BYTE,
    Property.RESPONSE_INFORMATION: UTF8,
    Property.SERVER_REFERENCE: UTF8,
    Property.REASON_STRING: UTF8,
    Property.RECEIVE_MAXIMUM: TWO,
    Property.TOPIC_ALIAS_MAXIMUM: TWO,
    Property.TOPIC_ALIAS: TWO,
    Property.MAXIMUM_QOS: BYTE,
    Property.RETAIN_AVAILABLE: BYTE,
    Property.USER_PROPERTY: PAIR,
    Property.MAXIMUM_PACKET_SIZE: FOUR,
    Property.WILDCARD_SUBSCRIPTION_AVAILABLE: BYTE,
    Property.SUBSCRIPTION_IDENTIFIER_AVAILABLE: BYTE,
    Property.SHARED_SUBSCRIPTION_AVAILABLE: BYTE,
}


class WireError(Exception):
    """The server sent bytes that are not a valid MQTT packet."""

    reason_code = 0x81


# -- encoding -------------------------------------------------------------

def push_varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | 0x80 if value else byte)
        if not value:
            return bytes(out)


def push_string(value: str | bytes) -> bytes:
    data = value.encode() if isinstance(value, str) else value
    return struct.pack("!H", len(data)) + data


def push_properties(props: dict) -> bytes:
    out = bytearray()
    for ident, value in props.items():
        kind = PROPERTY_TYPES[Property(ident)]
        values = value if kind in (PAIR,) or (ident == Property.SUBSCRIPTION_IDENTIFIER and isinstance(value, list)) else [value]
        for item in values:
            out.append(ident)
            if kind == BYTE:
                out.append(item)
            elif kind == TWO:
                out += struct.pack("!H", item)
            elif kind == FOUR:
                out += struct.pack("!I", item)
            elif kind == VARINT:
                out += push_varint(item)
            elif kind in (UTF8, BINARY):
                out += push_string(item)
            else:
                out += push_string(item[0]) + push_string(item[1])
    return push_varint(len(out)) + bytes(out)


def fixed(first: int, body: bytes) -> bytes:
    return bytes((first,)) + push_varint(len(body)) + body


def encode(packet, version: int) -> bytes:
    """Bytes of `packet` for protocol `version` (3, 4 or 5)."""
    v5 = version == 5
    kind = packet.type
    if kind == PacketType.PUBLISH:
        body = push_string(packet.topic)
        if packet.qos:
            body += struct.pack("!H", packet.packet_id)
        if v5:
            body += push_properties(packet.properties)
        first = 0x30 | (packet.dup << 3) | (packet.qos << 1) | packet.retain
        return fixed(first, body + packet.payload)
    if kind in (PacketType.PUBACK, PacketType.PUBREC, PacketType.PUBREL, PacketType.PUBCOMP):
        first = (kind << 4) | (2 if kind == PacketType.PUBREL else 0)
        body = struct.pack("!H", packet.packet_id)
        if v5 and (packet.reason_code or packet.properties):
            body += bytes((packet.reason_code,))
            if packet.properties:
                body += push_properties(packet.properties)
        return fixed(first, body)
    if kind == PacketType.CONNECT:
        return fixed(0x10, _connect_body(packet, v5))
    if kind == PacketType.SUBSCRIBE:
        body = struct.pack("!H", packet.packet_id)
        if v5:
            body += push_properties(packet.properties)
        for sub in packet.subscriptions:
            options = sub.qos
            if v5:
                options |= (sub.no_local << 2) | (sub.retain_as_published << 3) | (sub.retain_handling << 4)
            body += push_string(sub.topic_filter) + bytes((options,))
        return fixed(0x82, body)
    if kind == PacketType.UNSUBSCRIBE:
        body = struct.pack("!H", packet.packet_id)
        if v5:
            body += push_properties(packet.properties)
        for topic in packet.topic_filters:
            body += push_string(topic)
        return fixed(0xA2, body)
    if kind == PacketType.PINGREQ:
        return b"\xc0\x00"
    if kind == PacketType.DISCONNECT:
        body = b""
        if v5 and (packet.reason_code or packet.properties):
            body = bytes((packet.reason_code,)) + (push_properties(packet.properties) if packet.properties else b"")
        return fixed(0xE0, body)
    if kind == PacketType.AUTH:
        return fixed(0xF0, bytes((packet.reason_code,)) + push_properties(packet.properties))
    raise ValueError(f"the client codec cannot encode {type(packet).__name__}")


def _connect_body(packet: Connect, v5: bool) -> bytes:
    name = packet.protocol_name or ("MQIsdp" if packet.protocol_version == 3 else "MQTT")
    level = packet.protocol_version | (0x80 if packet.bridge else 0)
    flags = 0x02 if packet.clean_start else 0
    will = packet.will
    if will is not None:
        flags |= 0x04 | (will.qos << 3) | (will.retain << 5)
    if packet.password is not None:
        flags |= 0x40
    if packet.username is not None:
        flags |= 0x80
    body = push_string(name) + bytes((level, flags)) + struct.pack("!H", packet.keepalive)
    if v5:
        body += push_properties(packet.properties)
    body += push_string(packet.client_id)
    if will is not None:
        if v5:
            body += push_properties(will.properties)
        body += push_string(will.topic) + push_string(will.payload)
    if packet.username is not None:
        body += push_string(packet.username)
    if packet.password is not None:
        body += push_string(packet.password)
    return body


# -- decoding -------------------------------------------------------------

class Reader:
    __slots__ = ("data", "pos")

    def __init__(self, data: bytes):
        self.data, self.pos = data, 0

    def left(self) -> int:
        return len(self.data) - self.pos

    def take(self, n: int) -> bytes:
        if n > self.left():
            raise WireError("packet shorter than its fields")
        chunk = self.data[self.pos:self.pos + n]
        self.pos += n
        return chunk

    def byte(self) -> int:
        return self.take(1)[0]

    def two(self) -> int:
        return struct.unpack("!H", self.take(2))[0]

    def four(self) -> int:
        return struct.unpack("!I", self.take(4))[0]

    def varint(self) -> int:
        value = shift = 0
        for _ in range(4):
            byte = self.byte()
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return value
            shift += 7
        raise WireError("variable byte integer longer than 4 bytes")

    def binary(self) -> bytes:
        return self.take(self.two())

    def string(self) -> str:
        try:
            return self.binary().decode()
        except UnicodeDecodeError:
            raise WireError("invalid UTF-8 string") from None

    def properties(self) -> dict:
        end = self.varint()
        end += self.pos
        props: dict = {}
        while self.pos < end:
            ident = self.varint()
            try:
                key = Property(ident)
            except ValueError:
                raise WireError(f"unknown property {ident:#x}") from None
            kind = PROPERTY_TYPES[key]
            if kind == BYTE:
                value = self.byte()
            elif kind == TWO:
                value = self.two()
            elif kind == FOUR:
                value = self.four()
            elif kind == VARINT:
                value = self.varint()
            elif kind == UTF8:
                value = self.string()
            elif kind == BINARY:
                value = self.binary()
            else:
                value = (self.string(), self.string())
            if key in (Property.USER_PROPERTY, Property.SUBSCRIPTION_IDENTIFIER):
                props.setdefault(key, []).append(value)
            else:
                props[key] = value
        return props


class Decoder:
    """Incremental decoder: `feed(data)` returns every complete packet."""

    def __init__(self, version: int | None = 4, max_packet_size: int | None = None, role: str = "client"):
        self.version = version
        self.max_packet_size = max_packet_size
        self.role = role
        self.error: Exception | None = None
        self.buffer = bytearray()

    def feed(self, data: bytes) -> list:
        if self.error is not None:
            return []
        self.buffer += data
        packets = []
        buf = self.buffer
        pos = 0
        try:
            while len(buf) - pos >= 2:
                # Remaining length: up to 4 bytes after the first.
                length = shift = 0
                index = pos + 1
                complete = False
                while index < len(buf):
                    byte = buf[index]
                    index += 1
                    length |= (byte & 0x7F) << shift
                    if not byte & 0x80:
                        complete = True
                        break
                    shift += 7
                    if shift > 21:
                        raise WireError("remaining length longer than 4 bytes")
                if not complete:
                    break
                if len(buf) - index < length:
                    break
                packets.append(self.decode(buf[pos], bytes(buf[index:index + length])))
                pos = index + length
        except (WireError, ValueError, IndexError, struct.error) as exc:
            self.error = exc if isinstance(exc, WireError) else WireError(str(exc))
        del buf[:pos]
        return packets

    def decode(self, first: int, body: bytes):
        kind = first >> 4
        v5 = self.version == 5
        r = Reader(body)
        if kind == PacketType.PUBLISH:
            qos = (first >> 1) & 3
            if qos == 3:
                raise WireError("PUBLISH with QoS 3")
            topic = r.string()
            packet_id = r.two() if qos else None
            props = r.properties() if v5 else {}
            return Publish(topic, r.take(r.left()), qos, bool(first & 1), bool(first & 8), packet_id, props)
        if kind in (PacketType.PUBACK, PacketType.PUBREC, PacketType.PUBREL, PacketType.PUBCOMP):
            cls = {PacketType.PUBACK: Puback, PacketType.PUBREC: Pubrec,
                   PacketType.PUBREL: Pubrel, PacketType.PUBCOMP: Pubcomp}[kind]
            packet_id = r.two()
            code = r.byte() if v5 and r.left() else 0
            props = r.properties() if v5 and r.left() else {}
            return cls(packet_id, code, props)
        if kind == PacketType.CONNACK:
            session_present = bool(r.byte() & 1)
            code = r.byte()
            props = r.properties() if v5 and r.left() else {}
            return Connack(session_present, code, props)
        if kind in (PacketType.SUBACK, PacketType.UNSUBACK):
            packet_id = r.two()
            props = r.properties() if v5 else {}
            codes = list(r.take(r.left()))
            return (Suback if kind == PacketType.SUBACK else Unsuback)(packet_id, codes, props)
        if kind == PacketType.PINGRESP:
            return Pingresp()
        if kind == PacketType.PINGREQ:
            return Pingreq()
        if kind == PacketType.DISCONNECT:
            code = r.byte() if r.left() else 0
            props = r.properties() if r.left() else {}
            return Disconnect(code, props)
        if kind == PacketType.AUTH:
            code = r.byte() if r.left() else 0
            props = r.properties() if r.left() else {}
            return Auth(code, props)
        raise WireError(f"unexpected packet type {kind} from the server")


__all__ = ["encode", "Decoder", "WireError", "Connect", "Subscribe", "Unsubscribe"]
