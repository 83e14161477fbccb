"""QoS 1 and 2 in both directions, inflight window, queues, resend, limits."""

import pytest

from midge.protocol.constants import Property, ReasonCode
from midge.protocol.packets import Puback, Pubcomp, Publish, Pubrec, Pubrel
from tests.broker.harness import Harness, make_listener

V311_V5 = pytest.mark.parametrize("version", [4, 5])


@V311_V5
def test_qos1_in_and_out(version):
    h = Harness()
    sub = h.connect("sub", version=version)
    sub.subscribe("t", 1)
    pub = h.connect("pub", version=version)
    pub.publish("t", b"m", qos=1, packet_id=9)
    ack = pub.take_one(Puback)
    assert ack.packet_id == 9 and ack.reason_code == 0
    [msg] = sub.publishes()
    assert msg.qos == 1 and msg.packet_id
    sub.send(Puback(msg.packet_id))
    assert sub.client.session.inflight == {}


@V311_V5
def test_qos2_in_delivers_on_pubrel_once(version):
    h = Harness()
    sub = h.connect("sub", version=version)
    sub.subscribe("t", 2)
    pub = h.connect("pub", version=version)
    pub.publish("t", b"m", qos=2, packet_id=3)
    assert pub.take_one(Pubrec).packet_id == 3
    assert sub.take() == []
    pub.publish("t", b"m", qos=2, packet_id=3, dup=True)   # resend before PUBREL
    assert pub.take_one(Pubrec).packet_id == 3
    pub.send(Pubrel(3))
    assert pub.take_one(Pubcomp).packet_id == 3
    [msg] = sub.publishes()
    assert msg.qos == 2
    sub.send(Pubrec(msg.packet_id))
    assert sub.take_one(Pubrel).packet_id == msg.packet_id
    sub.send(Pubcomp(msg.packet_id))
    assert sub.client.session.inflight == {}


def test_pubrel_unknown_v5():
    h = Harness()
    pub = h.connect("pub", version=5)
    pub.send(Pubrel(77))
    assert pub.take_one(Pubcomp).reason_code == ReasonCode.PACKET_IDENTIFIER_NOT_FOUND


def test_v5_no_matching_subscribers():
    h = Harness()
    pub = h.connect("pub", version=5)
    pub.publish("nobody", qos=1)
    assert pub.take_one(Puback).reason_code == ReasonCode.NO_MATCHING_SUBSCRIBERS
    pub.publish("nobody", qos=2, packet_id=2)
    assert pub.take_one(Pubrec).reason_code == ReasonCode.NO_MATCHING_SUBSCRIBERS


def test_v3_no_subscribers_plain_ack():
    h = Harness()
    pub = h.connect("pub")
    pub.publish("nobody", qos=1)
    assert pub.take_one(Puback).reason_code == 0


def test_outgoing_qos_is_min_unless_upgraded():
    h = Harness()
    sub = h.connect("sub")
    sub.subscribe("t", 2)
    h.connect("pub").publish("t", qos=0)
    assert sub.publishes()[0].qos == 0
    h2 = Harness(upgrade_outgoing_qos=True)
    sub2 = h2.connect("sub")
    sub2.subscribe("t", 2)
    h2.connect("pub").publish("t", qos=0)
    assert sub2.publishes()[0].qos == 2


def test_inflight_window_and_queue():
    h = Harness(max_inflight_messages=2)
    sub = h.connect("sub")
    sub.subscribe("t", 1)
    pub = h.connect("pub")
    for i in range(5):
        pub.publish("t", str(i).encode(), qos=1, packet_id=i + 1)
    pub.take()
    first = sub.publishes()
    assert [m.payload for m in first] == [b"0", b"1"]
    assert len(sub.client.session.queue) == 3
    sub.send(Puback(first[0].packet_id))
    assert [m.payload for m in sub.publishes()] == [b"2"]


