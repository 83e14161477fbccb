"""What the specs make a peer error (MQTT 3.1.1 and 5.0), each rule with the error it gives.

Every case is raw bytes a peer could send; the decoder must store the error, return
the packets before it, and raise nothing.
"""

import pytest

from midge.protocol import errors
from midge.protocol.codec import Decoder, encode
from midge.protocol.constants import Property as P
from midge.protocol.packets import Connect, Pingreq, Publish
from tests.protocol.helpers import as_client, as_server


def s(text) -> bytes:
    """MQTT string: 2-byte length + bytes (str is UTF-8 encoded, bytes used raw)."""
    raw = text.encode() if isinstance(text, str) else text
    return len(raw).to_bytes(2, "big") + raw


def frame(first: int, body: bytes) -> bytes:
    assert len(body) < 128
    return bytes((first, len(body))) + body


def connect(flags: int = 0x02, level: int = 4, name: str = "MQTT", rest: bytes = b"",
            props: bytes = b"\x00", first: int = 0x10) -> bytes:
    body = s(name) + bytes((level, flags)) + b"\x00\x3c"
    if level == 5:
        body += props
    return frame(first, body + s("c") + rest)


def sub(topic_filter, options: int = 0) -> bytes:
    return s(topic_filter) + bytes((options,))


def prop(ident: int, value: bytes) -> bytes:
    return bytes((ident,)) + value


def props(*items: bytes) -> bytes:
    body = b"".join(items)
    return bytes((len(body),)) + body


M, PE = errors.MalformedPacket, errors.ProtocolError

