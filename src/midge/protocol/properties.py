"""MQTT 5.0 properties (section 2.2.2): one table drives encoding, decoding and checks.

`PROPERTY_SPECS` maps each `Property` to its wire type, the packets it may appear in
(table 2.2.2.2) and its value check. Decoding refuses unknown identifiers (malformed),
identifiers not allowed in the packet, repeats (only user property, and subscription
identifier in a server's PUBLISH, may repeat) and out-of-range values (protocol errors).

Also home to the primitive readers/writers the codec shares: variable byte integers,
UTF-8 strings (checked like Mosquitto: no NUL, no surrogates, no overlongs, no control
characters U+0001..U+001F / U+007F..U+009F, no non-characters) and binary data.
"""

from __future__ import annotations

import re

from midge.protocol.constants import PacketType, Property
from midge.protocol.errors import MalformedPacket, ProtocolError, TopicAliasInvalid

# Pseudo packet type for the will properties of a CONNECT (packet type 0 is reserved).
WILL = 0

BYTE, TWO_BYTE, FOUR_BYTE, VARINT, STRING, BINARY, STRING_PAIR = range(7)

_T = PacketType
_ALL = frozenset({_T.CONNECT, _T.CONNACK, _T.PUBLISH, WILL, _T.PUBACK, _T.PUBREC, _T.PUBREL,
                  _T.PUBCOMP, _T.SUBSCRIBE, _T.SUBACK, _T.UNSUBSCRIBE, _T.UNSUBACK,
                  _T.DISCONNECT, _T.AUTH})
_ACKS = frozenset({_T.CONNACK, _T.PUBACK, _T.PUBREC, _T.PUBREL, _T.PUBCOMP, _T.SUBACK,
                   _T.UNSUBACK, _T.DISCONNECT, _T.AUTH})
_MESSAGE = frozenset({_T.PUBLISH, WILL})


def _zero_or_one(value: int) -> str | None:
    return None if value in (0, 1) else "must be 0 or 1"


def _not_zero(value: int) -> str | None:
    return None if value else "must not be 0"


# Property -> (wire type, packets it may appear in, value check or None).
PROPERTY_SPECS: dict[int, tuple[int, frozenset, object]] = {
    Property.PAYLOAD_FORMAT_INDICATOR: (BYTE, _MESSAGE, _zero_or_one),
    Property.MESSAGE_EXPIRY_INTERVAL: (FOUR_BYTE, _MESSAGE, None),
    Property.CONTENT_TYPE: (STRING, _MESSAGE, None),
    Property.RESPONSE_TOPIC: (STRING, _MESSAGE, None),
    Property.CORRELATION_DATA: (BINARY, _MESSAGE, None),
    Property.SUBSCRIPTION_IDENTIFIER: (VARINT, frozenset({_T.PUBLISH, _T.SUBSCRIBE}), _not_zero),
    Property.SESSION_EXPIRY_INTERVAL: (FOUR_BYTE, frozenset({_T.CONNECT, _T.CONNACK, _T.DISCONNECT}), None),
    Property.ASSIGNED_CLIENT_IDENTIFIER: (STRING, frozenset({_T.CONNACK}), None),
    Property.SERVER_KEEP_ALIVE: (TWO_BYTE, frozenset({_T.CONNACK}), None),
    Property.AUTHENTICATION_METHOD: (STRING, frozenset({_T.CONNECT, _T.CONNACK, _T.AUTH}), None),
    Property.AUTHENTICATION_DATA: (BINARY, frozenset({_T.CONNECT, _T.CONNACK, _T.AUTH}), None),
    Property.REQUEST_PROBLEM_INFORMATION: (BYTE, frozenset({_T.CONNECT}), _zero_or_one),
    Property.WILL_DELAY_INTERVAL: (FOUR_BYTE, frozenset({WILL}), None),
    Property.REQUEST_RESPONSE_INFORMATION: (BYTE, frozenset({_T.CONNECT}), _zero_or_one),
    Property.RESPONSE_INFORMATION: (STRING, frozenset({_T.CONNACK}), None),
    Property.SERVER_REFERENCE: (STRING, frozenset({_T.CONNACK, _T.DISCONNECT}), None),
    Property.REASON_STRING: (STRING, _ACKS, None),
    Property.RECEIVE_MAXIMUM: (TWO_BYTE, frozenset({_T.CONNECT, _T.CONNACK}), _not_zero),
    Property.TOPIC_ALIAS_MAXIMUM: (TWO_BYTE, frozenset({_T.CONNECT, _T.CONNACK}), None),
    Property.TOPIC_ALIAS: (TWO_BYTE, frozenset({_T.PUBLISH}), _not_zero),
    Property.MAXIMUM_QOS: (BYTE, frozenset({_T.CONNACK}), _zero_or_one),
    Property.RETAIN_AVAILABLE: (BYTE, frozenset({_T.CONNACK}), _zero_or_one),
    Property.USER_PROPERTY: (STRING_PAIR, _ALL, None),
    Property.MAXIMUM_PACKET_SIZE: (FOUR_BYTE, frozenset({_T.CONNECT, _T.CONNACK}), _not_zero),
    Property.WILDCARD_SUBSCRIPTION_AVAILABLE: (BYTE, frozenset({_T.CONNACK}), _zero_or_one),
    Property.SUBSCRIPTION_IDENTIFIER_AVAILABLE: (BYTE, frozenset({_T.CONNACK}), _zero_or_one),
    Property.SHARED_SUBSCRIPTION_AVAILABLE: (BYTE, frozenset({_T.CONNACK}), _zero_or_one),
}

