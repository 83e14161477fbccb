"""The broker's QoS 0 fast paths give what the general ones give."""

from midge.broker.message import Message, plain_message
from tests.broker.harness import Harness


def test_plain_message_is_a_message_without_properties():
    origin = object()
    built = plain_message("a/b", b"x", 1, True, "c1", origin)
    reference = Message("a/b", b"x", 1, True, {}, None, "c1", origin, b"")
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


def _subscriber_bytes(h, conn, data_in, sub):
    """Feed raw bytes from `conn`; what the broker queued for `sub` (before the drain)."""
    sub.client.output.clear()
    conn.client.receive_data(data_in, h.now)
    out = b"".join(sub.client.output)
    h.drain()
    return out


def test_v3_subscribers_get_the_received_bytes_or_a_minimal_encoding():
    from midge.protocol.codec import encode
    from midge.protocol.packets import Publish
    h = Harness()
    sub = h.connect("sub", version=4)
    sub.subscribe("w/#")
    pub = h.connect("pub", version=3)
    minimal = encode(Publish("w/t", b"payload"), 4)
    for _ in range(2):   # a topic not seen yet, then a known one
        assert _subscriber_bytes(h, pub, minimal, sub) == minimal
    # Remaining length 12 padded to two bytes (0x8C 0x00): re-encoded minimally.
    padded = b"\x30\x8c\x00" + minimal[2:]
    for _ in range(2):
        assert _subscriber_bytes(h, pub, padded, sub) == minimal
    # Longer than 127 bytes: a two-byte remaining length either way.
    big = encode(Publish("w/t", b"p" * 300), 4)
    assert _subscriber_bytes(h, pub, big, sub) == big
    assert [p.payload for p in sub.publishes()] == [b"payload"] * 4 + [b"p" * 300]


def test_a_mount_point_publisher_is_re_encoded():
    from tests.broker.harness import make_listener
    h = Harness()
    sub = h.connect("sub", version=4)
    sub.subscribe("m/#")
    pub = h.connect("pub", version=4, listener=make_listener(mount_point="m/"))
    for _ in range(2):
        pub.publish("t", b"x")
    assert [(p.topic, p.payload) for p in sub.publishes()] == [("m/t", b"x")] * 2