def test_v5_client_receive_maximum():
    h = Harness()
    sub = h.connect("sub", version=5, properties={Property.RECEIVE_MAXIMUM: 1})
    sub.subscribe("t", 1)
    pub = h.connect("pub", version=5)
    for i in range(3):
        pub.publish("t", qos=1, packet_id=i + 1)
    assert len(sub.publishes()) == 1


def test_max_inflight_bytes():
    h = Harness(max_inflight_bytes=10)
    sub = h.connect("sub")
    sub.subscribe("t", 1)
    pub = h.connect("pub")
    for i in range(3):
        pub.publish("t", b"x" * 8, qos=1, packet_id=i + 1)
    assert len(sub.publishes()) == 2   # the second starts while 8 < 10 bytes are in flight


def test_max_queued_messages_drops():
    h = Harness(max_inflight_messages=1, max_queued_messages=2)
    sub = h.connect("sub")
    sub.subscribe("t", 1)
    pub = h.connect("pub")
    for i in range(6):
        pub.publish("t", qos=1, packet_id=i + 1)
    assert len(sub.publishes()) == 1
    assert len(sub.client.session.queue) == 2
    assert h.broker.stats.publish_dropped == 3


def test_max_queued_bytes_drops():
    h = Harness(max_inflight_messages=1, max_queued_bytes=10)
    sub = h.connect("sub")
    sub.subscribe("t", 1)
    pub = h.connect("pub")
    for i in range(4):
        pub.publish("t", b"y" * 6, qos=1, packet_id=i + 1)
    assert len(sub.client.session.queue) == 1


@V311_V5
def test_offline_queue_and_resend_with_dup(version):
    h = Harness()
    props = {Property.SESSION_EXPIRY_INTERVAL: 300} if version == 5 else {}
    sub = h.connect("sub", version=version, clean_start=False, properties=props)
    sub.subscribe("t", 2)
    pub = h.connect("pub")
    pub.publish("t", b"1", qos=1)
    [first] = sub.publishes()
    sub.lose()
    pub.publish("t", b"2", qos=1, packet_id=2)
    pub.publish("t", b"q0", qos=0)           # not queued offline by default
    sub2 = h.connect("sub", version=version, clean_start=False, properties=props)
    assert sub2.connack.session_present
    msgs = sub2.publishes()
    assert [m.payload for m in msgs] == [b"1", b"2"]
    assert msgs[0].dup is True and msgs[0].packet_id == first.packet_id
    assert msgs[1].dup is False


def test_qos2_outgoing_pubrel_resent_on_resume():
    h = Harness()
    sub = h.connect("sub", clean_start=False)
    sub.subscribe("t", 2)
    pub = h.connect("pub")
    pub.publish("t", qos=2, packet_id=4)
    pub.send(Pubrel(4))
    [msg] = sub.publishes()
    sub.send(Pubrec(msg.packet_id))
    assert sub.take_one(Pubrel)
    sub.lose()
    again = h.connect("sub", clean_start=False)
    rel = again.take_one(Pubrel)
    assert rel.packet_id == msg.packet_id


def test_queue_qos0_messages_for_offline_sessions():
    h = Harness(queue_qos0_messages=True)
    sub = h.connect("sub", clean_start=False)
    sub.subscribe("t", 0)
    sub.lose()
    h.connect("pub").publish("t", b"zero")
    again = h.connect("sub", clean_start=False)
    assert [m.payload for m in again.publishes()] == [b"zero"]


def test_receive_maximum_exceeded_v5():
    h = Harness(max_inflight_messages=2)
    pub = h.connect("pub", version=5)
    for i in range(3):
        pub.publish("t", qos=2, packet_id=i + 1)
    packets = pub.take()
    assert packets[-1].reason_code == ReasonCode.RECEIVE_MAXIMUM_EXCEEDED
    assert pub.closed


@pytest.mark.parametrize("version", [4, 5])
def test_publish_above_max_qos_disconnects(version):
    h = Harness(listener=make_listener(max_qos=1))
    pub = h.connect("pub", version=version)
    pub.publish("t", qos=2)
    if version == 5:
        assert pub.take()[-1].reason_code == ReasonCode.QOS_NOT_SUPPORTED
    assert pub.closed