_PACKET_NAMES: dict[object, str] = {WILL: "will", **{t: t.name for t in PacketType}}

# Indexed by identifier byte, so the decode loop is one list lookup (ids are all < 0x80).
_SPEC_BY_ID: list = [None] * 256
for _ident, _spec in PROPERTY_SPECS.items():
    _SPEC_BY_ID[_ident] = (Property(_ident),) + _spec
del _ident, _spec

# What Mosquitto's UTF-8 check refuses beyond what Python's strict decoder already does
# (invalid bytes, overlongs, surrogates, > U+10FFFF): NUL, C0/C1 controls, non-characters.
_FORBIDDEN_CHARS = re.compile(
    "[\x00-\x1f\x7f-\x9f\ufdd0-\ufdef"
    + "".join(f"{chr(plane << 16 | 0xFFFE)}{chr(plane << 16 | 0xFFFF)}" for plane in range(17))
    + "]"
)


# -- Primitives: paired encode_*/read_* helpers ------------------------------------------

def encode_varint(value: int) -> bytes:
    """Variable byte integer (spec 1.5.5), 1 to 4 bytes."""
    if value < 0x80:  # the common case: one byte
        return bytes((value,))
    if value > 268_435_455 or value < 0:
        raise ValueError(f"variable byte integer out of range: {value}")
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def read_varint(data: bytes, pos: int, stop: int) -> tuple[int, int]:
    """(value, next position); MalformedPacket if cut short or longer than 4 bytes."""
    value = 0
    shift = 0
    for index in range(pos, min(pos + 4, stop)):
        byte = data[index]
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, index + 1
        shift += 7
    if stop - pos >= 4:
        raise MalformedPacket("variable byte integer longer than 4 bytes")
    raise MalformedPacket("variable byte integer runs past the end of the packet")


def check_string(text: str, what: str) -> str:
    """Raise MalformedPacket if `text` has a character MQTT forbids; return it."""
    bad = _FORBIDDEN_CHARS.search(text)
    if bad is not None:
        raise MalformedPacket(f"{what} contains forbidden character U+{ord(bad.group()):04X}")
    return text


def read_string(data: bytes, pos: int, stop: int, what: str) -> tuple[str, int]:
    """UTF-8 string with a 2-byte length; (text, next position)."""
    if pos + 2 > stop:
        raise MalformedPacket(f"{what}: string length runs past the end of the packet")
    end = pos + 2 + ((data[pos] << 8) | data[pos + 1])
    if end > stop:
        raise MalformedPacket(f"{what}: string runs past the end of the packet")
    try:
        text = data[pos + 2:end].decode()  # strict: refuses surrogates and overlongs
    except UnicodeDecodeError as exc:
        raise MalformedPacket(f"{what} is not valid UTF-8 ({exc.reason})") from None
    # isprintable() is a fast exact pre-check: every forbidden character is non-printable
    # (C0/C1 controls, unassigned non-characters), so the slow regex runs only for text
    # with other non-printables (such as U+00A0), which is rare.
    if not text.isprintable():
        check_string(text, what)
    return text, end


def valid_utf8_payload(payload: bytes) -> bool:
    """True if a payload sent with payload format indicator 1 is well-formed MQTT UTF-8.

    The receiver MAY check this (5.0 3.3.2.3.2) and answer 0x99 Payload format invalid;
    the decoder leaves that choice to the broker.
    """
    try:
        text = bytes(payload).decode()
    except UnicodeDecodeError:
        return False
    return text.isprintable() or _FORBIDDEN_CHARS.search(text) is None


def read_binary(data: bytes, pos: int, stop: int, what: str) -> tuple[bytes, int]:
    """Binary data with a 2-byte length; (bytes, next position)."""
    if pos + 2 > stop:
        raise MalformedPacket(f"{what}: length runs past the end of the packet")
    end = pos + 2 + ((data[pos] << 8) | data[pos + 1])
    if end > stop:
        raise MalformedPacket(f"{what} runs past the end of the packet")
    return data[pos + 2:end], end


