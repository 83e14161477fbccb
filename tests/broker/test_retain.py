"""Retained messages: store, replace, clear, retain handling, flags, expiry, scale."""

import time

import pytest

from midge.broker.message import Message
from midge.broker.retain import RetainStore
from midge.protocol.constants import Property, ReasonCode
from tests.broker.harness import Harness

V311_V5 = pytest.mark.parametrize("version", [4, 5])


@V311_V5
def test_retained_delivered_on_subscribe_with_flag(version):
    h = Harness()
    pub = h.connect("pub", version=version)
    pub.publish("r/1", b"one", qos=1, retain=True)
    pub.take()
    sub = h.connect("sub", version=version)
    sub.subscribe("r/#", 1)
    [msg] = sub.publishes()
    assert (msg.topic, msg.payload, msg.retain, msg.qos) == ("r/1", b"one", True, 1)


def test_retained_replace_and_clear():
    h = Harness()
    pub = h.connect("pub")
    pub.publish("r", b"1", retain=True)
    pub.publish("r", b"2", retain=True)
    sub = h.connect("sub")
    sub.subscribe("r")
    assert [m.payload for m in sub.publishes()] == [b"2"]
    pub.publish("r", b"", retain=True)
    assert sub.publishes()[0].payload == b""   # the clear is forwarded live
    late = h.connect("late")
    late.subscribe("r")
    assert late.take() == []
    assert h.broker.retained.count == 0


def test_live_forward_clears_retain_flag():
    h = Harness()
    sub = h.connect("sub")
    sub.subscribe("r")
    h.connect("pub").publish("r", retain=True)
    assert sub.publishes()[0].retain is False


def test_retain_handling():
    h = Harness()
    h.connect("pub", version=5).publish("r", b"x", retain=True)
    sub = h.connect("sub", version=5)
    sub.subscribe("r", 0, packet_id=1, retain_handling=1)
    assert len(sub.publishes()) == 1
    sub.subscribe("r", 0, packet_id=2, retain_handling=1)   # not new: nothing
    assert sub.take() == []
    sub.subscribe("r", 0, packet_id=3, retain_handling=0)   # always
    assert len(sub.publishes()) == 1
    sub.subscribe("r", 0, packet_id=4, retain_handling=2)   # never
    assert sub.take() == []


def test_retained_downgraded_to_granted_qos():
    h = Harness()
    pub = h.connect("pub")
    pub.publish("r", b"x", qos=2, retain=True, packet_id=5)
    pub.take()
    pub.send(__import__("midge.protocol.packets", fromlist=["Pubrel"]).Pubrel(5))
    sub = h.connect("sub")
    sub.subscribe("r", 0)
    assert sub.publishes()[0].qos == 0


def test_retain_not_available_disconnects():
    h = Harness(retain_available=False)
    v5 = h.connect("v5", version=5)
    v5.publish("r", retain=True)
    assert v5.take()[0].reason_code == ReasonCode.RETAIN_NOT_SUPPORTED
    assert v5.closed
    v3 = h.connect("v3")
    v3.publish("r", retain=True)
    assert v3.closed


def test_retained_message_expiry():
    h = Harness()
    h.connect("pub", version=5).publish("r", retain=True,
                                        properties={Property.MESSAGE_EXPIRY_INTERVAL: 10})
    h.advance(5)
    sub = h.connect("sub", version=5)
    sub.subscribe("r")
    [msg] = sub.publishes()
    assert msg.properties[Property.MESSAGE_EXPIRY_INTERVAL] == 5
    h.advance(6)
    late = h.connect("late", version=5)
    late.subscribe("r")
    assert late.take() == []


def test_dollar_topics_not_returned_for_hash():
    store = RetainStore()
    store.store(Message("$SYS/x", b"1", 0, True, {}))
    store.store(Message("a", b"1", 0, True, {}))
    assert [m.topic for m in store.match("#")] == ["a"]
    assert [m.topic for m in store.match("+")] == ["a"]
    assert [m.topic for m in store.match("$SYS/#")] == ["$SYS/x"]


def test_parent_matches_hash():
    store = RetainStore()
    store.store(Message("a", b"1", 0, True, {}))
    store.store(Message("a/b", b"1", 0, True, {}))
    assert sorted(m.topic for m in store.match("a/#")) == ["a", "a/b"]


def test_hash_over_100k_retained_is_fast():
    store = RetainStore()
    for i in range(100_000):
        store.store(Message(f"dev/{i % 100}/{i}", b"v", 0, True, {}))
    started = time.perf_counter()
    found = store.match("#")
    elapsed = time.perf_counter() - started
    assert len(found) == 100_000
    assert elapsed < 1.0, elapsed
    assert len(store.match("dev/7/+")) == 1000


def test_store_keeps_leaves_without_a_children_dict_and_never_shares_one():
    from midge.broker import retain

    store = RetainStore()
    for topic in ("a/b", "a/b/c", "a/x"):
        store.store(Message(topic, b"v", 0, True, {}))
    store.store(Message("a/b/c", b"", 0, True, {}))   # clear: a/b becomes a leaf again
    store.store(Message("a/b/d", b"v", 0, True, {}))  # and gets its own children again
    store.store(Message("q", b"v", 0, True, {}))
    assert retain._NO_CHILDREN == {}                  # the shared empty mapping untouched
    assert sorted(m.topic for m in store.match("#")) == ["a/b", "a/b/d", "a/x", "q"]
    assert [m.topic for m in store.match("a/b/+")] == ["a/b/d"]
    assert store.count == 4
