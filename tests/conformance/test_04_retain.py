"""04-retain: retained messages: store, replace, clear, retain flag, v5 retain handling."""

import pytest

from tests.conformance import packets as p
from tests.conformance.wire import connect, expect_publish, subscribe

VERSIONS = pytest.mark.parametrize("ver", [4, 5])


def _retain(port, client_id, topic, payload, qos=0, ver=4, properties=()):
    """Publish a retained message and wait for the broker to have handled it."""
    pub = connect(port, client_id, ver)
    pub.send(p.gen_publish(topic, qos, payload, retain=True, mid=1, proto_ver=ver, properties=properties))
    if qos == 1:
        pub.expect(p.gen_puback(1, ver, reason_code=0x10 if ver == 5 else 0))
    else:
        pub.ping()
    pub.close()


# MQTT-3.3.1-5/6/8: a retained message is stored and sent to a new subscriber with RETAIN 1.
@pytest.mark.parametrize("ver", [3, 4, 5])
def test_retained_delivered_on_subscribe(broker, cid, ver):
    _retain(broker.port, cid("p"), f"r/basic{ver}", b"kept", ver=ver)
    sub = connect(broker.port, cid("s"), ver)
    subscribe(sub, f"r/basic{ver}", 0)
    expect_publish(sub, f"r/basic{ver}", b"kept", retain=True)


# MQTT-3.3.1-9: a message matching an existing subscription is delivered with RETAIN 0 (3.1.1), even if published retained.
def test_live_delivery_clears_retain_flag_v311(broker, cid):
    sub = connect(broker.port, cid("s"))
    subscribe(sub, "r/live", 0)
    pub = connect(broker.port, cid("p"))
    pub.send(p.gen_publish("r/live", 0, b"now", retain=True))
    expect_publish(sub, "r/live", b"now", retain=False)
    pub.send(p.gen_publish("r/live", 0, b"", retain=True))  # leave no retained message behind


# MQTT-3.3.1-10/11: a retained PUBLISH with an empty payload removes the retained message; it is itself delivered live.
@VERSIONS
def test_empty_payload_clears_retained(broker, cid, ver):
    topic = f"r/clear{ver}"
    _retain(broker.port, cid("p"), topic, b"old", ver=ver)
    _retain(broker.port, cid("c"), topic, b"", ver=ver)
    sub = connect(broker.port, cid("s"), ver)
    subscribe(sub, topic, 0)
    sub.ping()  # nothing retained comes before the PINGRESP


# MQTT-3.3.1-5: a new retained message replaces the previous one on that topic.
def test_retained_replaced(broker, cid):
    _retain(broker.port, cid("p"), "r/replace", b"one")
    _retain(broker.port, cid("p"), "r/replace", b"two")
    sub = connect(broker.port, cid("s"))
    subscribe(sub, "r/replace", 0)
    expect_publish(sub, "r/replace", b"two", retain=True)
    sub.ping()


# MQTT-3.3.1-7 (3.1.1): a retained QoS 0 PUBLISH replaces (not merely discards) the old retained message.
def test_retained_qos0_replaces_qos1(broker, cid):
    _retain(broker.port, cid("p"), "r/q0", b"q1", qos=1)
    _retain(broker.port, cid("p"), "r/q0", b"q0", qos=0)
    sub = connect(broker.port, cid("s"))
    subscribe(sub, "r/q0", 1)
    expect_publish(sub, "r/q0", b"q0", qos=0, retain=True)


# MQTT 3.3.1.3 / 3.8.4: a retained message is sent at min(its QoS, granted QoS).
@pytest.mark.parametrize("pub_qos,sub_qos", [(1, 0), (1, 1), (0, 1)])
def test_retained_qos_is_minimum(broker, cid, pub_qos, sub_qos):
    topic = f"r/min{pub_qos}{sub_qos}"
    _retain(broker.port, cid("p"), topic, b"m", qos=pub_qos)
    sub = connect(broker.port, cid("s"))
    subscribe(sub, topic, sub_qos)
    expect_publish(sub, topic, b"m", qos=min(pub_qos, sub_qos), retain=True)


# MQTT 4.7 + 3.3.1.3: a wildcard subscription receives every matching retained message.
def test_retained_wildcard_subscription(broker, cid):
    for leaf in ("a", "b", "c"):
        _retain(broker.port, cid("p"), f"r/wild/{leaf}", leaf.encode())
    sub = connect(broker.port, cid("s"))
    subscribe(sub, "r/wild/+", 0)
    got = sorted(sub.receive()["topic"] for _ in range(3))
    assert got == [b"r/wild/a", b"r/wild/b", b"r/wild/c"]


