"""12-prop: MQTT 5.0 properties: topic aliases, pass-through properties, maximum packet size, property errors."""

import pytest

from tests.conformance import packets as p
from tests.conformance.wire import connect, expect_protocol_close, expect_publish, subscribe


def _pair(broker, cid, topic, sub_props=(), qos=0):
    sub = connect(broker.port, cid("s"), 5, properties=sub_props)
    subscribe(sub, topic, qos)
    pub = connect(broker.port, cid("p"), 5)
    return sub, pub


# MQTT-3.3.2-12 / 3.3.2.3.4: a topic alias set by the client is resolved; subscribers get the full topic and no alias.
def test_topic_alias_resolved(broker, cid):
    sub, pub = _pair(broker, cid, "pr/alias")
    pub.send(p.gen_publish("pr/alias", 0, b"1", proto_ver=5, properties=[(p.TOPIC_ALIAS, 1)]))
    pub.send(p.gen_publish("", 0, b"2", proto_ver=5, properties=[(p.TOPIC_ALIAS, 1)]))
    expect_publish(sub, "pr/alias", b"1")
    expect_publish(sub, "pr/alias", b"2")


# MQTT 5.0 3.3.2.3.4: a PUBLISH with a topic and a known alias re-maps that alias.
def test_topic_alias_remapped(broker, cid):
    sub, pub = _pair(broker, cid, "pr/remap/+")
    pub.send(p.gen_publish("pr/remap/a", 0, b"a", proto_ver=5, properties=[(p.TOPIC_ALIAS, 2)]))
    pub.send(p.gen_publish("pr/remap/b", 0, b"b", proto_ver=5, properties=[(p.TOPIC_ALIAS, 2)]))
    pub.send(p.gen_publish("", 0, b"b2", proto_ver=5, properties=[(p.TOPIC_ALIAS, 2)]))
    expect_publish(sub, "pr/remap/a", b"a")
    expect_publish(sub, "pr/remap/b", b"b")
    expect_publish(sub, "pr/remap/b", b"b2")


# MQTT-3.3.2-8: topic alias 0 is not permitted.
def test_topic_alias_zero(broker, cid):
    conn = connect(broker.port, cid(), 5)
    conn.send(p.gen_publish("pr/a0", 0, b"x", proto_ver=5, properties=[(p.TOPIC_ALIAS, 0)]))
    expect_protocol_close(conn, codes=(0x81, 0x82, 0x94))


# MQTT-3.3.2-9 / 3.2.2.3.8: an alias above the server's Topic Alias Maximum (10): DISCONNECT 0x94.
def test_topic_alias_above_maximum(broker, cid):
    conn = connect(broker.port, cid(), 5)
    assert dict(conn.connack["props"])[p.TOPIC_ALIAS_MAXIMUM] == 10
    conn.send(p.gen_publish("pr/a11", 0, b"x", proto_ver=5, properties=[(p.TOPIC_ALIAS, 11)]))
    conn.expect_disconnect(0x94)


# MQTT 5.0 3.3.4: an empty topic with an alias never set is a protocol error.
def test_topic_alias_unknown(broker, cid):
    conn = connect(broker.port, cid(), 5)
    conn.send(p.gen_publish("", 0, b"x", proto_ver=5, properties=[(p.TOPIC_ALIAS, 3)]))
    expect_protocol_close(conn, codes=(0x82, 0x94))


# MQTT 5.0 3.3.2.1: an empty topic without a topic alias is a protocol error.
def test_empty_topic_without_alias(broker, cid):
    conn = connect(broker.port, cid(), 5)
    conn.send(p.gen_publish("", 0, b"x", proto_ver=5))
    expect_protocol_close(conn, codes=(0x82,))


# MQTT-3.3.2-17/18: user properties are forwarded unaltered and in order, repeated names included.
def test_user_properties_forwarded_in_order(broker, cid):
    sub, pub = _pair(broker, cid, "pr/user")
    users = [(p.USER_PROPERTY, ("z", "1")), (p.USER_PROPERTY, ("a", "2")), (p.USER_PROPERTY, ("z", "3"))]
    pub.send(p.gen_publish("pr/user", 0, b"u", proto_ver=5, properties=users))
    got = sub.receive(ordered=True)
    assert got["props"] == users, got


# MQTT-3.3.2-4/15/16/20: payload format indicator, response topic, correlation data and content type are forwarded unaltered.
def test_request_response_properties_forwarded(broker, cid):
    sub, pub = _pair(broker, cid, "pr/rr")
    props = [(p.PAYLOAD_FORMAT_INDICATOR, 1), (p.RESPONSE_TOPIC, "pr/rr/reply"),
             (p.CORRELATION_DATA, b"\x00\xffid"), (p.CONTENT_TYPE, "application/json")]
    pub.send(p.gen_publish("pr/rr", 0, b"{}", proto_ver=5, properties=props))
    expect_publish(sub, "pr/rr", b"{}", properties=props)