# (id, version, raw bytes after CONNECT, error class, words the message must contain)
SERVER_CASES = [
    # Fixed header flags (3.1.1 2.2.2, 5.0 2.1.3).
    ("puback-flags", 4, frame(0x41, b"\x00\x01"), M, "flags"),
    ("pubrel-flags", 4, frame(0x60, b"\x00\x01"), M, "flags"),
    ("subscribe-flags", 4, frame(0x80, b"\x00\x01" + sub("a")), M, "flags"),
    ("unsubscribe-flags", 5, frame(0xA0, b"\x00\x01\x00" + s("a")), M, "flags"),
    ("pingreq-flags", 4, frame(0xC1, b""), M, "flags"),
    ("disconnect-flags", 5, frame(0xE2, b""), M, "flags"),
    # PUBLISH fixed header.
    ("publish-qos3", 4, frame(0x36, s("t") + b"\x00\x01"), M, "QoS 3"),
    ("publish-dup-qos0-v4", 4, frame(0x38, s("t")), M, "DUP"),
    ("publish-dup-qos0-v5", 5, frame(0x38, s("t") + b"\x00"), M, "DUP"),
    # Packet identifier 0 (2.2.1).
    ("publish-pid0", 4, frame(0x32, s("t") + b"\x00\x00"), PE, "identifier 0"),
    ("puback-pid0", 4, frame(0x40, b"\x00\x00"), PE, "identifier 0"),
    ("pubrel-pid0", 5, frame(0x62, b"\x00\x00"), PE, "identifier 0"),
    ("subscribe-pid0", 4, frame(0x82, b"\x00\x00" + sub("a")), PE, "identifier 0"),
    ("unsubscribe-pid0", 4, frame(0xA2, b"\x00\x00" + s("a")), PE, "identifier 0"),
    # UTF-8 strings (1.5.3 / 1.5.4): as strict as Mosquitto.
    ("topic-nul", 4, frame(0x30, s(b"a\x00b")), M, "U+0000"),
    ("topic-surrogate", 4, frame(0x30, s(b"a\xed\xa0\x80")), M, "UTF-8"),
    ("topic-overlong", 4, frame(0x30, s(b"\xc0\xaf")), M, "UTF-8"),
    ("topic-truncated-utf8", 4, frame(0x30, s(b"a\xc3")), M, "UTF-8"),
    ("topic-control", 4, frame(0x30, s(b"a\x01")), M, "U+0001"),
    ("topic-c1-control", 4, frame(0x30, s("a\x85")), M, "U+0085"),
    ("topic-nonchar", 4, frame(0x30, s("a\uffff")), M, "U+FFFF"),
    ("filter-nonchar", 4, frame(0x82, b"\x00\x01" + sub("a\ufdd0")), M, "U+FDD0"),
    ("client-id-nul", None, frame(0x10, s("MQTT") + b"\x04\x02\x00\x3c" + s(b"a\x00")), M, "client identifier"),
    ("user-property-control", 5, frame(0x30, s("t") + props(prop(0x26, s("k") + s("v\x1f")))), M, "U+001F"),
    # Topic names and filters.
    ("publish-wildcard-plus", 4, frame(0x30, s("a/+")), errors.TopicNameInvalid, "wildcard"),
    ("publish-wildcard-hash", 5, frame(0x30, s("#") + b"\x00"), errors.TopicNameInvalid, "wildcard"),
    ("publish-empty-topic-v4", 4, frame(0x30, s("")), PE, "empty topic"),
    ("publish-empty-topic-v5", 5, frame(0x30, s("") + b"\x00"), PE, "no topic alias"),
    ("subscribe-bad-hash", 4, frame(0x82, b"\x00\x01" + sub("a/#/b")), errors.TopicFilterInvalid, "a/#/b"),
    ("subscribe-bad-plus", 5, frame(0x82, b"\x00\x01\x00" + sub("a+")), M, "a+"),  # v5: all malformed
    ("subscribe-empty-filter", 4, frame(0x82, b"\x00\x01" + sub("")), errors.TopicFilterInvalid, "''"),
    ("unsubscribe-bad-filter", 4, frame(0xA2, b"\x00\x01" + s("x#")), errors.TopicFilterInvalid, "x#"),
    # No filters at all.
    ("subscribe-none-v4", 4, frame(0x82, b"\x00\x01"), PE, "no topic filters"),
    ("subscribe-none-v5", 5, frame(0x82, b"\x00\x01\x00"), M, "no topic filters"),
    ("unsubscribe-none-v4", 4, frame(0xA2, b"\x00\x01"), PE, "no topic filters"),
    ("unsubscribe-none-v5", 5, frame(0xA2, b"\x00\x01\x00"), M, "no topic filters"),
    # Subscription options (3.1.1 3.8.3.1, 5.0 3.8.3.1).
    ("sub-options-reserved-v4", 4, frame(0x82, b"\x00\x01" + sub("a", 0x04)), M, "reserved"),
    ("sub-options-reserved-v5", 5, frame(0x82, b"\x00\x01\x00" + sub("a", 0x40)), M, "reserved"),
    ("sub-qos3-v4", 4, frame(0x82, b"\x00\x01" + sub("a", 0x03)), M, "QoS 3"),
    ("sub-qos3-v5", 5, frame(0x82, b"\x00\x01\x00" + sub("a", 0x03)), M, "QoS 3"),
    ("sub-retain-handling-3", 5, frame(0x82, b"\x00\x01\x00" + sub("a", 0x30)), M, "retain handling 3"),
    ("sub-missing-options", 4, frame(0x82, b"\x00\x01" + s("a")), M, "options"),
    # Properties (5.0 2.2.2).
    ("prop-not-allowed", 5, frame(0x30, s("t") + props(prop(0x21, b"\x00\x01"))), PE, "RECEIVE_MAXIMUM"),
    ("prop-unknown", 5, frame(0x30, s("t") + props(prop(0x7F, b"\x00"))), M, "0x7F"),
    ("prop-duplicate", 5, frame(0x30, s("t") + props(prop(0x02, b"\x00\x00\x00\x01"),
                                                      prop(0x02, b"\x00\x00\x00\x02"))),
     PE, "more than once"),
    ("prop-sub-id-from-client", 5, frame(0x30, s("t") + props(prop(0x0B, b"\x01"))), PE, "subscription identifier"),
    ("prop-sub-id-twice", 5, frame(0x82, b"\x00\x01" + props(prop(0x0B, b"\x01"), prop(0x0B, b"\x02")) + sub("a")),
     M, "more than once"),
    ("prop-sub-id-zero", 5, frame(0x82, b"\x00\x01" + props(prop(0x0B, b"\x00")) + sub("a")), M, "must not be 0"),
    ("prop-payload-format-2", 5, frame(0x30, s("t") + props(prop(0x01, b"\x02"))), PE, "0 or 1"),
    ("prop-topic-alias-0", 5, frame(0x30, s("t") + props(prop(0x23, b"\x00\x00"))), errors.TopicAliasInvalid, "TOPIC_ALIAS"),
    ("prop-runs-past-length", 5, frame(0x30, s("t") + b"\x02\x02\x00\x00\x00\x01"), M, "property"),
    ("prop-length-past-packet", 5, frame(0x30, s("t") + b"\x09\x01\x00"), M, "property length"),
    ("disconnect-prop-not-allowed", 5, frame(0xE0, b"\x00" + props(prop(0x21, b"\x00\x05"))), PE, "RECEIVE_MAXIMUM"),
    # Remaining length consistent with the content.
    ("pingreq-trailing", 4, frame(0xC0, b"\x00"), M, "unexpected bytes"),
    ("puback-trailing-v4", 4, frame(0x40, b"\x00\x01\x00"), M, "after the packet identifier"),
    ("puback-short", 4, frame(0x40, b"\x00"), M, "shorter"),
    ("publish-topic-runs-past", 4, b"\x30\x01\x00", M, "topic"),
    ("publish-no-pid", 4, frame(0x32, s("t") + b"\x01"), M, "packet identifier"),
    ("disconnect-trailing-v4", 4, frame(0xE0, b"\x00"), M, "unexpected bytes"),
    ("disconnect-props-trailing", 5, frame(0xE0, b"\x00\x00\x01"), M, "unexpected bytes"),
    ("remaining-length-5-bytes", 4, b"\x30\xff\xff\xff\xff\x01", M, "longer than 4 bytes"),
    # Reason codes a packet may carry.
    ("puback-bad-reason", 5, frame(0x40, b"\x00\x01\x05"), PE, "reason code 0x05"),
    ("pubrel-bad-reason", 5, frame(0x62, b"\x00\x01\x10"), PE, "reason code 0x10"),
    ("disconnect-bad-reason", 5, frame(0xE0, b"\x05"), PE, "reason code 0x05"),
    ("auth-bad-reason", 5, frame(0xF0, b"\x01"), PE, "reason code 0x01"),
    # Packet types.
    ("reserved-type-0", 4, frame(0x00, b""), M, "reserved"),
    ("auth-in-v4", 4, frame(0xF0, b""), PE, "AUTH"),
    ("second-connect", 4, b"\x10\x0e\x00\x04MQTT\x04\x02\x00\x3c\x00\x02c1", PE, "second CONNECT"),
    ("connack-from-client", 4, frame(0x20, b"\x00\x00"), PE, "CONNACK"),
    ("suback-from-client", 5, frame(0x90, b"\x00\x01\x00\x00"), PE, "SUBACK"),
    ("pingresp-from-client", 4, frame(0xD0, b""), PE, "PINGRESP"),
]