def encode_string(text: str) -> bytes:
    raw = text.encode()
    if len(raw) > 0xFFFF:
        raise ValueError(f"string longer than 65535 bytes: {text[:40]!r}...")
    return len(raw).to_bytes(2, "big") + raw


def encode_binary(data: bytes) -> bytes:
    if len(data) > 0xFFFF:
        raise ValueError("binary data longer than 65535 bytes")
    return len(data).to_bytes(2, "big") + bytes(data)


# -- Properties ----------------------------------------------------------------------------

def _encode_value(kind: int, value) -> bytes:
    if kind == BYTE:
        return bytes((value,))
    if kind == TWO_BYTE:
        return value.to_bytes(2, "big")
    if kind == FOUR_BYTE:
        return value.to_bytes(4, "big")
    if kind == VARINT:
        return encode_varint(value)
    if kind == STRING:
        return encode_string(value)
    if kind == BINARY:
        return encode_binary(value)
    name, text = value
    return encode_string(name) + encode_string(text)


def encode_property_block(properties: dict | None) -> bytes:
    """The property length followed by the properties (b"\\x00" when there are none)."""
    if not properties:
        return b"\x00"
    parts = []
    for ident, value in properties.items():
        kind = PROPERTY_SPECS[ident][0]
        head = bytes((ident,))
        if ident == Property.USER_PROPERTY or (
            ident == Property.SUBSCRIPTION_IDENTIFIER and isinstance(value, (list, tuple))
        ):
            for item in value:
                parts.append(head + _encode_value(kind, item))
        else:
            parts.append(head + _encode_value(kind, value))
    body = b"".join(parts)
    return encode_varint(len(body)) + body


def decode_properties(data: bytes, pos: int, stop: int, packet_type: int,
                      repeat_subscription_id: bool = False) -> tuple[dict, int]:
    """Read a property block at `pos`; (properties, next position).

    `packet_type` is a PacketType or WILL. `repeat_subscription_id` allows several
    subscription identifiers (a PUBLISH sent by a server).
    """
    length, pos = read_varint(data, pos, stop)
    if not length:  # the common case: no properties
        return {}, pos
    end = pos + length
    if end > stop:
        raise MalformedPacket("property length runs past the end of the packet")
    properties: dict = {}
    where = _PACKET_NAMES[packet_type]
    while pos < end:
        spec = _SPEC_BY_ID[data[pos]]
        if spec is None:
            raise MalformedPacket(f"unknown property identifier 0x{data[pos]:02X} in {where}")
        ident, kind, allowed, check = spec
        pos += 1
        if packet_type not in allowed:
            raise ProtocolError(f"property {ident.name} is not allowed in {where}")
        value: int | str | bytes | tuple[str, str]
        if kind == BYTE:
            if pos + 1 > end:
                raise MalformedPacket(f"property {ident.name} runs past the property length")
            value = data[pos]
            pos += 1
        elif kind == TWO_BYTE:
            if pos + 2 > end:
                raise MalformedPacket(f"property {ident.name} runs past the property length")
            value = (data[pos] << 8) | data[pos + 1]
            pos += 2
        elif kind == FOUR_BYTE:
            if pos + 4 > end:
                raise MalformedPacket(f"property {ident.name} runs past the property length")
            value = int.from_bytes(data[pos:pos + 4], "big")
            pos += 4
        elif kind == VARINT:
            value, pos = read_varint(data, pos, end)
        elif kind == STRING:
            value, pos = read_string(data, pos, end, f"property {ident.name}")
        elif kind == BINARY:
            value, pos = read_binary(data, pos, end, f"property {ident.name}")
        else:
            name, pos = read_string(data, pos, end, "user property name")
            text, pos = read_string(data, pos, end, "user property value")
            value = (name, text)
        if check is not None:
            problem = check(value)
            if problem is not None:
                error = TopicAliasInvalid if ident == Property.TOPIC_ALIAS else ProtocolError
                raise error(f"property {ident.name} in {where} {problem} (got {value!r})")
        if ident == Property.USER_PROPERTY:
            properties.setdefault(ident, []).append(value)
        elif ident == Property.SUBSCRIPTION_IDENTIFIER:
            ids = properties.setdefault(ident, [])
            if ids and not repeat_subscription_id:
                raise ProtocolError(f"property {ident.name} appears more than once in {where}")
            ids.append(value)
        elif ident in properties:
            raise ProtocolError(f"property {ident.name} appears more than once in {where}")
        else:
            properties[ident] = value
    return properties, pos
