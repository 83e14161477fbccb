"""The broker's QoS 0 fast paths give what the general ones give."""

from midge.broker.message import Message, plain_message
from tests.broker.harness import Harness


def test_plain_message_is_a_message_without_properties():
    origin = object()
    built = plain_message("a/b", b"x", 1, True, "c1", origin)
    reference = Message("a/b", b"x", 1, True, {}, None, "c1", origin)
    assert type(built) is Message
    assert all(getattr(built, name) == getattr(reference, name) for name in Message.__slots__)
    assert not built.expired(1e12)


def test_qos0_to_v3_v5_retained_and_mounted_subscribers_from_one_publish():
    h = Harness()
    v3 = h.connect("v3", version=4)
    v5 = h.connect("v5", version=5)
    v3.subscribe("f/#")
    v5.subscribe("f/#", retain_as_published=True)
    pub = h.connect("pub", version=4)
    for retain in (False, True, False):
        pub.publish("f/t", b"m", retain=retain)
    assert [(p.topic, p.payload, p.retain) for p in v3.publishes()] == [("f/t", b"m", False)] * 3
    assert [(p.topic, p.retain) for p in v5.publishes()] == [("f/t", False), ("f/t", True), ("f/t", False)]
    assert h.broker.stats.publish_sent == 6
