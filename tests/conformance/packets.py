"""Hand-built MQTT packets for the conformance suite.

Written from the specification (MQTT 3.1.1 OASIS standard, MQTT 5.0 OASIS standard),
deliberately independent of midge's own codec so that the suite checks that codec too.
`gen_*` build bytes; `decode` turns one received packet into a plain dict whose
optional parts are normalised (a v5 ack without reason code means reason 0, without
properties means no properties, property order ignored) so that two spec-equivalent
encodings compare equal.
"""

from __future__ import annotations

import struct

# Packet types (fixed header high nibble).
CONNECT, CONNACK, PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP = 1, 2, 3, 4, 5, 6, 7
SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK, PINGREQ, PINGRESP, DISCONNECT, AUTH = (
    8, 9, 10, 11, 12, 13, 14, 15)
TYPE_NAMES = {1: "CONNECT", 2: "CONNACK", 3: "PUBLISH", 4: "PUBACK", 5: "PUBREC",
              6: "PUBREL", 7: "PUBCOMP", 8: "SUBSCRIBE", 9: "SUBACK", 10: "UNSUBSCRIBE",
              11: "UNSUBACK", 12: "PINGREQ", 13: "PINGRESP", 14: "DISCONNECT", 15: "AUTH"}

# v5 property identifiers (MQTT 5.0 section 2.2.2.2).
PAYLOAD_FORMAT_INDICATOR = 0x01
MESSAGE_EXPIRY_INTERVAL = 0x02
CONTENT_TYPE = 0x03
RESPONSE_TOPIC = 0x08
CORRELATION_DATA = 0x09
SUBSCRIPTION_IDENTIFIER = 0x0B
SESSION_EXPIRY_INTERVAL = 0x11
ASSIGNED_CLIENT_IDENTIFIER = 0x12
SERVER_KEEP_ALIVE = 0x13
AUTHENTICATION_METHOD = 0x15
AUTHENTICATION_DATA = 0x16
REQUEST_PROBLEM_INFORMATION = 0x17
WILL_DELAY_INTERVAL = 0x18
REQUEST_RESPONSE_INFORMATION = 0x19
RESPONSE_INFORMATION = 0x1A
SERVER_REFERENCE = 0x1C
REASON_STRING = 0x1F
RECEIVE_MAXIMUM = 0x21
TOPIC_ALIAS_MAXIMUM = 0x22
TOPIC_ALIAS = 0x23
MAXIMUM_QOS = 0x24
RETAIN_AVAILABLE = 0x25
USER_PROPERTY = 0x26
MAXIMUM_PACKET_SIZE = 0x27
WILDCARD_SUBSCRIPTION_AVAILABLE = 0x28
SUBSCRIPTION_IDENTIFIER_AVAILABLE = 0x29
SHARED_SUBSCRIPTION_AVAILABLE = 0x2A

_BYTE, _U16, _U32, _VARINT, _STR, _BIN, _PAIR = "byte", "u16", "u32", "varint", "str", "bin", "pair"
PROPERTY_TYPES = {
    PAYLOAD_FORMAT_INDICATOR: _BYTE, MESSAGE_EXPIRY_INTERVAL: _U32, CONTENT_TYPE: _STR,
    RESPONSE_TOPIC: _STR, CORRELATION_DATA: _BIN, SUBSCRIPTION_IDENTIFIER: _VARINT,
    SESSION_EXPIRY_INTERVAL: _U32, ASSIGNED_CLIENT_IDENTIFIER: _STR, SERVER_KEEP_ALIVE: _U16,
    AUTHENTICATION_METHOD: _STR, AUTHENTICATION_DATA: _BIN, REQUEST_PROBLEM_INFORMATION: _BYTE,
    WILL_DELAY_INTERVAL: _U32, REQUEST_RESPONSE_INFORMATION: _BYTE, RESPONSE_INFORMATION: _STR,
    SERVER_REFERENCE: _STR, REASON_STRING: _STR, RECEIVE_MAXIMUM: _U16,
    TOPIC_ALIAS_MAXIMUM: _U16, TOPIC_ALIAS: _U16, MAXIMUM_QOS: _BYTE, RETAIN_AVAILABLE: _BYTE,
    USER_PROPERTY: _PAIR, MAXIMUM_PACKET_SIZE: _U32, WILDCARD_SUBSCRIPTION_AVAILABLE: _BYTE,
    SUBSCRIPTION_IDENTIFIER_AVAILABLE: _BYTE, SHARED_SUBSCRIPTION_AVAILABLE: _BYTE,
}

