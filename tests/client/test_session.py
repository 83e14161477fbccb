"""The sans-I/O client session against hand-made server bytes (no sockets, fake time)."""

from __future__ import annotations

from midge.client.session import ClientSession, ProtocolViolation
from midge.protocol.codec import Decoder, encode
from midge.protocol.constants import PacketType, Property
from midge.protocol.packets import (
    Connack, Connect, Pingresp, Puback, Pubcomp, Publish, Pubrec, Pubrel, Suback, Subscription,
)


def sent(session, version=5, now=0.0):
    """Packets the session wants to write, decoded as a server would."""
    decoder = Decoder(role="server")
    data = b"".join(session.data_to_send(now=now))
    if data and data[0] >> 4 != PacketType.CONNECT:  # the server decoder learns the version from CONNECT
        decoder.feed(encode(Connect(protocol_version=version), version))
    packets = decoder.feed(data)
    assert decoder.error is None
    return packets


def connected(version=5, keepalive=60, connack_props=None):
    session = ClientSession(Connect(protocol_version=version, keepalive=keepalive))
    session.start()
    session.receive_data(encode(Connack(properties=connack_props or {}), version), 0.0)
    session.data_to_send(now=0.0)  # the CONNECT
    return session


def test_connect_then_connack():
    lines = []
    session = ClientSession(Connect(protocol_version=5, client_id=""), trace=lines.append)
    session.start()
    (connect,) = sent(session)
    assert connect.type == PacketType.CONNECT
    events = session.receive_data(encode(Connack(properties={Property.ASSIGNED_CLIENT_IDENTIFIER: "auto-1"}), 5), 0.0)
    assert [e.type for e in events] == [PacketType.CONNACK]
    assert session.connected and session.client_id == "auto-1"
    assert lines == ["Client (null) sending CONNECT", "Client auto-1 received CONNACK (0)"]


def test_coalesced_and_split_reads():
    session = connected()
    data = encode(Publish("a", b"1"), 5) + encode(Publish("b", b"2"), 5)
    events = session.receive_data(data[:3], 0.0) + session.receive_data(data[3:], 0.0)
    assert [(e.topic, e.payload) for e in events] == [("a", b"1"), ("b", b"2")]


def test_outgoing_qos1_and_qos2_complete_on_ack():
    session = connected()
    first = session.publish("t", b"x", qos=1)
    second = session.publish("t", b"y", qos=2)
    assert [p.packet_id for p in sent(session)] == [first, second]
    assert session.inflight_count == 2
    assert session.receive_data(encode(Puback(first), 5), 0.0)[0].packet_id == first
    assert session.receive_data(encode(Pubrec(second), 5), 0.0) == []
    (pubrel,) = sent(session)
    assert (pubrel.type, pubrel.packet_id) == (PacketType.PUBREL, second)
    assert session.receive_data(encode(Pubcomp(second), 5), 0.0)[0].type == PacketType.PUBCOMP
    assert session.inflight_count == 0


def test_incoming_qos2_is_delivered_once_at_pubrel():
    session = connected()
    assert session.receive_data(encode(Publish("t", b"x", qos=2, packet_id=7), 5), 0.0) == []
    (pubrec,) = sent(session)
    assert (pubrec.type, pubrec.packet_id) == (PacketType.PUBREC, 7)
    (message,) = session.receive_data(encode(Pubrel(7), 5), 0.0)
    assert message.payload == b"x"
    assert sent(session)[0].type == PacketType.PUBCOMP
    assert session.receive_data(encode(Pubrel(7), 5), 0.0) == []  # a repeated PUBREL delivers nothing


def test_receive_maximum_holds_back_publishes():
    session = connected(connack_props={Property.RECEIVE_MAXIMUM: 1})
    ids = [session.publish("t", b"%d" % n, qos=1) for n in range(3)]
    assert [p.packet_id for p in sent(session)] == ids[:1]
    session.receive_data(encode(Puback(ids[0]), 5), 0.0)
    assert [p.packet_id for p in sent(session)] == ids[1:2]
    assert session.inflight_count == 2
    assert len(set(ids)) == 3


def test_keepalive_ping_and_timeout():
    session = connected(keepalive=10)
    assert session.next_deadline() == 10.0
    assert session.handle_timer(9.0) and sent(session) == []
    assert session.handle_timer(10.0)
    assert [p.type for p in sent(session, now=10.0)] == [PacketType.PINGREQ]
    session.receive_data(encode(Pingresp(), 5), 11.0)
    assert session.next_deadline() == 20.0
    assert session.handle_timer(20.0)
    assert [p.type for p in sent(session, now=20.0)] == [PacketType.PINGREQ]
    assert session.next_deadline() == 30.0
    assert not session.handle_timer(30.0)  # no PINGRESP within a keepalive period


def test_server_keep_alive_overrides():
    session = connected(keepalive=60, connack_props={Property.SERVER_KEEP_ALIVE: 5})
    session.data_to_send(now=1.0)
    session.subscribe([Subscription("a")])
    session.data_to_send(now=2.0)
    assert session.next_deadline() == 7.0


def test_suback_event_and_ids_reused_only_when_free():
    session = connected(version=4)
    packet_id = session.subscribe([Subscription("a", 1)])
    (suback,) = session.receive_data(encode(Suback(packet_id, [1]), 4), 0.0)
    assert suback.reason_codes == [1]


def test_publish_batch_equals_single_publishes():
    batch, single = connected(), connected()
    payloads = [b"", b"x", b"y" * 200]
    batch.publish_batch("top/ic", payloads, retain=True, properties={Property.CONTENT_TYPE: "t"})
    for payload in payloads:
        single.publish("top/ic", payload, 0, True, {Property.CONTENT_TYPE: "t"})
    assert b"".join(batch.data_to_send()) == b"".join(single.data_to_send())


def test_malformed_server_bytes_are_a_violation():
    session = connected()
    events = session.receive_data(b"\x30\xff\xff\xff\xff\x01", 0.0)
    assert isinstance(events[-1], ProtocolViolation)


def test_incoming_topic_aliases_are_resolved():
    session = connected()
    first = Publish("long/topic/name", b"1", properties={Property.TOPIC_ALIAS: 3})
    second = Publish("", b"2", properties={Property.TOPIC_ALIAS: 3})
    events = session.receive_data(encode(first, 5) + encode(second, 5), 0.0)
    assert [(e.topic, e.payload) for e in events] == [("long/topic/name", b"1"), ("long/topic/name", b"2")]
    (violation,) = session.receive_data(encode(Publish("", b"3", properties={Property.TOPIC_ALIAS: 9}), 5), 0.0)
    assert isinstance(violation, ProtocolViolation) and violation.reason_code == 0x94