@pytest.mark.parametrize("version, data, error, words",
                         [case[1:] for case in SERVER_CASES], ids=[case[0] for case in SERVER_CASES])
def test_server_role_errors(version, data, error, words):
    if version is None:  # a bad CONNECT: decoded without a CONNECT before it
        decoder = Decoder()
        packets, got = decoder.feed(data), decoder.error
    else:
        packets, got = as_server(data, version)
    assert packets == []
    assert type(got) is error, got
    assert words in str(got)
    assert got.reason_code == error.reason_code


CONNECT_CASES = [
    ("reserved-flag", connect(flags=0x03), M, "reserved flag"),
    ("will-qos-without-will", connect(flags=0x0A), M, "without the will flag"),
    ("will-retain-without-will", connect(flags=0x22), M, "without the will flag"),
    ("will-qos-3", connect(flags=0x1E, rest=s("w") + s("m")), M, "will QoS is 3"),
    ("password-without-username-v4", connect(flags=0x42, rest=s("p")), M, "password flag"),
    ("password-without-username-v3", connect(flags=0x42, level=3, name="MQIsdp", rest=s("p")), M,
     "password flag"),
    ("will-topic-wildcard", connect(flags=0x06, rest=s("w/#") + s("m")), errors.TopicNameInvalid, "will topic"),
    ("will-topic-empty", connect(flags=0x06, rest=s("") + s("m")), errors.TopicNameInvalid, "will topic"),
    ("fixed-header-flags", connect(first=0x11), M, "flags"),
    ("trailing", connect(rest=b"\x00"), M, "after the payload"),
    ("missing-username", connect(flags=0x82), M, "username"),
    ("bad-protocol-name", connect(name="HTTP"), PE, "'HTTP'"),
    ("receive-maximum-0", connect(level=5, props=props(prop(0x21, b"\x00\x00"))), PE, "RECEIVE_MAXIMUM"),
    ("max-packet-size-0", connect(level=5, props=props(prop(0x27, b"\x00\x00\x00\x00"))), PE,
     "MAXIMUM_PACKET_SIZE"),
    ("request-problem-info-2", connect(level=5, props=props(prop(0x17, b"\x02"))), PE, "0 or 1"),
    ("auth-data-without-method", connect(level=5, props=props(prop(0x16, s("x")))), PE, "authentication data"),
    ("will-delay-in-connect", connect(level=5, props=props(prop(0x18, b"\x00\x00\x00\x01"))), PE,
     "WILL_DELAY_INTERVAL"),
    ("first-packet-not-connect", encode(Pingreq(), 4), PE, "before CONNECT"),
]


