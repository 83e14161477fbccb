"""02-subpub: SUBSCRIBE / SUBACK, UNSUBSCRIBE / UNSUBACK, topic matching, delivery QoS."""

import pytest

from tests.conformance import packets as p
from tests.conformance.wire import connect, expect_protocol_close, expect_publish, subscribe

VERSIONS = pytest.mark.parametrize("ver", [4, 5])


# MQTT-3.8.4-1 / 3.3.4: subscribe QoS 0, a QoS 0 publish is delivered unchanged.
@pytest.mark.parametrize("ver", [3, 4, 5])
def test_subscribe_qos0_delivery(broker, cid, ver):
    sub = connect(broker.port, cid("s"), ver)
    subscribe(sub, "sp/q0", 0)
    pub = connect(broker.port, cid("p"), ver)
    pub.send(p.gen_publish("sp/q0", 0, b"hello", proto_ver=ver))
    expect_publish(sub, "sp/q0", b"hello")


# MQTT-3.9.3-1: SUBACK return codes are in the order of the topic filters, granted QoS as asked.
@VERSIONS
def test_subscribe_several_filters_one_suback(broker, cid, ver):
    conn = connect(broker.port, cid(), ver)
    conn.send(p.gen_subscribe(3, [("m/a", 0), ("m/b", 1), ("m/c", 2)], proto_ver=ver))
    conn.expect(p.gen_suback(3, [0, 1, 2], ver))


# MQTT-3.3.4-... / 4.3: delivery QoS is the minimum of publish QoS and granted QoS.
@pytest.mark.parametrize("sub_qos,pub_qos", [(0, 1), (0, 2), (1, 2), (2, 1), (1, 0)])
def test_delivery_qos_is_minimum(broker, cid, sub_qos, pub_qos):
    topic = f"sp/min/{sub_qos}{pub_qos}"
    sub = connect(broker.port, cid("s"), 4)
    subscribe(sub, topic, sub_qos)
    pub = connect(broker.port, cid("p"), 4)
    pub.send(p.gen_publish(topic, pub_qos, b"m", mid=9))
    if pub_qos == 2:  # the server may hold a QoS 2 message until PUBREL (4.3.3 method B)
        pub.expect(p.gen_pubrec(9))
        pub.send(p.gen_pubrel(9))
        pub.expect(p.gen_pubcomp(9))
    expect_publish(sub, topic, b"m", qos=min(sub_qos, pub_qos))


# MQTT-3.8.4-3: a repeated SUBSCRIBE to the same filter replaces the subscription (new QoS, one delivery).
@VERSIONS
def test_resubscribe_replaces_qos(broker, cid, ver):
    sub = connect(broker.port, cid("s"), ver)
    subscribe(sub, "sp/re", 2, mid=1)
    subscribe(sub, "sp/re", 0, mid=2)
    pub = connect(broker.port, cid("p"), ver)
    pub.send(p.gen_publish("sp/re", 1, b"x", mid=1, proto_ver=ver))
    expect_publish(sub, "sp/re", b"x", qos=0)
    sub.ping()  # exactly one copy: the next packet is the PINGRESP


# MQTT-4.7.1-2: "+" matches exactly one level.
def test_single_level_wildcard(broker, cid):
    sub = connect(broker.port, cid("s"))
    subscribe(sub, "sp/+/c")
    pub = connect(broker.port, cid("p"))
    for topic in ("sp/b/c/d", "sp/c", "sp/b/c"):
        pub.send(p.gen_publish(topic, 0, topic.encode()))
    expect_publish(sub, "sp/b/c", b"sp/b/c")


# MQTT-4.7.1-2: "#" also matches the parent level ("sport/#" matches "sport").
def test_multi_level_wildcard_matches_parent(broker, cid):
    sub = connect(broker.port, cid("s"))
    subscribe(sub, "spml/#")
    pub = connect(broker.port, cid("p"))
    pub.send(p.gen_publish("spml", 0, b"1"))
    pub.send(p.gen_publish("spml/a/b", 0, b"2"))
    expect_publish(sub, "spml", b"1")
    expect_publish(sub, "spml/a/b", b"2")


# MQTT-4.7.1-3: "+" matches an empty level ("a/+/c" matches "a//c").
def test_single_level_wildcard_matches_empty_level(broker, cid):
    sub = connect(broker.port, cid("s"))
    subscribe(sub, "spe/+/c")
    pub = connect(broker.port, cid("p"))
    pub.send(p.gen_publish("spe//c", 0, b"e"))
    expect_publish(sub, "spe//c", b"e")


