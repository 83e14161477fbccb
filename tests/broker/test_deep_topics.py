"""Issue 14, defect 1: the routing walks are iterative, so no topic depth reaches
Python's recursion limit (the wire refuses more than 200 `/` anyway, as Mosquitto;
mount points and bridges can still add levels)."""

import sys

from midge.broker.retain import RetainStore
from midge.broker.session import Session
from midge.broker.subs import Subscription, SubscriptionTree
from midge.broker.message import Message

DEPTH = sys.getrecursionlimit() * 3


def _topic(depth, level="a"):
    return "/".join([level] * depth)


def test_subscription_tree_matches_a_very_deep_topic():
    tree = SubscriptionTree()
    session = Session("s")
    exact = Subscription(session, _topic(DEPTH), 1)
    wild = Subscription(Session("w"), _topic(DEPTH - 1, "+") + "/#", 0)
    tree.add(exact)
    tree.add(wild)
    subs, groups = tree.match(_topic(DEPTH))
    assert {id(s) for s in subs} == {id(exact), id(wild)} and groups == []
    entries, _ = tree.match_sessions(_topic(DEPTH) + "/b")
    assert [e[0].client_id for e in entries] == ["w"]
    assert tree.remove(session, _topic(DEPTH))


def test_retained_store_matches_a_very_deep_filter():
    store = RetainStore()
    store.store(Message(_topic(DEPTH), b"deep", 0, True, {}))
    store.store(Message(_topic(3), b"shallow", 0, True, {}))
    assert [m.payload for m in store.match(_topic(DEPTH))] == [b"deep"]
    assert [m.payload for m in store.match(_topic(DEPTH, "+"))] == [b"deep"]
    assert [m.payload for m in store.match(_topic(DEPTH - 1, "+") + "/#")] == [b"deep"]
    assert sorted(m.payload for m in store.match("a/#")) == [b"deep", b"shallow"]
    store.store(Message(_topic(DEPTH), b"", 0, True, {}))
    assert store.count == 1


def test_walk_order_and_wildcards_unchanged():
    # The iterative walks find what the recursive ones found, `$` rules included.
    tree = SubscriptionTree()
    filters = ["#", "+", "a/#", "a/+", "+/b", "a/b", "a/b/#", "+/+/+", "$SYS/#", "+/x", "a"]
    sessions = {f: Session(f) for f in filters}
    for f in filters:
        tree.add(Subscription(sessions[f], f, 0))
    from midge.protocol.topics import topic_matches
    for topic in ["a", "a/b", "a/b/c", "x/b", "$SYS/x", "$SYS", "a/x", "/", "a//b"]:
        subs, _ = tree.match(topic)
        got = sorted(s.filter for s in subs)
        assert got == sorted(f for f in filters if topic_matches(f, topic)), topic
    store = RetainStore()
    for topic in ["a", "a/b", "a/b/c", "x/b", "$SYS/x", "/", "a//b"]:
        store.store(Message(topic, b"1", 0, True, {}))
    for f in filters + ["+/+", "/#", "+//+", "a//+"]:
        got = sorted(m.topic for m in store.match(f))
        want = sorted(t for t in ["a", "a/b", "a/b/c", "x/b", "$SYS/x", "/", "a//b"] if topic_matches(f, t))
        assert got == want, f


def test_depth_limit_is_the_brokers_not_the_clients():
    # midge's own clients (pub/sub, bridges) take what a broker sends, like libmosquitto.
    from midge.protocol.codec import Decoder, encode
    from midge.protocol.errors import TopicTooDeep
    from midge.protocol.packets import Connect, Publish

    connect = encode(Connect(4, "c", True, 60, None, None, None, {}, "MQTT"), 4)

    deep = _topic(202)
    data = encode(Publish(deep, b"x", 1, False, False, 1, {}), 4)
    client = Decoder(version=4, role="client")
    assert [p.topic for p in client.feed(data)] == [deep]
    server = Decoder(version=None, role="server")
    server.feed(connect)
    assert server.feed(data) == []
    assert isinstance(server.error, TopicTooDeep) and server.error.reason_code == 0x82
    ok = Decoder(version=None, role="server")
    ok.feed(connect)
    assert [p.topic for p in ok.feed(encode(Publish(_topic(201), b"x", 0, False, False, None, {}), 4))] \
        == [_topic(201)]