# Properties a broker may add to its packets for its own reasons; `decode` keeps them
# but `same_packet` can be told to ignore them.
INFORMATIONAL = (REASON_STRING,)


# --- primitive encoders ----------------------------------------------------------

def varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value % 128
        value //= 128
        if value:
            byte |= 0x80
        out.append(byte)
        if not value:
            return bytes(out)


def string(value: str | bytes) -> bytes:
    raw = value.encode() if isinstance(value, str) else value
    return struct.pack("!H", len(raw)) + raw


def prop(identifier: int, value) -> bytes:
    """One v5 property; `value` is an int, str/bytes, or a (name, value) pair."""
    kind = PROPERTY_TYPES[identifier]
    head = varint(identifier)
    if kind == _BYTE:
        return head + bytes([value])
    if kind == _U16:
        return head + struct.pack("!H", value)
    if kind == _U32:
        return head + struct.pack("!I", value)
    if kind == _VARINT:
        return head + varint(value)
    if kind in (_STR, _BIN):
        return head + string(value)
    name, val = value
    return head + string(name) + string(val)


def props(*pairs) -> bytes:
    """Encoded property block (length prefix included) from (identifier, value) pairs."""
    body = b"".join(prop(identifier, value) for identifier, value in pairs)
    return varint(len(body)) + body


def packet(first_byte: int, body: bytes) -> bytes:
    return bytes([first_byte]) + varint(len(body)) + body


def _props_or_empty(proto_ver: int, properties) -> bytes:
    if proto_ver != 5:
        return b""
    return props(*(properties or ()))


# --- packet builders -------------------------------------------------------------

def gen_connect(client_id: str | bytes = "", clean: bool = True, keepalive: int = 60,
                username=None, password=None, will_topic=None, will_payload: bytes = b"",
                will_qos: int = 0, will_retain: bool = False, proto_ver: int = 4,
                properties=(), will_properties=(), proto_name=None,
                extra_flags: int = 0) -> bytes:
    """CONNECT; proto_ver 3 means MQTT 3.1 ("MQIsdp"), 4 means 3.1.1, 5 means 5.0."""
    if proto_name is None:
        proto_name = "MQIsdp" if proto_ver == 3 else "MQTT"
    flags = extra_flags
    if clean:
        flags |= 0x02
    if will_topic is not None:
        flags |= 0x04 | (will_qos << 3) | (0x20 if will_retain else 0)
    if password is not None:
        flags |= 0x40
    if username is not None:
        flags |= 0x80
    body = string(proto_name) + bytes([proto_ver & 0xFF, flags]) + struct.pack("!H", keepalive)
    body += _props_or_empty(proto_ver, properties)
    body += string(client_id)
    if will_topic is not None:
        body += _props_or_empty(proto_ver, will_properties)
        body += string(will_topic) + string(will_payload)
    if username is not None:
        body += string(username)
    if password is not None:
        body += string(password)
    return packet(0x10, body)


def gen_connack(rc: int = 0, session_present: bool = False, proto_ver: int = 4,
                properties=()) -> bytes:
    body = bytes([1 if session_present else 0, rc]) + _props_or_empty(proto_ver, properties)
    return packet(0x20, body)