# MQTT-4.7.2-1: "#" and "+/..." do not match topics starting with "$".
def test_wildcards_do_not_match_dollar_topics(broker, cid):
    sub = connect(broker.port, cid("s"))
    subscribe(sub, [("#", 0), ("+/dl", 0)], mid=4)
    pub = connect(broker.port, cid("p"))
    pub.send(p.gen_publish("$dl/dl", 0, b"no"))
    pub.send(p.gen_publish("$x/dl", 0, b"no"))
    pub.send(p.gen_publish("plain/dl", 0, b"yes"))
    expect_publish(sub, "plain/dl", b"yes")


# MQTT 4.7.2: a filter starting with "$" matches such topics when written out.
def test_explicit_dollar_filter_matches(broker, cid):
    sub = connect(broker.port, cid("s"))
    subscribe(sub, "$dlx/+")
    pub = connect(broker.port, cid("p"))
    pub.send(p.gen_publish("$dlx/a", 0, b"y"))
    expect_publish(sub, "$dlx/a", b"y")


# MQTT-4.7.3-4: topic matching is case sensitive and does not normalise.
def test_topics_are_case_sensitive(broker, cid):
    sub = connect(broker.port, cid("s"))
    subscribe(sub, "sp/Case")
    pub = connect(broker.port, cid("p"))
    pub.send(p.gen_publish("sp/case", 0, b"no"))
    pub.send(p.gen_publish("sp/Case", 0, b"yes"))
    expect_publish(sub, "sp/Case", b"yes")


# MQTT-3.10.4-1/2/4: after UNSUBSCRIBE + UNSUBACK, nothing more is delivered.
@VERSIONS
def test_unsubscribe_stops_delivery(broker, cid, ver):
    sub = connect(broker.port, cid("s"), ver)
    subscribe(sub, "sp/un", 0)
    sub.send(p.gen_unsubscribe(5, "sp/un", ver))
    sub.expect(p.gen_unsuback(5, [0], ver))
    pub = connect(broker.port, cid("p"), ver)
    pub.send(p.gen_publish("sp/un", 0, b"gone", proto_ver=ver))
    pub.ping()
    sub.expect_nothing()


# MQTT-3.10.4-5: UNSUBACK is sent even when nothing matched (3.1.1: no payload).
def test_unsubscribe_unknown_v311(broker, cid):
    conn = connect(broker.port, cid(), 4)
    conn.send(p.gen_unsubscribe(7, "sp/never"))
    conn.expect(p.gen_unsuback(7))


# MQTT 5.0 3.11.3: one reason code per filter; 0x11 "no subscription existed".
def test_unsubscribe_v5_reason_codes(broker, cid):
    conn = connect(broker.port, cid(), 5)
    subscribe(conn, "sp/has", 1)
    conn.send(p.gen_unsubscribe(8, ["sp/has", "sp/never"], 5))
    conn.expect(p.gen_unsuback(8, [0x00, 0x11], 5))


# MQTT 3.3.5: a client subscribed to its own topic receives its own message (no No Local in 3.1.1).
def test_publisher_receives_own_message_v311(broker, cid):
    conn = connect(broker.port, cid())
    subscribe(conn, "sp/self")
    conn.send(p.gen_publish("sp/self", 0, b"me"))
    expect_publish(conn, "sp/self", b"me")


# MQTT-3.8.3-3: v5 No Local: the publisher's own message is not delivered back to it.
def test_v5_no_local(broker, cid):
    conn = connect(broker.port, cid(), 5)
    subscribe(conn, "sp/nl", p.sub_options(qos=0, no_local=True), granted=[0])
    conn.send(p.gen_publish("sp/nl", 0, b"me", proto_ver=5))
    other = connect(broker.port, cid("o"), 5)
    other.send(p.gen_publish("sp/nl", 0, b"other", proto_ver=5))
    expect_publish(conn, "sp/nl", b"other")