@V311_V5
def test_message_size_limit(version):
    h = Harness(message_size_limit=5)
    sub = h.connect("sub")
    sub.subscribe("t", 1)
    pub = h.connect("pub", version=version)
    pub.publish("t", b"123456", qos=1)
    ack = pub.take_one(Puback)
    assert ack.reason_code == (ReasonCode.IMPLEMENTATION_SPECIFIC_ERROR if version == 5 else 0)
    pub.publish("t", b"123456", qos=2, packet_id=2)
    pub.take_one(Pubrec)
    if version == 4:
        pub.send(Pubrel(2))
        assert pub.take_one(Pubcomp).reason_code == 0
    assert sub.take() == []
    assert not pub.closed


@V311_V5
def test_acl_denied_publish(version):
    h = Harness(users={"u": b"p"}, acl="user u\ntopic read #\n")
    sub = h.connect("sub", username="u", password=b"p")
    sub.subscribe("t", 1)
    pub = h.connect("pub", version=version, username="u", password=b"p")
    pub.publish("t", qos=0)
    pub.publish("t", qos=1)
    ack = pub.take_one(Puback)
    assert ack.reason_code == (ReasonCode.NOT_AUTHORIZED if version == 5 else 0)
    assert sub.take() == []


def test_sys_publish_refused():
    h = Harness()
    sub = h.connect("sub")
    sub.subscribe("$SYS/#")
    pub = h.connect("pub", version=5)
    pub.publish("$SYS/broker/x", qos=1)
    assert pub.take_one(Puback).reason_code == ReasonCode.NOT_AUTHORIZED
    assert sub.take() == []


def test_v5_maximum_packet_size_of_client_drops_large():
    h = Harness()
    sub = h.connect("sub", version=5, properties={Property.MAXIMUM_PACKET_SIZE: 50})
    sub.subscribe("t", 1)
    pub = h.connect("pub", version=5)
    pub.publish("t", b"x" * 100, qos=1)
    pub.publish("t", b"small", qos=1, packet_id=2)
    assert [m.payload for m in sub.publishes()] == [b"small"]


def test_message_expiry_drops_queued_and_decrements():
    h = Harness()
    props = {Property.SESSION_EXPIRY_INTERVAL: 1000}
    sub = h.connect("sub", version=5, clean_start=False, properties=props, keepalive=0)
    sub.subscribe("t", 1)
    sub.lose()
    pub = h.connect("pub", version=5, keepalive=0)
    pub.publish("t", b"short", qos=1, properties={Property.MESSAGE_EXPIRY_INTERVAL: 5})
    pub.publish("t", b"long", qos=1, packet_id=2, properties={Property.MESSAGE_EXPIRY_INTERVAL: 50})
    h.advance(10)
    again = h.connect("sub", version=5, clean_start=False, properties=props)
    [msg] = again.publishes()
    assert msg.payload == b"long"
    assert msg.properties[Property.MESSAGE_EXPIRY_INTERVAL] == 40


def test_v5_properties_passed_through():
    h = Harness()
    sub = h.connect("sub", version=5)
    sub.subscribe("t")
    props = {Property.RESPONSE_TOPIC: "reply", Property.CORRELATION_DATA: b"\x01",
             Property.USER_PROPERTY: [("a", "1"), ("a", "2")], Property.CONTENT_TYPE: "json",
             Property.PAYLOAD_FORMAT_INDICATOR: 1}
    h.connect("pub", version=5).publish("t", properties=props)
    [msg] = sub.publishes()
    assert msg.properties == props


def test_topic_alias_incoming():
    h = Harness()
    sub = h.connect("sub", version=5)
    sub.subscribe("long/topic")
    pub = h.connect("pub", version=5)
    pub.publish("long/topic", b"1", properties={Property.TOPIC_ALIAS: 3})
    pub.publish("", b"2", properties={Property.TOPIC_ALIAS: 3})
    msgs = sub.publishes()
    assert [(m.topic, m.payload) for m in msgs] == [("long/topic", b"1"), ("long/topic", b"2")]
    assert all(Property.TOPIC_ALIAS not in m.properties for m in msgs)


