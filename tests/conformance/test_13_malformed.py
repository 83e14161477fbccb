"""13-malformed: malformed and out-of-place packets close the connection, never the broker;
valid packets split or coalesced in any way still work."""

import socket

import pytest

from tests.conformance import packets as p
from tests.conformance.wire import Conn, connect, expect_connect_refused, expect_protocol_close, expect_publish, subscribe

VERSIONS = pytest.mark.parametrize("ver", [4, 5])


def _after_connect(broker, cid, ver, data):
    conn = connect(broker.port, cid(), ver)
    conn.send(data)
    return conn


# MQTT 1.5.5 / 2.2.3: a remaining length longer than 4 bytes is malformed (before CONNECT).
def test_connect_remaining_length_5_bytes(broker):
    conn = Conn(broker.port)
    conn.send(b"\x10\xff\xff\xff\xff\x01")
    conn.expect_closed(probe=True)


# MQTT 1.5.5 / 2.2.3: a remaining length longer than 4 bytes is malformed (after CONNECT).
@VERSIONS
def test_remaining_length_5_bytes(broker, cid, ver):
    conn = _after_connect(broker, cid, ver, b"\x30\xff\xff\xff\xff\x01")
    expect_protocol_close(conn, codes=(0x81,))


# MQTT-3.1.4-1: a CONNECT whose client id runs past the packet end is malformed.
def test_connect_truncated_client_id(broker):
    conn = Conn(broker.port)
    conn.send(p.packet(0x10, p.string("MQTT") + b"\x04\x02\x00\x3c\x00\x09ab"))
    conn.expect_closed(probe=True)


# MQTT-3.1.4-1: a CONNECT cut short inside the keepalive field is malformed.
def test_connect_truncated_keepalive(broker):
    conn = Conn(broker.port)
    conn.send(p.packet(0x10, p.string("MQTT") + b"\x04\x02\x00"))
    conn.expect_closed(probe=True)


# MQTT-3.1.4-1: bytes after the last CONNECT field make it malformed.
def test_connect_trailing_bytes(broker):
    valid = p.gen_connect("trail")
    conn = Conn(broker.port)
    conn.send(valid[:1] + bytes([valid[1] + 2]) + valid[2:] + b"\x00\x00")
    conn.expect_closed(probe=True)


# MQTT 5.0 2.2.2.1: a CONNECT property length past the packet end is malformed.
def test_v5_connect_property_length_past_end(broker):
    conn = Conn(broker.port, 5)
    conn.send(p.packet(0x10, p.string("MQTT") + b"\x05\x02\x00\x3c\x09\x11"))
    expect_connect_refused(conn, codes=(0x81,))


# MQTT-1.5.3-1 (3.1.1) / 1.5.4-1: a will topic that is not valid UTF-8 is malformed.
def test_connect_will_topic_invalid_utf8(broker):
    conn = Conn(broker.port)
    conn.send(p.gen_connect("wutf", will_topic=b"w\xff"))
    conn.expect_closed(probe=True)


# MQTT 2.2.3: a PUBLISH whose topic length runs past the packet end is malformed.
@VERSIONS
def test_publish_topic_length_past_end(broker, cid, ver):
    conn = _after_connect(broker, cid, ver, p.packet(0x30, b"\x00\x09ab"))
    expect_protocol_close(conn, codes=(0x81,))


# MQTT 3.3.2.2: a QoS 1 PUBLISH without room for the packet id is malformed.
def test_publish_qos1_missing_packet_id(broker, cid):
    conn = _after_connect(broker, cid, 4, p.packet(0x32, b"\x00\x01a"))
    conn.expect_closed(probe=True)


# MQTT 3.8.3: a SUBSCRIBE filter without its options byte is malformed.
def test_subscribe_missing_options_byte(broker, cid):
    conn = _after_connect(broker, cid, 4, p.packet(0x82, b"\x00\x01" + p.string("m/a")))
    conn.expect_closed(probe=True)


# MQTT-1.5.3-2 (3.1.1) / 1.5.4-2: U+0000 in a topic name is malformed.
@VERSIONS
def test_publish_topic_with_nul(broker, cid, ver):
    conn = _after_connect(broker, cid, ver, p.gen_publish("m/a\x00b", 0, b"x", proto_ver=ver))
    expect_protocol_close(conn, codes=(0x81,))


