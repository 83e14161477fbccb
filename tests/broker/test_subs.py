"""Subscriptions: matching, wildcards, $ topics, overlaps, v5 options, shared subscriptions."""

import pytest

from midge.broker.subs import Subscription, SubscriptionTree
from midge.protocol.constants import Property, ReasonCode
from midge.protocol.packets import Publish, Subscribe, Subscription as SubRequest
from tests.broker.harness import Harness, make_listener

V311_V5 = pytest.mark.parametrize("version", [4, 5])


class _S:
    def __init__(self, name):
        self.client_id = name
        self.client = object()


@pytest.mark.parametrize("topic_filter,topic,matches", [
    ("a/b", "a/b", True),
    ("a/+", "a/b", True),
    ("a/+", "a/b/c", False),
    ("a/#", "a", True),
    ("a/#", "a/b/c", True),
    ("#", "a/b", True),
    ("+/+", "/a", True),
    ("+", "", True),
    ("#", "$SYS/x", False),
    ("+/x", "$SYS/x", False),
    ("$SYS/#", "$SYS/x", True),
    ("a/+/c", "a//c", True),
    ("a/b", "a/b/", False),
])
def test_tree_matching(topic_filter, topic, matches):
    tree = SubscriptionTree()
    session = _S("s")
    tree.add(Subscription(session, topic_filter, 0))
    subs, groups = tree.match(topic)
    assert bool(subs) == matches


def test_tree_remove_prunes_and_invalidates_cache():
    tree = SubscriptionTree()
    session = _S("s")
    tree.add(Subscription(session, "a/b/c", 0))
    assert tree.match("a/b/c")[0]
    assert tree.remove(session, "a/b/c")
    assert tree.match("a/b/c") == ([], [])
    assert tree._root.children == {}
    assert not tree.remove(session, "a/b/c")
    assert tree.count == 0


@V311_V5
def test_basic_delivery(version):
    h = Harness()
    sub = h.connect("sub", version=version)
    assert sub.subscribe("t/+", 0).reason_codes == [0]
    pub = h.connect("pub", version=version)
    pub.publish("t/1", b"hello")
    [msg] = sub.publishes()
    assert (msg.topic, msg.payload, msg.qos, msg.retain) == ("t/1", b"hello", 0, False)


@V311_V5
def test_overlapping_subscriptions_deliver_once_with_max_qos(version):
    h = Harness()
    sub = h.connect("sub", version=version)
    sub.subscribe("a/#", 0, packet_id=1)
    sub.subscribe("a/b", 1, packet_id=2)
    pub = h.connect("pub", version=version)
    pub.publish("a/b", b"x", qos=1)
    pub.take()
    msgs = sub.publishes()
    assert len(msgs) == 1 and msgs[0].qos == 1


def test_v3_allow_duplicate_messages_true_delivers_per_subscription():
    h = Harness(allow_duplicate_messages=True)
    sub = h.connect("sub")
    sub.subscribe("a/#", 0, packet_id=1)
    sub.subscribe("a/b", 0, packet_id=2)
    h.connect("pub").publish("a/b")
    assert len(sub.publishes()) == 2


def test_v5_subscription_identifiers_all_matching():
    h = Harness()
    sub = h.connect("sub", version=5)
    sub.subscribe("a/#", 0, packet_id=1, properties={Property.SUBSCRIPTION_IDENTIFIER: [3]})
    sub.subscribe("a/+", 0, packet_id=2, properties={Property.SUBSCRIPTION_IDENTIFIER: [7]})
    h.connect("pub", version=5).publish("a/b")
    [msg] = sub.publishes()
    assert sorted(msg.properties[Property.SUBSCRIPTION_IDENTIFIER]) == [3, 7]


def test_v5_no_local():
    h = Harness()
    me = h.connect("me", version=5)
    me.subscribe("t", 0, no_local=True)
    me.publish("t")
    assert me.take() == []
    h.connect("other", version=5).publish("t")
    assert len(me.publishes()) == 1


def test_v5_retain_as_published():
    h = Harness()
    rap = h.connect("rap", version=5)
    rap.subscribe("t", 0, retain_as_published=True)
    plain = h.connect("plain", version=5)
    plain.subscribe("t", 0)
    h.connect("pub", version=5).publish("t", retain=True)
    assert rap.publishes()[0].retain is True
    assert plain.publishes()[0].retain is False


def test_dollar_topics_not_matched_by_wildcards():
    h = Harness()
    sub = h.connect("sub")
    sub.subscribe("#")
    h.broker.publish(__import__("midge.broker.message", fromlist=["Message"]).Message(
        "$SYS/x", b"1", 0, False, {}), h.now)
    h.drain()
    assert sub.take() == []


@V311_V5
def test_subscribe_qos_capped_at_max_qos(version):
    h = Harness(listener=make_listener(max_qos=1))
    sub = h.connect("sub", version=version)
    assert sub.subscribe("t", 2).reason_codes == [1]


# The ACL file does not gate SUBSCRIBE (Mosquitto 2.0); a plugin's acl_check does.
_DENY_SUBSCRIBE_SECRET = """
def acl_check(client, topic, access):
    return (topic, access) != ("secret", 4)
"""


def test_v5_invalid_filter_and_acl_denied():
    h = Harness(plugin=_DENY_SUBSCRIBE_SECRET)
    sub = h.connect("sub", version=5)
    sub.send(Subscribe(1, [SubRequest("secret", 1), SubRequest("ok", 1)]))
    assert sub.take()[0].reason_codes == [ReasonCode.NOT_AUTHORIZED, 1]


def test_v3_acl_denied_subscribe_is_0x80():
    h = Harness(plugin=_DENY_SUBSCRIBE_SECRET)
    sub = h.connect("sub", version=4)
    assert sub.subscribe("secret", 1).reason_codes == [0x80]