# MQTT-3.8.4-3 (3.1.1): re-subscribing re-sends the retained messages.
def test_resubscribe_resends_retained_v311(broker, cid):
    _retain(broker.port, cid("p"), "r/again", b"x")
    sub = connect(broker.port, cid("s"))
    subscribe(sub, "r/again", 0, mid=1)
    expect_publish(sub, "r/again", b"x", retain=True)
    subscribe(sub, "r/again", 0, mid=2)
    expect_publish(sub, "r/again", b"x", retain=True)


# MQTT-3.3.1-10 (v5 numbering): retain handling 1 sends retained messages only if the subscription is new.
def test_v5_retain_handling_1(broker, cid):
    _retain(broker.port, cid("p"), "r/rh1", b"x", ver=5)
    sub = connect(broker.port, cid("s"), 5)
    options = p.sub_options(qos=0, retain_handling=1)
    subscribe(sub, "r/rh1", options, mid=1, granted=[0])
    expect_publish(sub, "r/rh1", b"x", retain=True)
    subscribe(sub, "r/rh1", options, mid=2, granted=[0])
    sub.ping()


# MQTT-3.3.1-11 (v5 numbering): retain handling 2 never sends retained messages on subscribe.
def test_v5_retain_handling_2(broker, cid):
    _retain(broker.port, cid("p"), "r/rh2", b"x", ver=5)
    sub = connect(broker.port, cid("s"), 5)
    subscribe(sub, "r/rh2", p.sub_options(qos=0, retain_handling=2), granted=[0])
    sub.ping()


# MQTT-3.3.1-12 (v5): without Retain As Published, live deliveries have RETAIN 0.
def test_v5_retain_as_published_off(broker, cid):
    sub = connect(broker.port, cid("s"), 5)
    subscribe(sub, "r/rap0", 0)
    pub = connect(broker.port, cid("p"), 5)
    pub.send(p.gen_publish("r/rap0", 0, b"x", retain=True, proto_ver=5))
    expect_publish(sub, "r/rap0", b"x", retain=False)
    pub.send(p.gen_publish("r/rap0", 0, b"", retain=True, proto_ver=5))


# MQTT-3.3.1-13 (v5): with Retain As Published, live deliveries keep the publisher's RETAIN flag.
def test_v5_retain_as_published_on(broker, cid):
    sub = connect(broker.port, cid("s"), 5)
    subscribe(sub, "r/rap1", p.sub_options(qos=0, retain_as_published=True), granted=[0])
    pub = connect(broker.port, cid("p"), 5)
    pub.send(p.gen_publish("r/rap1", 0, b"kept", retain=True, proto_ver=5))
    pub.send(p.gen_publish("r/rap1", 0, b"plain", retain=False, proto_ver=5))
    expect_publish(sub, "r/rap1", b"kept", retain=True)
    expect_publish(sub, "r/rap1", b"plain", retain=False)
    pub.send(p.gen_publish("r/rap1", 0, b"", retain=True, proto_ver=5))


# MQTT 5.0 3.3.2.3.3: a retained message keeps its properties; its expiry is sent as the remaining time.
def test_v5_retained_keeps_properties(broker, cid):
    props = [(p.CONTENT_TYPE, "text/plain"), (p.USER_PROPERTY, ("k", "v")), (p.MESSAGE_EXPIRY_INTERVAL, 3600)]
    _retain(broker.port, cid("p"), "r/props", b"x", ver=5, properties=props)
    sub = connect(broker.port, cid("s"), 5)
    subscribe(sub, "r/props", 0)
    got = sub.receive()
    assert got["retain"] and got["payload"] == b"x", got
    received = dict((k, v) for k, v in got["props"] if k != p.MESSAGE_EXPIRY_INTERVAL)
    assert received == {p.CONTENT_TYPE: "text/plain", p.USER_PROPERTY: ("k", "v")}, got
    expiry = dict(got["props"])[p.MESSAGE_EXPIRY_INTERVAL]
    assert 3590 <= expiry <= 3600, expiry


# MQTT 3.3.1.3: an empty retained PUBLISH on a topic with nothing retained is harmless and not stored.
def test_clear_nonexistent_retained(broker, cid):
    _retain(broker.port, cid("p"), "r/never", b"")
    sub = connect(broker.port, cid("s"))
    subscribe(sub, "r/never", 0)
    sub.ping()


# MQTT 5.0 3.3.1.3 / 4.8.2: retained messages are sent when a new Non-shared Subscription is made, not for a shared one.
@pytest.mark.mosquitto_bug("2.0.11 sends retained messages to a new $share subscription")
def test_v5_no_retained_on_shared_subscription(broker, cid):
    _retain(broker.port, cid("p"), "r/shared", b"x", ver=5)
    sub = connect(broker.port, cid("s"), 5)
    subscribe(sub, "$share/g/r/shared", 0)
    try:
        sub.ping()
    finally:
        _retain(broker.port, cid("c"), "r/shared", b"", ver=5)