# MQTT-3.3.4-3: a v5 subscription identifier is returned in each matching PUBLISH.
def test_v5_subscription_identifier_delivered(broker, cid):
    sub = connect(broker.port, cid("s"), 5)
    subscribe(sub, "sp/sid", 0, properties=[(p.SUBSCRIPTION_IDENTIFIER, 42)])
    pub = connect(broker.port, cid("p"), 5)
    pub.send(p.gen_publish("sp/sid", 0, b"i", proto_ver=5))
    expect_publish(sub, "sp/sid", b"i", properties=[(p.SUBSCRIPTION_IDENTIFIER, 42)])


# MQTT 5.0 3.8.2.1.2: a subscription identifier of 0 is a protocol error.
def test_v5_subscription_identifier_zero(broker, cid):
    conn = connect(broker.port, cid(), 5)
    conn.send(p.gen_subscribe(1, "sp/sid0", 0, 5, properties=[(p.SUBSCRIPTION_IDENTIFIER, 0)]))
    expect_protocol_close(conn)


# MQTT-3.8.3-4 (3.1.1 numbering MQTT-3-8.3-4): QoS 3 in SUBSCRIBE is malformed: close.
@VERSIONS
def test_subscribe_qos_3(broker, cid, ver):
    conn = connect(broker.port, cid(), ver)
    conn.send(p.gen_subscribe(1, "sp/q3", 3, ver))
    expect_protocol_close(conn)


# MQTT-3.8.3-5 (3.1.1): the upper six bits of the requested QoS byte are reserved.
def test_subscribe_v311_reserved_option_bits(broker, cid):
    conn = connect(broker.port, cid())
    conn.send(p.gen_subscribe(1, "sp/rb", 0x04))
    conn.expect_closed(probe=True)


# MQTT 5.0 3.8.3.1: subscription option bits 6-7 are reserved; retain handling 3 is a protocol error.
@pytest.mark.parametrize("options", [0xC0, 0x30], ids=["reserved-bits", "retain-handling-3"])
def test_subscribe_v5_bad_options(broker, cid, options):
    conn = connect(broker.port, cid(), 5)
    conn.send(p.gen_subscribe(1, "sp/o", options, 5))
    expect_protocol_close(conn)


# MQTT-3.8.1-1: SUBSCRIBE fixed header flags must be 0010.
def test_subscribe_bad_fixed_header_flags(broker, cid):
    conn = connect(broker.port, cid())
    conn.send(p.packet(0x80, b"\x00\x01" + p.string("sp/f") + b"\x00"))
    conn.expect_closed(probe=True)


# MQTT-3.8.3-3: a SUBSCRIBE with no topic filter is a protocol violation.
@VERSIONS
def test_subscribe_without_filters(broker, cid, ver):
    conn = connect(broker.port, cid(), ver)
    conn.send(p.packet(0x82, b"\x00\x01" + (b"\x00" if ver == 5 else b"")))
    expect_protocol_close(conn)


# MQTT-2.3.1-1: SUBSCRIBE needs a non-zero packet identifier.
def test_subscribe_packet_id_zero(broker, cid):
    conn = connect(broker.port, cid())
    conn.send(p.gen_subscribe(0, "sp/z", 0))
    conn.expect_closed(probe=True)


# MQTT-4.7.1-2/3: "#" not last, or "+"/"#" sharing a level, makes the filter invalid: close
# (v5 may say why first: 0x81 malformed, 0x82 protocol error or 0x8F topic filter invalid).
@pytest.mark.parametrize("filter_", ["sp/#/b", "sp+", "sp/#x"])
@VERSIONS
def test_subscribe_invalid_filter(broker, cid, ver, filter_):
    conn = connect(broker.port, cid(), ver)
    conn.send(p.gen_subscribe(1, filter_, 0, ver))
    expect_protocol_close(conn, codes=(0x81, 0x82, 0x8F))


# MQTT-3.10.3-2: UNSUBSCRIBE with no topic filter is a protocol violation.
def test_unsubscribe_without_filters(broker, cid):
    conn = connect(broker.port, cid())
    conn.send(p.packet(0xA2, b"\x00\x01"))
    conn.expect_closed(probe=True)


# MQTT-3.10.1-1: UNSUBSCRIBE fixed header flags must be 0010.
def test_unsubscribe_bad_fixed_header_flags(broker, cid):
    conn = connect(broker.port, cid())
    conn.send(p.packet(0xA0, b"\x00\x01" + p.string("sp/f")))
    conn.expect_closed(probe=True)


