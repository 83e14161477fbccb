"""Errors a peer can cause on the wire, each carrying the MQTT 5.0 reason code it maps to.

The decoder never lets one of these escape `Decoder.feed`: it stores it in
`decoder.error`. The broker turns it into a v5 CONNACK / DISCONNECT with
`reason_code`, or a plain close for v3. The message (``str(error)``) says what was
wrong; it goes to the broker's log line.

    MQTTError
    ├── MalformedPacket            0x81
    ├── ProtocolError              0x82
    ├── UnsupportedProtocolVersion 0x84  (.protocol_name, .protocol_version)
    ├── ClientIdentifierNotValid   0x85
    ├── TopicFilterInvalid         0x8F
    ├── TopicNameInvalid           0x90
    ├── TopicAliasInvalid          0x94
    ├── PacketTooLarge             0x95
    ├── PayloadFormatInvalid       0x99
    └── TopicTooDeep               0x81 / 0x82, and no CONNACK
"""

from __future__ import annotations

from midge.protocol.constants import ReasonCode


class MQTTError(Exception):
    """A peer broke the protocol; `reason_code` is the v5 code that says how."""

    reason_code: int = ReasonCode.UNSPECIFIED_ERROR
    # Whether a broker answers a CONNECT that fails this way with a v5 CONNACK.
    connack: bool = True


class MalformedPacket(MQTTError):
    reason_code = ReasonCode.MALFORMED_PACKET


class ProtocolError(MQTTError):
    reason_code = ReasonCode.PROTOCOL_ERROR


class UnsupportedProtocolVersion(MQTTError):
    """CONNECT with a protocol level this broker does not speak.

    Carries what was read so the broker can answer in the client's format: Mosquitto
    answers CONNACK return code 1 (v3 format) to an unknown level, 0x84 to v5.
    """

    reason_code = ReasonCode.UNSUPPORTED_PROTOCOL_VERSION

    def __init__(self, message: str, protocol_name: str, protocol_version: int):
        super().__init__(message)
        self.protocol_name = protocol_name
        self.protocol_version = protocol_version


class ClientIdentifierNotValid(MQTTError):
    reason_code = ReasonCode.CLIENT_IDENTIFIER_NOT_VALID


class TopicFilterInvalid(MQTTError):
    reason_code = ReasonCode.TOPIC_FILTER_INVALID


class TopicNameInvalid(MQTTError):
    reason_code = ReasonCode.TOPIC_NAME_INVALID


class TopicAliasInvalid(MQTTError):
    reason_code = ReasonCode.TOPIC_ALIAS_INVALID


class PacketTooLarge(MQTTError):
    reason_code = ReasonCode.PACKET_TOO_LARGE


class PayloadFormatInvalid(MQTTError):
    reason_code = ReasonCode.PAYLOAD_FORMAT_INVALID


class TopicTooDeep(MQTTError):
    """A topic or filter with more than `topics.MAX_TOPIC_SEPARATORS` `/` (server role).

    Answered as Mosquitto 2.0 answers it: v5 DISCONNECT 0x81 for SUBSCRIBE and
    UNSUBSCRIBE, 0x82 for PUBLISH, a plain close for v3, and a CONNECT whose will topic
    is that deep is closed without a CONNACK (`connack` False).
    """

    def __init__(self, message: str, reason_code: int, connack: bool = True):
        super().__init__(message)
        self.reason_code = reason_code
        self.connack = connack