# MQTT-1.5.3-1 (3.1.1) / 1.5.4-1: ill-formed UTF-8 in a topic name is malformed (invalid byte, overlong form, surrogate).
@pytest.mark.parametrize("raw", [b"m/\xff", b"m/\xc0\xaf", b"m/\xed\xa0\x80"], ids=["ff", "overlong", "surrogate"])
@VERSIONS
def test_publish_topic_invalid_utf8(broker, cid, ver, raw):
    conn = _after_connect(broker, cid, ver, p.gen_publish(raw, 0, b"x", proto_ver=ver))
    expect_protocol_close(conn, codes=(0x81,))


# MQTT-1.5.3-1/2: SUBSCRIBE and UNSUBSCRIBE filters follow the same UTF-8 rules.
@pytest.mark.parametrize("data", [p.gen_subscribe(1, b"m/\xff", 0), p.gen_subscribe(1, "m/\x00", 0),
                                  p.gen_unsubscribe(1, b"m/\xff")], ids=["sub-ff", "sub-nul", "unsub-ff"])
def test_filter_invalid_utf8(broker, cid, data):
    conn = _after_connect(broker, cid, 4, data)
    conn.expect_closed(probe=True)


# MQTT-2.3.1-1: UNSUBSCRIBE needs a non-zero packet identifier.
def test_unsubscribe_packet_id_zero(broker, cid):
    conn = _after_connect(broker, cid, 4, p.gen_unsubscribe(0, "m/a"))
    conn.expect_closed(probe=True)


# MQTT-2.2.2-2 (3.1.1): PINGREQ flags must be 0; invalid flags close the connection.
@pytest.mark.mosquitto_bug("2.0.11 answers a PINGREQ with reserved flags set")
def test_pingreq_with_flags(broker, cid):
    conn = _after_connect(broker, cid, 4, b"\xc1\x00")
    conn.expect_closed(probe=True)


# MQTT 3.12.1: PINGREQ has remaining length 0; anything else is malformed.
@pytest.mark.mosquitto_bug("2.0.11 answers a PINGREQ with a non-zero remaining length")
def test_pingreq_with_body(broker, cid):
    conn = _after_connect(broker, cid, 4, b"\xc0\x01\x00")
    conn.expect_closed(probe=True)


# MQTT-2.2.2-2 (3.1.1): PUBACK flags must be 0; invalid flags close the connection.
@pytest.mark.mosquitto_bug("2.0.11 ignores reserved flags on PUBACK")
def test_puback_with_flags(broker, cid):
    conn = _after_connect(broker, cid, 4, b"\x41\x02\x00\x01")
    conn.expect_closed(probe=True)


# MQTT 3.4.1 (3.1.1): a PUBACK has remaining length 2; a longer one is malformed.
@pytest.mark.mosquitto_bug("2.0.11 accepts a 3.1.1 PUBACK with extra bytes")
def test_v311_puback_too_long(broker, cid):
    conn = _after_connect(broker, cid, 4, b"\x40\x03\x00\x01\x00")
    conn.expect_closed(probe=True)


# MQTT 3.4: a PUBACK shorter than a packet id is malformed.
def test_puback_too_short(broker, cid):
    conn = _after_connect(broker, cid, 4, b"\x40\x01\x00")
    conn.expect_closed(probe=True)


# MQTT-2.2.2-2 / 3.14.1: DISCONNECT flags must be 0; such a packet is malformed, so the will is published.
def test_disconnect_with_flags_publishes_will(broker, cid):
    watcher = connect(broker.port, cid("w"))
    subscribe(watcher, "m/will", 0)
    conn = connect(broker.port, cid(), 4, will_topic="m/will", will_payload=b"w")
    conn.send(b"\xe1\x00")
    conn.expect_closed(probe=True)
    expect_publish(watcher, "m/will", b"w")


# MQTT 3.14.1 (3.1.1): a DISCONNECT has remaining length 0.
def test_v311_disconnect_with_body(broker, cid):
    conn = _after_connect(broker, cid, 4, b"\xe0\x01\x00")
    conn.expect_closed(probe=True)


# MQTT 2.2.1: packet type 0 is reserved; type 15 (AUTH) does not exist in 3.1.1.
@pytest.mark.parametrize("data", [b"\x00\x00", b"\xf0\x00"], ids=["type0", "type15"])
def test_reserved_packet_type(broker, cid, data):
    conn = _after_connect(broker, cid, 4, data)
    conn.expect_closed(probe=True)