# MQTT-3.3.2-2: a PUBLISH topic must not contain wildcards (v5 may first send 0x81, 0x82 or 0x90 topic name invalid).
@pytest.mark.parametrize("topic", ["sp/+", "sp/#"])
@VERSIONS
def test_publish_to_wildcard_topic(broker, cid, ver, topic):
    conn = connect(broker.port, cid(), ver)
    conn.send(p.gen_publish(topic, 0, b"x", proto_ver=ver))
    expect_protocol_close(conn, codes=(0x81, 0x82, 0x90))


# MQTT-4.7.3-1: a zero-length topic (3.1.1, no alias possible) is invalid.
def test_publish_empty_topic_v311(broker, cid):
    conn = connect(broker.port, cid())
    conn.send(p.gen_publish("", 0, b"x"))
    conn.expect_closed(probe=True)


# MQTT-3.3.1-4: PUBLISH QoS 3 is malformed.
@VERSIONS
def test_publish_qos_3(broker, cid, ver):
    conn = connect(broker.port, cid(), ver)
    props = b"\x00" if ver == 5 else b""
    conn.send(p.packet(0x36, p.string("sp/q3") + b"\x00\x01" + props + b"x"))
    expect_protocol_close(conn)


# MQTT-2.3.1-1: a QoS 1 PUBLISH with packet identifier 0 is a protocol violation.
@VERSIONS
def test_publish_qos1_packet_id_zero(broker, cid, ver):
    conn = connect(broker.port, cid(), ver)
    conn.send(p.gen_publish("sp/pid0", 1, b"x", mid=0, proto_ver=ver))
    expect_protocol_close(conn)


# MQTT-4.6.0-6: messages on one topic at one QoS arrive in the order they were published.
def test_ordering_qos1(broker, cid):
    sub = connect(broker.port, cid("s"))
    subscribe(sub, "sp/order", 1)
    pub = connect(broker.port, cid("p"))
    for i in range(1, 6):
        pub.send(p.gen_publish("sp/order", 1, str(i).encode(), mid=i))
    for i in range(1, 6):
        pub.expect(p.gen_puback(i))
    for i in range(1, 6):
        mid = expect_publish(sub, "sp/order", str(i).encode(), qos=1)
        sub.send(p.gen_puback(mid))


# MQTT 4.8.2: a shared subscription delivers each message to exactly one group member.
# The end of deliveries is a marker on the same path: each member is alone in a group of
# its own on sp/shared-end, published after the four (a PINGRESP is no barrier across
# cluster nodes, where group messages travel through NATS).
@VERSIONS
def test_shared_subscription_one_copy_per_group(broker, cid, ver):
    members = [connect(broker.port, cid(f"m{i}"), ver) for i in range(2)]
    for index, member in enumerate(members):
        subscribe(member, "$share/grp/sp/shared", 0)
        subscribe(member, f"$share/end{index}/sp/shared-end", 0)
    pub = connect(broker.port, cid("p"), ver)
    for i in range(4):
        pub.send(p.gen_publish("sp/shared", 0, str(i).encode(), proto_ver=ver))
    pub.send(p.gen_publish("sp/shared-end", 0, b"end", proto_ver=ver))
    payloads = []
    for member in members:
        while (got := member.receive())["topic"] != b"sp/shared-end":
            assert got["type"] == "PUBLISH" and got["topic"] == b"sp/shared", got
            payloads.append(got["payload"])
    assert sorted(payloads) == [b"0", b"1", b"2", b"3"]


# MQTT-3.8.3-4: No Local on a shared subscription is a protocol error.
@pytest.mark.mosquitto_bug("2.0.11 grants No Local on $share subscriptions")
def test_v5_shared_subscription_no_local(broker, cid):
    conn = connect(broker.port, cid(), 5)
    conn.send(p.gen_subscribe(1, "$share/g/sp/nl", p.sub_options(no_local=True), 5))
    expect_protocol_close(conn, codes=(0x82,))


# MQTT-4.8.2-2: "$share/name" must be followed by "/" and a filter.
@pytest.mark.mosquitto_bug("2.0.11 grants '$share/g' as if it were a plain filter")
def test_v5_shared_subscription_without_filter(broker, cid):
    conn = connect(broker.port, cid(), 5)
    conn.send(p.gen_subscribe(1, "$share/g", 0, 5))
    try:
        got = conn.receive()
    except AssertionError:  # closed without a DISCONNECT is a valid answer
        return
    assert (got["type"] == "SUBACK" and got["codes"] == [0x8F]) or (
        got["type"] == "DISCONNECT" and got["rc"] in (0x81, 0x82, 0x8F)), got


