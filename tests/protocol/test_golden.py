"""Golden bytes: every packet in 3.1.1 and 5.0 (and CONNECT in 3.1), written by hand from the specs.

Each fixture is checked both ways: encode(packet) gives the bytes, and decoding the
bytes in the role that receives that packet gives the packet back.
"""

import pytest

from midge.protocol.codec import Decoder, encode
from midge.protocol.constants import Property as P
from midge.protocol.packets import (
    Auth, Connack, Connect, Disconnect, Pingreq, Pingresp, Puback, Pubcomp, Publish, Pubrec,
    Pubrel, Suback, Subscribe, Subscription, Unsuback, Unsubscribe, Will,
)
from tests.protocol.helpers import as_client, as_server


def h(text: str) -> bytes:
    """Hex with spaces, and 'quoted' ASCII runs, for readable fixtures."""
    out = bytearray()
    for token in text.split():
        if token.startswith("'"):
            out += token.strip("'").encode()
        else:
            out.append(int(token, 16))
    return bytes(out)


CONNECTS = [
    # 3.1.1 (spec 3.1): name "MQTT", level 4, flags clean session, keepalive 60, client id "c1".
    (Connect(4, "c1", True, 60), 4, "10 0E 00 04 'MQTT' 04 02 00 3C 00 02 'c1'"),
    # 3.1: name "MQIsdp", level 3.
    (Connect(3, "c1", True, 60, protocol_name="MQIsdp"), 3,
     "10 10 00 06 'MQIsdp' 03 02 00 3C 00 02 'c1'"),
    # 3.1.1 with will (QoS 1, retained), username and password: flags 0xEE.
    (Connect(4, "c", True, 10, "u", b"p", Will("w", b"m", 1, True)), 4,
     "10 19 00 04 'MQTT' 04 EE 00 0A 00 01 'c' 00 01 'w' 00 01 'm' 00 01 'u' 00 01 'p'"),
    # Bridge bit 0x80 on the level (Mosquitto's try_private), clean session off.
    (Connect(4, "b", False, 60, bridge=True), 4, "10 0D 00 04 'MQTT' 84 00 00 3C 00 01 'b'"),
    # 5.0 with session expiry interval 10 (property 0x11, four bytes).
    (Connect(5, "c1", True, 60, properties={P.SESSION_EXPIRY_INTERVAL: 10}), 5,
     "10 14 00 04 'MQTT' 05 02 00 3C 05 11 00 00 00 0A 00 02 'c1'"),
    # 5.0 with a will whose properties carry a will delay of 5, and a password with no username.
    (Connect(5, "c", True, 0, None, b"pw", Will("w", b"", 0, False, {P.WILL_DELAY_INTERVAL: 5})), 5,
     "10 1D 00 04 'MQTT' 05 46 00 00 00 00 01 'c' 05 18 00 00 00 05 00 01 'w' 00 00 00 02 'pw'"),
]