# MQTT-3.3.2-6: the message expiry sent on is the received value minus the time held (here ~0).
def test_message_expiry_forwarded(broker, cid):
    sub, pub = _pair(broker, cid, "pr/exp")
    pub.send(p.gen_publish("pr/exp", 0, b"e", proto_ver=5, properties=[(p.MESSAGE_EXPIRY_INTERVAL, 30)]))
    got = sub.receive()
    assert got["payload"] == b"e" and 29 <= dict(got["props"])[p.MESSAGE_EXPIRY_INTERVAL] <= 30, got


# MQTT-3.3.4-... / 4.1: no message expiry in, none out.
def test_no_message_expiry_not_added(broker, cid):
    sub, pub = _pair(broker, cid, "pr/noexp")
    pub.send(p.gen_publish("pr/noexp", 0, b"n", proto_ver=5))
    expect_publish(sub, "pr/noexp", b"n")


# MQTT-3.1.2-24/25: the server does not send a packet larger than the client's Maximum Packet Size; it drops it.
def test_client_maximum_packet_size(broker, cid):
    sub, pub = _pair(broker, cid, "pr/mps", sub_props=[(p.MAXIMUM_PACKET_SIZE, 40)])
    pub.send(p.gen_publish("pr/mps", 0, b"x" * 100, proto_ver=5))
    pub.send(p.gen_publish("pr/mps", 0, b"small", proto_ver=5))
    expect_publish(sub, "pr/mps", b"small")


# MQTT-3.1.2-29: with Request Problem Information 0, no Reason String on a PUBACK.
def test_request_problem_information_zero(broker, cid):
    conn = connect(broker.port, cid(), 5, properties=[(p.REQUEST_PROBLEM_INFORMATION, 0)])
    conn.send(p.gen_publish("pr/rpi", 1, b"x", mid=1, proto_ver=5))
    got = conn.receive()
    assert got["type"] == "PUBACK" and got["mid"] == 1, got
    assert not [x for x in got["props"] if x[0] in (p.REASON_STRING, p.USER_PROPERTY)], got


# MQTT-3.8.2.1.2 / 3.3.4-3: a new SUBSCRIBE with another identifier replaces the old identifier.
def test_subscription_identifier_replaced(broker, cid):
    sub = connect(broker.port, cid("s"), 5)
    subscribe(sub, "pr/sid", 0, mid=1, properties=[(p.SUBSCRIPTION_IDENTIFIER, 5)])
    subscribe(sub, "pr/sid", 0, mid=2, properties=[(p.SUBSCRIPTION_IDENTIFIER, 268435455)])
    pub = connect(broker.port, cid("p"), 5)
    pub.send(p.gen_publish("pr/sid", 0, b"i", proto_ver=5))
    expect_publish(sub, "pr/sid", b"i", properties=[(p.SUBSCRIPTION_IDENTIFIER, 268435455)])


# MQTT-3.3.4-6: a PUBLISH from a client must not contain a Subscription Identifier: protocol error.
@pytest.mark.mosquitto_bug("2.0.11 accepts a Subscription Identifier in a client's PUBLISH")
def test_publish_with_subscription_identifier(broker, cid):
    conn = connect(broker.port, cid(), 5)
    conn.send(p.gen_publish("pr/sidp", 0, b"x", proto_ver=5, properties=[(p.SUBSCRIPTION_IDENTIFIER, 3)]))
    expect_protocol_close(conn, codes=(0x81, 0x82))


# MQTT-3.3.2-14: a Response Topic must be a topic name without wildcards.
@pytest.mark.mosquitto_bug("2.0.11 forwards a Response Topic containing wildcards")
def test_response_topic_with_wildcard(broker, cid):
    conn = connect(broker.port, cid(), 5)
    conn.send(p.gen_publish("pr/rtw", 0, b"x", proto_ver=5, properties=[(p.RESPONSE_TOPIC, "pr/#")]))
    expect_protocol_close(conn, codes=(0x81, 0x82, 0x90))


# MQTT 5.0 2.2.2.2: a property that PUBLISH may not carry (Session Expiry Interval) is malformed.
def test_publish_with_disallowed_property(broker, cid):
    conn = connect(broker.port, cid(), 5)
    conn.send(p.gen_publish("pr/bad", 0, b"x", proto_ver=5, properties=[(p.SESSION_EXPIRY_INTERVAL, 3)]))
    expect_protocol_close(conn)