# MQTT-4.8.2-2: a share name containing a wildcard is invalid.
def test_v5_shared_subscription_wildcard_share_name(broker, cid):
    conn = connect(broker.port, cid(), 5)
    conn.send(p.gen_subscribe(1, "$share/g+/sp/x", 0, 5))
    expect_protocol_close(conn, codes=(0x81, 0x82, 0x8F))


# MQTT-3.3.5-1 (3.1.1): overlapping subscriptions: the message is delivered at the maximum matching QoS (Mosquitto: once).
def test_overlapping_subscriptions_v311(broker, cid):
    sub = connect(broker.port, cid("s"))
    subscribe(sub, [("ov/#", 0), ("ov/+", 1)], mid=1)
    pub = connect(broker.port, cid("p"))
    pub.send(p.gen_publish("ov/a", 1, b"x", mid=1))
    mid = expect_publish(sub, "ov/a", b"x", qos=1)
    sub.send(p.gen_puback(mid))
    sub.ping()


# MQTT-3.3.4-2 (v5): overlapping subscriptions: at least one copy at the maximum QoS (more copies are allowed).
# The end of deliveries is a second message on the same topic and QoS (MQTT-4.6.0-6:
# delivered in order), not a PINGRESP, which is no barrier across cluster nodes.
def test_overlapping_subscriptions_v5(broker, cid):
    sub = connect(broker.port, cid("s"), 5)
    subscribe(sub, [("ov5/#", 0), ("ov5/+", 1)], mid=1)
    pub = connect(broker.port, cid("p"), 5)
    pub.send(p.gen_publish("ov5/a", 1, b"x", mid=1, proto_ver=5))
    pub.expect(p.gen_puback(1, 5))
    pub.send(p.gen_publish("ov5/a", 1, b"end", mid=2, proto_ver=5))
    pub.expect(p.gen_puback(2, 5))
    copies = []
    while (got := sub.receive())["payload"] != b"end":
        assert got["type"] == "PUBLISH" and got["topic"] == b"ov5/a" and got["payload"] == b"x", got
        copies.append(got["qos"])
        if got["qos"]:
            sub.send(p.gen_puback(got["mid"], 5))
    assert copies and max(copies) == 1, copies


# MQTT 4.7.1.2 / 4.7.3: a leading "/" makes an empty first level: "+/lv" matches "/lv" but not "lv".
def test_leading_slash_is_a_level(broker, cid):
    sub = connect(broker.port, cid("s"))
    subscribe(sub, "+/lv", 0)
    pub = connect(broker.port, cid("p"))
    pub.send(p.gen_publish("lv", 0, b"no"))
    pub.send(p.gen_publish("/lv", 0, b"yes"))
    expect_publish(sub, "/lv", b"yes")


# MQTT 4.7.1.2: "#" alone matches every topic not starting with "$".
def test_hash_alone_matches_all(broker, cid):
    sub = connect(broker.port, cid("s"))
    subscribe(sub, "#", 0)
    pub = connect(broker.port, cid("p"))
    pub.send(p.gen_publish("hash/any/depth", 0, b"h"))
    got = sub.receive()
    while got["topic"] != b"hash/any/depth":  # other tests' traffic may pass by
        got = sub.receive()
    assert got["payload"] == b"h"


# MQTT 1.5.3 (3.1.1) / 1.5.4: topics are UTF-8: 2-, 3- and 4-byte characters are delivered byte for byte.
@VERSIONS
def test_multibyte_utf8_topic(broker, cid, ver):
    topic = "sp/ü/€/\U0001d11e"
    sub = connect(broker.port, cid("s"), ver)
    subscribe(sub, "sp/ü/+/\U0001d11e", 0)
    pub = connect(broker.port, cid("p"), ver)
    pub.send(p.gen_publish(topic, 0, b"u", proto_ver=ver))
    expect_publish(sub, topic, b"u")