# (packet, version, bytes) for packets a client sends (decoded in the server role).
FROM_CLIENT = [
    (Publish("a/b", b"hi"), 4, "30 07 00 03 'a/b' 'hi'"),
    (Publish("a/b", b"hi", 1, True, False, 10), 4, "33 09 00 03 'a/b' 00 0A 'hi'"),
    (Publish("a/b", b"hi", 2, False, True, 10), 4, "3C 09 00 03 'a/b' 00 0A 'hi'"),
    (Publish("a/b", b"hi"), 5, "30 08 00 03 'a/b' 00 'hi'"),
    (Publish("a/b", b"hi", properties={P.PAYLOAD_FORMAT_INDICATOR: 1, P.MESSAGE_EXPIRY_INTERVAL: 60}),
     5, "30 0F 00 03 'a/b' 07 01 01 02 00 00 00 3C 'hi'"),
    (Publish("", b"", 0, False, False, None, {P.TOPIC_ALIAS: 1}), 5, "30 06 00 00 03 23 00 01"),
    (Puback(10), 4, "40 02 00 0A"),
    (Puback(10), 5, "40 02 00 0A"),
    (Puback(10, 0x10), 5, "40 03 00 0A 10"),
    (Puback(10, 0x10, {P.REASON_STRING: "x"}), 5, "40 08 00 0A 10 04 1F 00 01 'x'"),
    (Pubrec(10), 4, "50 02 00 0A"),
    (Pubrec(10, 0x80), 5, "50 03 00 0A 80"),
    (Pubrel(10), 4, "62 02 00 0A"),
    (Pubrel(10, 0x92), 5, "62 03 00 0A 92"),
    (Pubcomp(10), 4, "70 02 00 0A"),
    (Pubcomp(10), 5, "70 02 00 0A"),
    (Subscribe(1, [Subscription("a/+", 1)]), 4, "82 08 00 01 00 03 'a/+' 01"),
    (Subscribe(1, [Subscription("a/+", 1), Subscription("#", 0)]), 4,
     "82 0C 00 01 00 03 'a/+' 01 00 01 '#' 00"),
    # 5.0: subscription identifier 5; options no local, retain as published, retain handling 2, QoS 2.
    (Subscribe(1, [Subscription("a/+", 2, True, True, 2)], {P.SUBSCRIPTION_IDENTIFIER: [5]}), 5,
     "82 0B 00 01 02 0B 05 00 03 'a/+' 2E"),
    (Unsubscribe(2, ["a/#"]), 4, "A2 07 00 02 00 03 'a/#'"),
    (Unsubscribe(2, ["a/#"]), 5, "A2 08 00 02 00 00 03 'a/#'"),
    (Pingreq(), 4, "C0 00"),
    (Pingreq(), 5, "C0 00"),
    (Disconnect(), 4, "E0 00"),
    (Disconnect(), 5, "E0 00"),
    (Disconnect(0x04), 5, "E0 01 04"),
    (Disconnect(0, {P.SESSION_EXPIRY_INTERVAL: 0}), 5, "E0 07 00 05 11 00 00 00 00"),
    (Auth(), 5, "F0 00"),
    (Auth(0x18, {P.AUTHENTICATION_METHOD: "m"}), 5, "F0 06 18 04 15 00 01 'm'"),
]

# Packets a server sends (decoded in the client role).
FROM_SERVER = [
    (Connack(True, 0), 4, "20 02 01 00"),
    (Connack(False, 5), 4, "20 02 00 05"),
    (Connack(False, 0), 5, "20 03 00 00 00"),
    (Connack(False, 0, {P.RECEIVE_MAXIMUM: 20}), 5, "20 06 00 00 03 21 00 14"),
    (Connack(False, 0x84), 5, "20 03 00 84 00"),
    (Publish("a/b", b"hi", 1, False, False, 7, {P.SUBSCRIPTION_IDENTIFIER: [1, 300]}), 5,
     "32 0F 00 03 'a/b' 00 07 05 0B 01 0B AC 02 'hi'"),
    (Suback(1, [0, 0x80]), 4, "90 04 00 01 00 80"),
    (Suback(1, [0, 0x80]), 5, "90 05 00 01 00 00 80"),
    (Unsuback(2), 4, "B0 02 00 02"),
    (Unsuback(2, [0]), 5, "B0 04 00 02 00 00"),
    (Unsuback(2, [0x11]), 5, "B0 04 00 02 00 11"),
    (Pingresp(), 4, "D0 00"),
    (Disconnect(0x8B), 5, "E0 01 8B"),
    (Disconnect(0x9C, {P.SERVER_REFERENCE: "s"}), 5, "E0 06 9C 04 1C 00 01 's'"),
]


@pytest.mark.parametrize("packet, version, wire", CONNECTS)
def test_connect_golden(packet, version, wire):
    data = h(wire)
    assert encode(packet, version) == data
    decoder = Decoder()
    assert decoder.feed(data) == [packet]
    assert decoder.error is None
    assert decoder.version == version


@pytest.mark.parametrize("packet, version, wire", FROM_CLIENT)
def test_client_packets_golden(packet, version, wire):
    data = h(wire)
    assert encode(packet, version) == data
    assert as_server(data, version) == ([packet], None)


@pytest.mark.parametrize("packet, version, wire", FROM_SERVER)
def test_server_packets_golden(packet, version, wire):
    data = h(wire)
    assert encode(packet, version) == data
    assert as_client(data, version) == ([packet], None)


def test_remaining_length_varint_boundaries():
    """Spec 1.5.5: 127 -> 7F, 128 -> 80 01, 16383 -> FF 7F, 16384 -> 80 80 01."""
    for size, header in [(127, "7F"), (128, "80 01"), (16383, "FF 7F"), (16384, "80 80 01"),
                         (2097152, "80 80 80 01")]:
        packet = Publish("t", b"x" * (size - 3))
        data = encode(packet, 4)
        assert data.startswith(bytes([0x30]) + h(header) + b"\x00\x01t")
        assert as_server(data, 4) == ([packet], None)
