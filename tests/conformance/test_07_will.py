"""07-will: will messages: when they are sent, when not, their QoS/retain/properties, v5 delay."""

import pytest

from tests.conformance import packets as p
from tests.conformance.wire import connect, expect_publish, subscribe

VERSIONS = pytest.mark.parametrize("ver", [3, 4, 5])


def _watch(broker, cid, topic, qos=0, ver=4):
    sub = connect(broker.port, cid("w"), ver)
    subscribe(sub, topic, qos)
    return sub


# MQTT-3.1.2-8: the will is published when the network connection closes without DISCONNECT.
@VERSIONS
def test_will_on_connection_loss(broker, cid, ver):
    watcher = _watch(broker, cid, f"will/loss{ver}")
    client = connect(broker.port, cid("c"), ver, will_topic=f"will/loss{ver}", will_payload=b"gone")
    client.close()
    expect_publish(watcher, f"will/loss{ver}", b"gone")


# MQTT-3.1.2-10: a normal DISCONNECT deletes the will.
@VERSIONS
def test_no_will_on_disconnect(broker, cid, ver):
    watcher = _watch(broker, cid, f"will/clean{ver}")
    client = connect(broker.port, cid("c"), ver, will_topic=f"will/clean{ver}", will_payload=b"no")
    client.send(p.gen_disconnect(0, ver))
    client.expect_closed()
    other = connect(broker.port, cid("o"), ver)
    other.send(p.gen_publish(f"will/clean{ver}", 0, b"marker", proto_ver=ver))
    expect_publish(watcher, f"will/clean{ver}", b"marker")  # the marker comes first: no will


# MQTT 5.0 3.14.2.1: DISCONNECT reason 0x04 (disconnect with will message) publishes the will.
def test_v5_disconnect_with_will_message(broker, cid):
    watcher = _watch(broker, cid, "will/x04", ver=5)
    client = connect(broker.port, cid("c"), 5, will_topic="will/x04", will_payload=b"yes")
    client.send(p.gen_disconnect(0x04, 5))
    client.expect_closed()
    expect_publish(watcher, "will/x04", b"yes")


# MQTT-3.1.2-8: a protocol error closes the connection and publishes the will.
@pytest.mark.parametrize("ver", [4, 5])
def test_will_on_protocol_error(broker, cid, ver):
    watcher = _watch(broker, cid, f"will/err{ver}")
    client = connect(broker.port, cid("c"), ver, will_topic=f"will/err{ver}", will_payload=b"bad")
    client.send(p.gen_publish("will/#", 0, b"", proto_ver=ver))  # wildcard topic name
    expect_publish(watcher, f"will/err{ver}", b"bad")


# MQTT-3.1.2-17: will retain 1: the will is published as a retained message.
def test_will_retained(broker, cid):
    watcher = _watch(broker, cid, "will/ret")
    client = connect(broker.port, cid("c"), 4, will_topic="will/ret", will_payload=b"kept", will_retain=True)
    client.close()
    expect_publish(watcher, "will/ret", b"kept")  # live delivery (3.1.1: RETAIN 0)
    late = connect(broker.port, cid("l"))
    subscribe(late, "will/ret", 0)
    expect_publish(late, "will/ret", b"kept", retain=True)
    late.send(p.gen_publish("will/ret", 0, b"", retain=True))  # clean up


# MQTT-3.1.2-16: will retain 0: the will is not retained.
def test_will_not_retained(broker, cid):
    watcher = _watch(broker, cid, "will/nr")
    client = connect(broker.port, cid("c"), 4, will_topic="will/nr", will_payload=b"live")
    client.close()
    expect_publish(watcher, "will/nr", b"live")
    late = connect(broker.port, cid("l"))
    subscribe(late, "will/nr", 0)
    late.ping()


# MQTT-3.1.2-14 / 3.3.4: the will is published at its QoS (here 1) to a QoS 1 subscriber.
def test_will_qos1(broker, cid):
    watcher = _watch(broker, cid, "will/q1", qos=1)
    client = connect(broker.port, cid("c"), 4, will_topic="will/q1", will_payload=b"q", will_qos=1)
    client.close()
    mid = expect_publish(watcher, "will/q1", b"q", qos=1)
    watcher.send(p.gen_puback(mid))


# MQTT-3.1.4-3: when a client id is taken over, the old connection's will is published (will delay 0).
@pytest.mark.parametrize("ver", [4, 5])
def test_will_on_takeover(broker, cid, ver):
    watcher = _watch(broker, cid, f"will/take{ver}")
    client_id = cid("c")
    connect(broker.port, client_id, ver, will_topic=f"will/take{ver}", will_payload=b"old")
    connect(broker.port, client_id, ver)
    expect_publish(watcher, f"will/take{ver}", b"old")


# MQTT-3.1.3-10 ... 3.1.3.2: v5 will properties are sent with the will (payload format, expiry, content type, response topic, correlation data, user properties).
def test_v5_will_properties(broker, cid):
    watcher = _watch(broker, cid, "will/props", ver=5)
    props = [(p.PAYLOAD_FORMAT_INDICATOR, 1), (p.MESSAGE_EXPIRY_INTERVAL, 100), (p.CONTENT_TYPE, "ct"),
             (p.RESPONSE_TOPIC, "will/resp"), (p.CORRELATION_DATA, b"\x00\x01"), (p.USER_PROPERTY, ("a", "b"))]
    client = connect(broker.port, cid("c"), 5, will_topic="will/props", will_payload=b"pp", will_properties=props)
    client.close()
    got = watcher.receive()
    assert got["topic"] == b"will/props" and got["payload"] == b"pp", got
    others = [x for x in got["props"] if x[0] != p.MESSAGE_EXPIRY_INTERVAL]
    assert others == sorted([x for x in props if x[0] != p.MESSAGE_EXPIRY_INTERVAL], key=repr), got
    assert 98 <= dict(got["props"])[p.MESSAGE_EXPIRY_INTERVAL] <= 100, got


# MQTT-3.1.3-9: with a will delay, the will waits for the delay (here 1 s; the session outlives it).
def test_v5_will_delay(broker, cid):
    watcher = _watch(broker, cid, "will/delay", ver=5)
    client = connect(broker.port, cid("c"), 5, will_topic="will/delay", will_payload=b"late",
                     will_properties=[(p.WILL_DELAY_INTERVAL, 1)], properties=[(p.SESSION_EXPIRY_INTERVAL, 60)])
    client.close()
    watcher.expect_nothing()
    expect_publish(watcher, "will/delay", b"late")


# MQTT-3.1.3-9: the will is published when the session ends, if that is before the will delay (session expiry 0).
@pytest.mark.mosquitto_bug("2.0.11 never publishes a delayed will whose session ends at disconnect")
def test_v5_will_delay_cut_short_by_session_end(broker, cid):
    watcher = _watch(broker, cid, "will/cut", ver=5)
    client = connect(broker.port, cid("c"), 5, will_topic="will/cut", will_payload=b"now",
                     will_properties=[(p.WILL_DELAY_INTERVAL, 3600)])
    client.close()
    expect_publish(watcher, "will/cut", b"now", timeout=3.0)


# MQTT-3.1.2-8 / 3.1.2-24: keepalive expiry publishes the will.
def test_will_on_keepalive_timeout(broker, cid):
    watcher = _watch(broker, cid, "will/ka")
    client = connect(broker.port, cid("c"), 4, keepalive=1, will_topic="will/ka", will_payload=b"timeout")
    expect_publish(watcher, "will/ka", b"timeout", timeout=8.0)
    client.expect_closed()