@pytest.mark.parametrize("data, error, words", [c[1:] for c in CONNECT_CASES],
                         ids=[c[0] for c in CONNECT_CASES])
def test_connect_errors(data, error, words):
    decoder = Decoder()
    assert decoder.feed(data) == []
    assert type(decoder.error) is error, decoder.error
    assert words in str(decoder.error)


def test_password_without_username_allowed_in_v5():
    decoder = Decoder()
    [packet] = decoder.feed(connect(flags=0x42, level=5, rest=s("p")))
    assert packet.username is None and packet.password == b"p"


def test_v5_version_known_even_when_connect_is_bad():
    """The broker answers a bad v5 CONNECT with a v5 CONNACK, so it needs the level."""
    decoder = Decoder()
    decoder.feed(connect(level=5, props=props(prop(0x21, b"\x00\x00"))))
    assert decoder.error is not None and decoder.version == 5


@pytest.mark.parametrize("name, level", [("MQTT", 6), ("MQTT", 3), ("MQIsdp", 4), ("MQTT", 0x83)])
def test_unsupported_protocol_version_carries_what_was_read(name, level):
    decoder = Decoder()
    assert decoder.feed(connect(name=name, level=level)) == []
    error = decoder.error
    assert isinstance(error, errors.UnsupportedProtocolVersion)
    assert error.reason_code == 0x84
    assert (error.protocol_name, error.protocol_version) == (name, level & 0x7F)
    assert decoder.version is None


def test_mqtt31_is_lenient_about_reserved_flags():
    """3.1 defined DUP/QoS bits on SUBSCRIBE/UNSUBSCRIBE/PUBREL; Mosquitto accepts them."""
    packets, error = as_server(frame(0x8A, b"\x00\x01" + sub("a", 1)) + frame(0x60, b"\x00\x01"), 3)
    assert error is None and len(packets) == 2


def test_valid_non_ascii_strings_accepted():
    packets, error = as_server(frame(0x30, s("caf\u00e9/\u00a0/\U0001F600") + b"x"), 4)
    assert error is None and packets[0].topic == "caf\u00e9/\u00a0/\U0001F600"


def test_user_property_may_repeat_and_keeps_order():
    body = s("t") + props(prop(0x26, s("k") + s("1")), prop(0x26, s("k") + s("2")))
    [packet], error = as_server(frame(0x30, body), 5)
    assert error is None
    assert packet.properties == {P.USER_PROPERTY: [("k", "1"), ("k", "2")]}


CLIENT_CASES = [
    ("connect-to-client", 4, connect(), PE, "CONNECT"),
    ("subscribe-to-client", 4, frame(0x82, b"\x00\x01" + sub("a")), PE, "SUBSCRIBE"),
    ("pingreq-to-client", 5, frame(0xC0, b""), PE, "PINGREQ"),
    ("connack-reserved-flags", 4, frame(0x20, b"\x02\x00"), M, "reserved"),
    ("connack-short", 4, frame(0x20, b"\x00"), M, "shorter"),
    ("connack-trailing-v4", 4, frame(0x20, b"\x00\x00\x00"), M, "unexpected bytes"),
    ("connack-v5-without-properties", 5, frame(0x20, b"\x00\x00"), M, "past the end"),
    ("suback-no-codes", 4, frame(0x90, b"\x00\x01"), PE, "no reason codes"),
    ("unsuback-trailing-v4", 4, frame(0xB0, b"\x00\x01\x00"), M, "unexpected bytes"),
    ("unsuback-no-codes-v5", 5, frame(0xB0, b"\x00\x01\x00"), PE, "no reason codes"),
    ("disconnect-from-server-v4", 4, frame(0xE0, b""), PE, "DISCONNECT"),
    ("pingresp-trailing", 4, frame(0xD0, b"\x00"), M, "unexpected bytes"),
    ("connack-prop-not-allowed", 5, frame(0x20, b"\x00\x00" + props(prop(0x17, b"\x01"))), PE,
     "REQUEST_PROBLEM_INFORMATION"),
    ("connack-maximum-qos-2", 5, frame(0x20, b"\x00\x00" + props(prop(0x24, b"\x02"))), PE, "0 or 1"),
]