def test_acl_read_checked_per_delivery():
    h = Harness(users={"u": b"p"}, acl="user u\ntopic readwrite #\ntopic deny t/hidden\n")
    sub = h.connect("sub", username="u", password=b"p")
    sub.subscribe("t/#")
    pub = h.connect("pub", username="u", password=b"p")
    pub.publish("t/hidden")
    pub.publish("t/open")
    assert [m.topic for m in sub.publishes()] == ["t/open"]


@V311_V5
def test_unsubscribe(version):
    h = Harness()
    sub = h.connect("sub", version=version)
    sub.subscribe("t")
    ack = sub.unsubscribe("t")
    if version == 5:
        assert ack.reason_codes == [0]
        assert sub.unsubscribe("t").reason_codes == [ReasonCode.NO_SUBSCRIPTION_EXISTED]
    else:
        assert ack.reason_codes == []
    h.connect("pub", version=version).publish("t")
    assert sub.take() == []


def test_resubscribe_replaces_qos():
    h = Harness()
    sub = h.connect("sub")
    sub.subscribe("t", 1)
    sub.subscribe("t", 0)
    assert h.broker.subs.count == 1
    h.connect("pub").publish("t", qos=1)
    assert sub.publishes()[0].qos == 0


def test_shared_subscription_round_robin():
    h = Harness()
    a = h.connect("a", version=5)
    b = h.connect("b", version=5)
    a.subscribe("$share/g/t/#", 0)
    b.subscribe("$share/g/t/#", 0)
    normal = h.connect("n", version=5)
    normal.subscribe("t/#")
    pub = h.connect("pub", version=5)
    for i in range(4):
        pub.publish("t/x", str(i).encode())
    got_a = [m.payload for m in a.publishes()]
    got_b = [m.payload for m in b.publishes()]
    assert sorted(got_a + got_b) == [b"0", b"1", b"2", b"3"]
    assert len(got_a) == 2 and len(got_b) == 2
    assert len(normal.publishes()) == 4


def test_shared_subscription_unsubscribe_and_v311():
    h = Harness()
    a = h.connect("a", version=4)
    a.subscribe("$share/g/t", 0)
    pub = h.connect("pub")
    pub.publish("t")
    assert len(a.publishes()) == 1
    a.unsubscribe("$share/g/t")
    pub.publish("t")
    assert a.take() == []


def test_shared_no_local_is_protocol_error():
    h = Harness()
    a = h.connect("a", version=5)
    a.send(Subscribe(1, [SubRequest("$share/g/t", 0, no_local=True)]))
    assert a.closed


def test_publish_to_share_topic_refused():
    h = Harness()
    sub = h.connect("sub")
    sub.subscribe("#")
    pub = h.connect("pub", version=5)
    pub.publish("$share/g/t", qos=1)
    assert pub.take()[0].reason_code == ReasonCode.NOT_AUTHORIZED
    assert sub.take() == []


def test_mount_point():
    listener = make_listener(mount_point="tenant/")
    h = Harness(listener=listener)
    sub = h.connect("sub")
    sub.subscribe("t/#")
    assert h.broker.subs.match("tenant/t/1")[0]
    h.connect("pub").publish("t/1")
    [msg] = sub.publishes()
    assert msg.topic == "t/1"


def test_fanout_shares_encoded_bytes():
    h = Harness()
    subs = [h.connect(f"s{i}") for i in range(3)]
    for s in subs:
        s.subscribe("t")
    pub = h.connect("pub")
    pub.client.receive_data(__import__("midge.protocol.codec", fromlist=["encode"]).encode(
        Publish("t", b"payload"), 4), h.now)
    outputs = [s.client.output[-1] for s in subs]
    assert outputs[0] is outputs[1] is outputs[2]
    h.drain()


def test_subscribe_log_lines():
    h = Harness()
    sub = h.connect("sub")
    sub.subscribe("a/b", 1)
    sub.unsubscribe("a/b")
    assert "sub 1 a/b" in h.log.messages("subscribe")
    assert "sub a/b" in h.log.messages("unsubscribe")


def test_v5_no_local_with_overlapping_plain_subscription():
    h = Harness()
    me = h.connect("me", version=5)
    me.subscribe("t", 1, packet_id=1, no_local=True, properties={Property.SUBSCRIPTION_IDENTIFIER: [1]})
    me.subscribe("#", 0, packet_id=2, properties={Property.SUBSCRIPTION_IDENTIFIER: [2]})
    me.publish("t", qos=1)
    packets = me.take()
    [msg] = [m for m in packets if isinstance(m, Publish)]
    assert msg.qos == 0 and msg.properties[Property.SUBSCRIPTION_IDENTIFIER] == [2]


def test_match_cache_follows_tree_changes():
    h = Harness()
    sub = h.connect("sub")
    pub = h.connect("pub")
    pub.publish("c/t")
    sub.subscribe("c/#")
    pub.publish("c/t")
    assert len(sub.publishes()) == 1
    sub.unsubscribe("c/#")
    pub.publish("c/t")
    assert sub.take() == []


def test_v3_bridge_gets_no_echo_and_retain_as_published():
    from midge.protocol.packets import Connect
    h = Harness()
    bridge = h.open(4)
    bridge.send(Connect(4, "bridge", False, 60, bridge=True))
    bridge.take()
    assert bridge.client.is_bridge
    bridge.subscribe("t/#")
    bridge.publish("t/own", retain=True)
    assert bridge.take() == []
    h.connect("other").publish("t/other", retain=True)
    [msg] = bridge.publishes()
    assert msg.topic == "t/other" and msg.retain is True
