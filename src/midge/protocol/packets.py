"""Packet objects of MQTT 3.1 / 3.1.1 / 5.0.

Plain slotted dataclasses: the decoder validates the wire, so construction stays
cheap on the hot path (a PUBLISH is built for every message).

Properties are a dict keyed by `Property` (an int). Values are int, str or bytes,
except two that may repeat on the wire:

- `Property.USER_PROPERTY`: a list of (name, value) string pairs, order kept;
- `Property.SUBSCRIPTION_IDENTIFIER`: a list of ints (one in SUBSCRIBE, any number
  in PUBLISH).

An empty dict means "no properties"; v3 packets always have an empty dict.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from midge.protocol.constants import PacketType


@dataclass(slots=True)
class Will:
    topic: str
    payload: bytes = b""
    qos: int = 0
    retain: bool = False
    properties: dict = field(default_factory=dict)
    # The will properties as received (without their length), when the decoder kept
    # them: forwarded in the order they came. Not part of the value (compare=False).
    property_bytes: bytes | None = field(default=None, compare=False, repr=False)


@dataclass(slots=True)
class Connect:
    type = PacketType.CONNECT
    protocol_version: int = 4  # 3, 4 or 5 (ProtocolVersion)
    client_id: str = ""
    clean_start: bool = True  # "clean session" in v3
    keepalive: int = 60
    username: str | None = None
    password: bytes | None = None
    will: Will | None = None
    properties: dict = field(default_factory=dict)
    protocol_name: str = "MQTT"  # "MQIsdp" for 3.1
    bridge: bool = False  # bit 0x80 of the protocol level (Mosquitto's try_private)


@dataclass(slots=True)
class Connack:
    type = PacketType.CONNACK
    session_present: bool = False
    reason_code: int = 0  # ConnackCode in v3, ReasonCode in v5
    properties: dict = field(default_factory=dict)


@dataclass(slots=True)
class Publish:
    type = PacketType.PUBLISH
    topic: str = ""
    payload: bytes = b""
    qos: int = 0
    retain: bool = False
    dup: bool = False
    packet_id: int | None = None  # set iff qos > 0
    properties: dict = field(default_factory=dict)
    # The packet as received, when the decoder kept it: a v3 QoS 0 PUBLISH without
    # flags, which is also what the broker sends a v3 subscriber of this message.
    # Not part of the packet's value (compare=False).
    wire: bytes | None = field(default=None, compare=False, repr=False)
    # The v5 properties as received (without their length; b"" for none), kept by the
    # decoder: a broker forwards them in the order they came, as these bytes.
    property_bytes: bytes | None = field(default=None, compare=False, repr=False)


_new_object = object.__new__


def publish_qos0(topic: str, payload: bytes, wire: bytes | None = None) -> Publish:
    """`Publish(topic, payload, wire=wire)`: QoS 0, no flags, no properties; the
    decoder's most common packet. Built with object.__new__ and the same assignments as
    the dataclass __init__: Python 3.13 specialises instance creation only for classes
    without __slots__, so `Publish(...)` takes type.__call__ and then __init__
    (229 -> 159 ns)."""
    packet = _new_object(Publish)
    packet.topic = topic
    packet.payload = payload
    packet.qos = 0
    packet.retain = False
    packet.dup = False
    packet.packet_id = None
    packet.properties = {}
    packet.wire = wire
    packet.property_bytes = None
    return packet


@dataclass(slots=True)
class Puback:
    type = PacketType.PUBACK
    packet_id: int = 0
    reason_code: int = 0
    properties: dict = field(default_factory=dict)


@dataclass(slots=True)
class Pubrec:
    type = PacketType.PUBREC
    packet_id: int = 0
    reason_code: int = 0
    properties: dict = field(default_factory=dict)


@dataclass(slots=True)
class Pubrel:
    type = PacketType.PUBREL
    packet_id: int = 0
    reason_code: int = 0
    properties: dict = field(default_factory=dict)


@dataclass(slots=True)
class Pubcomp:
    type = PacketType.PUBCOMP
    packet_id: int = 0
    reason_code: int = 0
    properties: dict = field(default_factory=dict)


@dataclass(slots=True)
class Subscription:
    """One topic filter of a SUBSCRIBE with its options (v5 3.8.3.1)."""

    topic_filter: str
    qos: int = 0
    no_local: bool = False
    retain_as_published: bool = False
    retain_handling: int = 0


@dataclass(slots=True)
class Subscribe:
    type = PacketType.SUBSCRIBE
    packet_id: int = 0
    subscriptions: list[Subscription] = field(default_factory=list)
    properties: dict = field(default_factory=dict)


@dataclass(slots=True)
class Suback:
    type = PacketType.SUBACK
    packet_id: int = 0
    reason_codes: list[int] = field(default_factory=list)  # granted QoS or failure
    properties: dict = field(default_factory=dict)


@dataclass(slots=True)
class Unsubscribe:
    type = PacketType.UNSUBSCRIBE
    packet_id: int = 0
    topic_filters: list[str] = field(default_factory=list)
    properties: dict = field(default_factory=dict)


@dataclass(slots=True)
class Unsuback:
    type = PacketType.UNSUBACK
    packet_id: int = 0
    reason_codes: list[int] = field(default_factory=list)  # v5 only; empty in v3
    properties: dict = field(default_factory=dict)


@dataclass(slots=True)
class Pingreq:
    type = PacketType.PINGREQ


@dataclass(slots=True)
class Pingresp:
    type = PacketType.PINGRESP


@dataclass(slots=True)
class Disconnect:
    type = PacketType.DISCONNECT
    reason_code: int = 0
    properties: dict = field(default_factory=dict)


@dataclass(slots=True)
class Auth:
    type = PacketType.AUTH
    reason_code: int = 0
    properties: dict = field(default_factory=dict)


Packet = (
    Connect | Connack | Publish | Puback | Pubrec | Pubrel | Pubcomp | Subscribe
    | Suback | Unsubscribe | Unsuback | Pingreq | Pingresp | Disconnect | Auth
)