# MQTT 3.3.3: the payload is opaque binary; empty and all-byte-values payloads arrive unchanged.
@pytest.mark.parametrize("payload", [b"", bytes(range(256))], ids=["empty", "binary"])
def test_payload_opaque(broker, cid, payload):
    sub = connect(broker.port, cid("s"))
    subscribe(sub, "sp/bin", 1)
    pub = connect(broker.port, cid("p"))
    pub.send(p.gen_publish("sp/bin", 1, payload, mid=1))
    pub.expect(p.gen_puback(1))
    expect_publish(sub, "sp/bin", payload, qos=1)


# MQTT-3.9.3-1 / 3.8.4-5: a SUBSCRIBE with 100 filters gets one SUBACK with 100 return codes in order.
def test_subscribe_many_filters(broker, cid):
    conn = connect(broker.port, cid())
    entries = [(f"sp/many/{i}", i % 3) for i in range(100)]
    conn.send(p.gen_subscribe(0xFFFF, entries))
    conn.expect(p.gen_suback(0xFFFF, [i % 3 for i in range(100)]))


# MQTT 1.5.3: the longest topic name (65535 bytes) is valid and delivered.
def test_longest_topic(broker, cid):
    topic = "sp/" + "t" * (65535 - 3)
    sub = connect(broker.port, cid("s"))
    subscribe(sub, "sp/+", 0)
    pub = connect(broker.port, cid("p"))
    pub.send(p.gen_publish(topic, 0, b"long"))
    expect_publish(sub, topic, b"long")


# MQTT 5.0 3.10.4: unsubscribing a shared subscription by its full "$share/..." filter succeeds.
def test_v5_unsubscribe_shared(broker, cid):
    conn = connect(broker.port, cid(), 5)
    subscribe(conn, "$share/g/sp/unsh", 1)
    conn.send(p.gen_unsubscribe(2, "$share/g/sp/unsh", 5))
    conn.expect(p.gen_unsuback(2, [0x00], 5))


# Mosquitto refuses PUBLISH to "$share/...": v5 PUBACK 0x87 (not authorized), 3.1.1 a plain PUBACK; nothing delivered.
@VERSIONS
def test_publish_to_share_topic_refused(broker, cid, ver):
    sub = connect(broker.port, cid("s"), ver)
    subscribe(sub, "$share/g/#", 0, mid=1)
    pub = connect(broker.port, cid("p"), ver)
    pub.send(p.gen_publish("$share/g/t", 1, b"x", mid=1, proto_ver=ver))
    pub.expect(p.gen_puback(1, ver, reason_code=0x87 if ver == 5 else 0))
    subscribe(sub, "sp/share-marker", 0, mid=3)  # a delivered message would arrive before this SUBACK


# MQTT-3.10.3-2 / 4.7.1: UNSUBSCRIBE with an invalid filter is malformed: close.
@VERSIONS
def test_unsubscribe_invalid_filter(broker, cid, ver):
    conn = connect(broker.port, cid(), ver)
    conn.send(p.gen_unsubscribe(1, "sp/#/b", ver))
    expect_protocol_close(conn, codes=(0x81, 0x82, 0x8F))


# MQTT 3.3 across versions: a v5 PUBLISH with properties reaches 3.1 / 3.1.1 subscribers as a plain PUBLISH of their version.
@pytest.mark.parametrize("sub_ver", [3, 4])
def test_v5_publish_to_v3_subscriber(broker, cid, sub_ver):
    sub = connect(broker.port, cid("s"), sub_ver)
    subscribe(sub, "sp/xv", 1)
    pub = connect(broker.port, cid("p"), 5)
    props = [(p.USER_PROPERTY, ("k", "v")), (p.CONTENT_TYPE, "text/plain"), (p.MESSAGE_EXPIRY_INTERVAL, 60)]
    pub.send(p.gen_publish("sp/xv", 1, b"cross", mid=1, proto_ver=5, properties=props))
    got = sub.read_packet()
    mid = p.decode(got)["mid"]
    assert got == p.gen_publish("sp/xv", 1, b"cross", mid=mid), got.hex(" ")


# MQTT 3.3 across versions: a 3.1.1 PUBLISH reaches a v5 subscriber with an empty property block.
def test_v311_publish_to_v5_subscriber(broker, cid):
    sub = connect(broker.port, cid("s"), 5)
    subscribe(sub, "sp/xv5", 0)
    pub = connect(broker.port, cid("p"), 4)
    pub.send(p.gen_publish("sp/xv5", 0, b"cross"))
    sub.expect(p.gen_publish("sp/xv5", 0, b"cross", proto_ver=5))