def test_topic_alias_above_maximum():
    h = Harness(listener=make_listener(max_topic_alias=2))
    pub = h.connect("pub", version=5)
    pub.publish("t", properties={Property.TOPIC_ALIAS: 3})
    assert pub.take()[-1].reason_code == ReasonCode.TOPIC_ALIAS_INVALID
    assert pub.closed


def test_paused_client_qos0_dropped_when_queue_full():
    h = Harness(max_queued_messages=2)
    slow = h.connect("slow")
    slow.subscribe("t")
    fast = h.connect("fast")
    fast.subscribe("t")
    slow.client.write_paused = True
    pub = h.connect("pub")
    for i in range(5):
        pub.publish("t")
    assert len(fast.publishes()) == 5
    assert len(slow.publishes()) == 2
    assert h.broker.stats.publish_dropped == 3
    slow.client.write_paused = False
    h.broker.writing_resumed(slow.client, h.now)
    pub.publish("t")
    assert len(slow.publishes()) == 1


def test_paused_client_qos1_waits_in_queue():
    h = Harness()
    slow = h.connect("slow")
    slow.subscribe("t", 1)
    slow.client.write_paused = True
    pub = h.connect("pub")
    pub.publish("t", qos=1)
    assert slow.take() == []
    slow.client.write_paused = False
    h.broker.writing_resumed(slow.client, h.now)
    h.drain()
    assert len(slow.publishes()) == 1


def test_packet_ids_skip_inflight():
    h = Harness(max_inflight_messages=0)
    sub = h.connect("sub")
    sub.subscribe("t", 1)
    pub = h.connect("pub")
    for i in range(3):
        pub.publish("t", qos=1, packet_id=i + 1)
    ids = [m.packet_id for m in sub.publishes()]
    assert len(set(ids)) == 3 and 0 not in ids


def test_response_topic_with_wildcard_is_protocol_error():
    h = Harness()
    pub = h.connect("pub", version=5)
    pub.publish("t", properties={Property.RESPONSE_TOPIC: "reply/#"})
    assert pub.take()[-1].reason_code == ReasonCode.PROTOCOL_ERROR
    assert pub.closed


def test_outgoing_topic_aliases():
    h = Harness()
    sub = h.connect("sub", version=5, properties={Property.TOPIC_ALIAS_MAXIMUM: 1})
    sub.subscribe("#", 1)
    pub = h.connect("pub", version=5)
    pub.publish("long/topic/one", b"1")
    pub.publish("long/topic/one", b"2", qos=1)
    pub.publish("other", b"3")          # no alias left: full topic, no alias
    msgs = sub.publishes()
    assert msgs[0].topic == "long/topic/one" and msgs[0].properties[Property.TOPIC_ALIAS] == 1
    assert msgs[1].topic == "" and msgs[1].properties[Property.TOPIC_ALIAS] == 1
    assert msgs[2].topic == "other" and Property.TOPIC_ALIAS not in msgs[2].properties


def test_no_outgoing_aliases_without_client_maximum():
    h = Harness()
    sub = h.connect("sub", version=5)
    sub.subscribe("#")
    pub = h.connect("pub", version=5)
    pub.publish("t")
    pub.publish("t")
    assert all(Property.TOPIC_ALIAS not in m.properties and m.topic == "t" for m in sub.publishes())


def test_alias_not_kept_for_a_dropped_packet():
    h = Harness()
    sub = h.connect("sub", version=5, properties={Property.TOPIC_ALIAS_MAXIMUM: 2,
                                                    Property.MAXIMUM_PACKET_SIZE: 40})
    sub.subscribe("#")
    pub = h.connect("pub", version=5)
    pub.publish("t", b"x" * 60)          # too large: dropped, must not set the alias
    pub.publish("t", b"small")
    [msg] = sub.publishes()
    assert msg.topic == "t" and msg.properties[Property.TOPIC_ALIAS] == 1