def gen_publish(topic: str | bytes, qos: int = 0, payload: bytes | str = b"", retain: bool = False,
                dup: bool = False, mid: int | None = None, proto_ver: int = 4,
                properties=()) -> bytes:
    if isinstance(payload, str):
        payload = payload.encode()
    first = 0x30 | (0x08 if dup else 0) | (qos << 1) | (0x01 if retain else 0)
    body = string(topic)
    if qos > 0:
        body += struct.pack("!H", mid if mid is not None else 1)
    body += _props_or_empty(proto_ver, properties)
    return packet(first, body + payload)


def _ack(first: int, mid: int, proto_ver: int, reason_code: int, properties) -> bytes:
    body = struct.pack("!H", mid)
    if proto_ver == 5 and (reason_code or properties):
        body += bytes([reason_code]) + props(*properties)
    return packet(first, body)


def gen_puback(mid: int, proto_ver: int = 4, reason_code: int = 0, properties=()) -> bytes:
    return _ack(0x40, mid, proto_ver, reason_code, properties)


def gen_pubrec(mid: int, proto_ver: int = 4, reason_code: int = 0, properties=()) -> bytes:
    return _ack(0x50, mid, proto_ver, reason_code, properties)


def gen_pubrel(mid: int, proto_ver: int = 4, reason_code: int = 0, properties=()) -> bytes:
    return _ack(0x62, mid, proto_ver, reason_code, properties)


def gen_pubcomp(mid: int, proto_ver: int = 4, reason_code: int = 0, properties=()) -> bytes:
    return _ack(0x70, mid, proto_ver, reason_code, properties)


def gen_subscribe(mid: int, topic, qos: int = 0, proto_ver: int = 4, properties=()) -> bytes:
    """SUBSCRIBE; `topic` is a filter (with `qos` as its options byte) or a list of
    (filter, options byte) pairs."""
    entries = [(topic, qos)] if isinstance(topic, (str, bytes)) else list(topic)
    body = struct.pack("!H", mid) + _props_or_empty(proto_ver, properties)
    for filter_, options in entries:
        body += string(filter_) + bytes([options])
    return packet(0x82, body)


def sub_options(qos: int = 0, no_local: bool = False, retain_as_published: bool = False,
                retain_handling: int = 0) -> int:
    """v5 subscription options byte (MQTT 5.0 section 3.8.3.1)."""
    return qos | (0x04 if no_local else 0) | (0x08 if retain_as_published else 0) | (retain_handling << 4)


def gen_suback(mid: int, codes, proto_ver: int = 4, properties=()) -> bytes:
    codes = [codes] if isinstance(codes, int) else list(codes)
    return packet(0x90, struct.pack("!H", mid) + _props_or_empty(proto_ver, properties) + bytes(codes))


def gen_unsubscribe(mid: int, topics, proto_ver: int = 4, properties=()) -> bytes:
    topics = [topics] if isinstance(topics, (str, bytes)) else list(topics)
    body = struct.pack("!H", mid) + _props_or_empty(proto_ver, properties)
    return packet(0xA2, body + b"".join(string(t) for t in topics))


def gen_unsuback(mid: int, codes=(), proto_ver: int = 4, properties=()) -> bytes:
    codes = [codes] if isinstance(codes, int) else list(codes)
    body = struct.pack("!H", mid)
    if proto_ver == 5:
        body += props(*properties) + bytes(codes)
    return packet(0xB0, body)


def gen_pingreq() -> bytes:
    return b"\xc0\x00"


def gen_pingresp() -> bytes:
    return b"\xd0\x00"


def gen_disconnect(reason_code: int = 0, proto_ver: int = 4, properties=()) -> bytes:
    if proto_ver != 5 or (reason_code == 0 and not properties):
        return b"\xe0\x00"
    return packet(0xE0, bytes([reason_code]) + props(*properties))


def gen_auth(reason_code: int = 0, properties=()) -> bytes:
    if reason_code == 0 and not properties:
        return b"\xf0\x00"
    return packet(0xF0, bytes([reason_code]) + props(*properties))


# --- decoding (for comparing what the broker sent) ------------------------------