@pytest.mark.parametrize("version, data, error, words", [c[1:] for c in CLIENT_CASES],
                         ids=[c[0] for c in CLIENT_CASES])
def test_client_role_errors(version, data, error, words):
    packets, got = as_client(data, version)
    assert packets == []
    assert type(got) is error, got
    assert words in str(got)


def test_client_role_accepts_repeated_subscription_identifiers():
    body = s("t") + props(prop(0x0B, b"\x01"), prop(0x0B, b"\x02"))
    [packet], error = as_client(frame(0x30, body), 5)
    assert error is None and packet.properties == {P.SUBSCRIPTION_IDENTIFIER: [1, 2]}


def test_client_version_can_change_after_construction():
    decoder = Decoder(version=4, role="client")
    decoder.version = 5
    assert decoder.feed(b"\x20\x03\x00\x00\x00")[0].properties == {}


# -- Error handling shape ------------------------------------------------------------------

def test_packets_before_the_error_are_returned_and_later_feeds_return_nothing():
    good = encode(Publish("t", b"1"), 4)
    decoder = Decoder()
    packets = decoder.feed(encode(Connect(4, "c"), 4) + good + b"\x30\x01\x00" + good)
    assert [type(p).__name__ for p in packets] == ["Connect", "Publish"]
    assert isinstance(decoder.error, errors.MalformedPacket)
    assert decoder.feed(good) == []


def test_packet_too_large_detected_from_the_fixed_header():
    """Only the fixed header of a 1000-byte packet is fed: refused before any body arrives."""
    decoder = Decoder(max_packet_size=100)
    decoder.feed(encode(Connect(4, "c"), 4))
    assert decoder.feed(b"\x30\xe5\x07") == []  # remaining length 997: 1000 bytes in all
    assert isinstance(decoder.error, errors.PacketTooLarge)
    assert decoder.error.reason_code == 0x95
    assert "1000 bytes" in str(decoder.error) and "100" in str(decoder.error)


def test_packet_at_the_size_limit_is_accepted():
    packet = Publish("t", b"x" * 95)  # 2 + 3 + 95 = 100 bytes
    data = encode(packet, 4)
    assert len(data) == 100
    packets, error = as_server(data, 4, max_packet_size=100)
    assert (packets, error) == ([packet], None)
    packets, error = as_server(encode(Publish("t", b"x" * 96), 4), 4, max_packet_size=100)
    assert packets == [] and isinstance(error, errors.PacketTooLarge)


def test_connect_counts_against_the_size_limit():
    decoder = Decoder(max_packet_size=10)
    assert decoder.feed(encode(Connect(4, "client"), 4)) == []
    assert isinstance(decoder.error, errors.PacketTooLarge)


def test_error_messages_name_the_packet():
    _, error = as_server(frame(0x40, b"\x00\x00"), 4)
    assert "PUBACK" in str(error)


def test_reason_codes_of_every_error_class():
    expected = {
        errors.MalformedPacket: 0x81, errors.ProtocolError: 0x82,
        errors.UnsupportedProtocolVersion: 0x84, errors.ClientIdentifierNotValid: 0x85,
        errors.TopicFilterInvalid: 0x8F, errors.TopicNameInvalid: 0x90,
        errors.TopicAliasInvalid: 0x94, errors.PacketTooLarge: 0x95,
        errors.PayloadFormatInvalid: 0x99,
    }
    for cls, code in expected.items():
        assert cls.reason_code == code
        assert issubclass(cls, errors.MQTTError)