# MQTT 2.2.1 / 4.8 (3.1.1): a client sending a server-only packet (CONNACK) is a protocol violation.
def test_client_sends_connack(broker, cid):
    conn = _after_connect(broker, cid, 4, p.gen_connack(0))
    conn.expect_closed(probe=True)


# MQTT 2.2.1 / 4.8 (3.1.1): SUBACK is server-to-client only.
@pytest.mark.mosquitto_bug("2.0.11 ignores a SUBACK sent by a client (it treats it like a bridge's)")
def test_client_sends_suback(broker, cid):
    conn = _after_connect(broker, cid, 4, b"\x90\x03\x00\x01\x00")
    conn.expect_closed(probe=True)


# MQTT 2.2.1 / 4.8 (3.1.1): PINGRESP is server-to-client only.
@pytest.mark.mosquitto_bug("2.0.11 ignores a PINGRESP sent by a client")
def test_client_sends_pingresp(broker, cid):
    conn = _after_connect(broker, cid, 4, b"\xd0\x00")
    conn.expect_closed(probe=True)


# MQTT 5.0 2.2.2: a property not allowed in UNSUBSCRIBE (Subscription Identifier) is malformed.
def test_v5_unsubscribe_disallowed_property(broker, cid):
    conn = _after_connect(broker, cid, 5, p.gen_unsubscribe(1, "m/a", 5, [(p.SUBSCRIPTION_IDENTIFIER, 1)]))
    expect_protocol_close(conn)


# MQTT 5.0 3.8.2.1.3: user properties are allowed in SUBSCRIBE.
def test_v5_subscribe_user_property_allowed(broker, cid):
    conn = connect(broker.port, cid(), 5)
    subscribe(conn, "m/up", 0, properties=[(p.USER_PROPERTY, ("a", "b"))])


# MQTT 4.2 / 2.1: a packet split into single bytes is reassembled (CONNECT, SUBSCRIBE, PUBLISH).
def test_packets_split_byte_by_byte(broker, cid):
    conn = Conn(broker.port)
    conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    for data in (p.gen_connect(cid()), p.gen_subscribe(1, "m/split", 1), p.gen_publish("m/split", 1, b"x" * 200, mid=2)):
        for i in range(len(data)):
            conn.send(data[i:i + 1])
    conn.expect(p.gen_connack(0))
    conn.expect(p.gen_suback(1, [1]))
    got = [conn.receive() for _ in range(2)]
    kinds = sorted(g["type"] for g in got)
    assert kinds == ["PUBACK", "PUBLISH"], got


# MQTT 4.2: several packets in one TCP write are all handled, in order.
def test_packets_coalesced(broker, cid):
    conn = Conn(broker.port)
    conn.send(p.gen_connect(cid()) + p.gen_subscribe(1, "m/co", 0) + b"".join(
        p.gen_publish("m/co", 0, str(i).encode()) for i in range(5)) + p.gen_pingreq())
    conn.expect(p.gen_connack(0))
    conn.expect(p.gen_suback(1, [0]))
    for i in range(5):
        expect_publish(conn, "m/co", str(i).encode())
    conn.expect(p.gen_pingresp())


# MQTT 2.2.3: a payload needing a 3-byte remaining length (and one needing 4 bytes is allowed) is delivered intact.
@pytest.mark.parametrize("size", [20_000, 2_100_000])
def test_large_payload(broker, cid, size):
    payload = bytes(range(256)) * (size // 256)
    sub = connect(broker.port, cid("s"))
    subscribe(sub, "m/big", 0)
    pub = connect(broker.port, cid("p"))
    pub.send(p.gen_publish("m/big", 0, payload))
    expect_publish(sub, "m/big", payload, timeout=15)


# Robustness: a client that declares a 256 MB packet and vanishes does not disturb the broker or others.
def test_abandoned_huge_packet(broker, cid):
    bystander = connect(broker.port, cid("b"))
    conn = connect(broker.port, cid())
    conn.send(b"\x30\xff\xff\xff\x7f\x00\x01a")
    conn.close()
    bystander.ping()
    connect(broker.port, cid("n")).ping()


# Robustness: random garbage instead of CONNECT is refused and the broker carries on.
def test_garbage_then_valid_client(broker, cid):
    conn = Conn(broker.port)
    conn.send(bytes(range(256)))
    conn.expect_closed(probe=True)
    connect(broker.port, cid()).ping()