class Reader:
    def __init__(self, data: bytes):
        self.data, self.pos = data, 0

    def remaining(self) -> int:
        return len(self.data) - self.pos

    def take(self, n: int) -> bytes:
        if n > self.remaining():
            raise ValueError(f"truncated: need {n} bytes, have {self.remaining()}")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def byte(self) -> int:
        return self.take(1)[0]

    def u16(self) -> int:
        return struct.unpack("!H", self.take(2))[0]

    def u32(self) -> int:
        return struct.unpack("!I", self.take(4))[0]

    def varint(self) -> int:
        value, shift = 0, 0
        for _ in range(4):
            byte = self.byte()
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return value
            shift += 7
        raise ValueError("variable byte integer longer than 4 bytes")

    def binary(self) -> bytes:
        return self.take(self.u16())

    def string(self) -> str:
        return self.binary().decode("utf-8")

    def properties(self) -> list:
        block = Reader(self.take(self.varint()))
        out = []
        while block.remaining():
            identifier = block.varint()
            kind = PROPERTY_TYPES.get(identifier)
            if kind is None:
                raise ValueError(f"unknown property 0x{identifier:02x}")
            value = {_BYTE: block.byte, _U16: block.u16, _U32: block.u32, _VARINT: block.varint,
                     _STR: block.string, _BIN: block.binary,
                     _PAIR: lambda: (block.string(), block.string())}[kind]()
            out.append((identifier, value))
        return out


def split_fixed_header(data: bytes) -> tuple[int, int, int]:
    """(first byte, remaining length, header length) of the packet at the start of data,
    or raise IndexError when the header is incomplete."""
    length, shift, index = 0, 0, 1
    while True:
        byte = data[index]
        length |= (byte & 0x7F) << shift
        index += 1
        if not byte & 0x80:
            return data[0], length, index
        shift += 7
        if index > 4:
            raise ValueError("remaining length longer than 4 bytes")


def decode(data: bytes, proto_ver: int = 4, ordered: bool = False) -> dict:
    """Decode one server-to-client packet into a normalised dict (properties sorted,
    unless `ordered`, for checks on the order of user properties)."""
    first, length, start = split_fixed_header(data)
    body = Reader(data[start:start + length])
    kind, flags = first >> 4, first & 0x0F
    out: dict = {"type": TYPE_NAMES.get(kind, f"type{kind}")}
    v5 = proto_ver == 5

    def v5_props():
        if not v5:
            return []
        return body.properties() if ordered else sorted(body.properties(), key=repr)

    if kind == CONNACK:
        out["session_present"] = body.byte()
        out["rc"] = body.byte()
        out["props"] = v5_props() if body.remaining() or v5 else []
    elif kind == PUBLISH:
        out["dup"], out["qos"], out["retain"] = bool(flags & 8), (flags >> 1) & 3, bool(flags & 1)
        out["topic"] = body.binary()
        out["mid"] = body.u16() if out["qos"] else None
        out["props"] = v5_props()
        out["payload"] = body.take(body.remaining())
    elif kind in (PUBACK, PUBREC, PUBREL, PUBCOMP):
        out["flags"] = flags
        out["mid"] = body.u16()
        out["rc"] = body.byte() if v5 and body.remaining() else 0
        out["props"] = v5_props() if v5 and body.remaining() else []
    elif kind in (SUBACK, UNSUBACK):
        out["mid"] = body.u16()
        out["props"] = v5_props()
        out["codes"] = list(body.take(body.remaining()))
    elif kind in (DISCONNECT, AUTH):
        out["rc"] = body.byte() if body.remaining() else 0
        out["props"] = sorted(body.properties(), key=repr) if body.remaining() else []
    else:
        out["flags"] = flags
        out["body"] = body.take(body.remaining())
    if body.remaining():
        out["trailing"] = body.take(body.remaining())
    return out


def strip(decoded: dict, ignore_props=INFORMATIONAL) -> dict:
    out = dict(decoded)
    if "props" in out:
        out["props"] = [p for p in out["props"] if p[0] not in ignore_props]
    return out