# MQTT 5.0 2.2.2.2: an unknown property identifier is malformed.
def test_unknown_property_identifier(broker, cid):
    conn = connect(broker.port, cid(), 5)
    conn.send(p.packet(0x30, p.string("pr/unk") + b"\x02\x7f\x00" + b"x"))
    expect_protocol_close(conn, codes=(0x81,))


# MQTT 5.0 2.2.2.1: a property length running past the packet is malformed.
def test_property_length_past_end(broker, cid):
    conn = connect(broker.port, cid(), 5)
    conn.send(p.packet(0x30, p.string("pr/len") + b"\x09\x01\x00"))
    expect_protocol_close(conn, codes=(0x81,))


# MQTT-1.5.4-1 / 3.3.2.3.9: a Content Type that is not valid UTF-8 is malformed.
def test_content_type_invalid_utf8(broker, cid):
    conn = connect(broker.port, cid(), 5)
    conn.send(p.gen_publish("pr/ct", 0, b"x", proto_ver=5, properties=[(p.CONTENT_TYPE, b"\xff")]))
    expect_protocol_close(conn, codes=(0x81,))


# MQTT 5.0 3.3.2.3.9: Content Type twice is a protocol error.
def test_duplicate_content_type(broker, cid):
    conn = connect(broker.port, cid(), 5)
    conn.send(p.gen_publish("pr/ct2", 0, b"x", proto_ver=5,
                            properties=[(p.CONTENT_TYPE, "a"), (p.CONTENT_TYPE, "b")]))
    expect_protocol_close(conn)


# MQTT-4.12.0-... / 3.15: an AUTH packet when no authentication method was given is a protocol error.
def test_auth_without_method(broker, cid):
    conn = connect(broker.port, cid(), 5)
    conn.send(p.gen_auth(0x18))
    expect_protocol_close(conn, codes=(0x82,))


# MQTT 5.0 3.14.2.1: DISCONNECT with a reason code a client may not send is malformed/protocol error.
def test_disconnect_invalid_reason_code(broker, cid):
    conn = connect(broker.port, cid(), 5)
    conn.send(p.packet(0xE0, b"\x03\x00"))
    expect_protocol_close(conn)


# MQTT-3.3.4-3/4/5: with overlapping subscriptions every copy carries the identifiers of the subscriptions it is for,
# and together the copies carry all of them (one copy with both ids, or one copy each).
def test_subscription_identifiers_overlapping(broker, cid):
    sub = connect(broker.port, cid("s"), 5)
    subscribe(sub, "pr/ov/+", 0, mid=1, properties=[(p.SUBSCRIPTION_IDENTIFIER, 1)])
    subscribe(sub, "pr/ov/#", 0, mid=2, properties=[(p.SUBSCRIPTION_IDENTIFIER, 2)])
    pub = connect(broker.port, cid("p"), 5)
    pub.send(p.gen_publish("pr/ov/a", 0, b"o", proto_ver=5))
    pub.ping()
    sub.send(p.gen_pingreq())
    ids = []
    while (got := sub.receive())["type"] != "PINGRESP":
        assert got["type"] == "PUBLISH" and got["payload"] == b"o", got
        ids += [v for k, v in got["props"] if k == p.SUBSCRIPTION_IDENTIFIER]
    assert sorted(ids) == [1, 2], ids


# MQTT-3.3.2-11/12: the server may use topic aliases up to the client's Topic Alias Maximum; every alias it sends is in range and resolves to the right topic.
def test_server_topic_aliases_within_client_maximum(broker, cid):
    sub = connect(broker.port, cid("s"), 5, properties=[(p.TOPIC_ALIAS_MAXIMUM, 2)])
    subscribe(sub, "pr/ta/+", 0)
    pub = connect(broker.port, cid("p"), 5)
    topics = ["pr/ta/a", "pr/ta/b", "pr/ta/c", "pr/ta/a", "pr/ta/c", "pr/ta/b"]
    for i, topic in enumerate(topics):
        pub.send(p.gen_publish(topic, 0, str(i).encode(), proto_ver=5))
    aliases = {}
    for i, topic in enumerate(topics):
        got = sub.receive()
        alias = dict(got["props"]).get(p.TOPIC_ALIAS)
        if alias is not None:
            assert 1 <= alias <= 2, got
            if got["topic"]:
                aliases[alias] = got["topic"]
            assert alias in aliases, f"alias {alias} used before it was set: {got}"
            got["topic"] = aliases[alias]
        assert (got["topic"], got["payload"]) == (topic.encode(), str(i).encode()), got
