"""15-expiry: v5 message expiry and session expiry, which need real time to pass.

These are the only tests that wait on purpose: an expiry of 1 s cannot be observed
without letting that second go by. The wait is `Conn.expect_nothing` on a connection
that must stay silent meanwhile, so it checks something too.
"""

import pytest

from tests.conformance import packets as p
from tests.conformance.wire import connect, expect_publish, subscribe

EXPIRY = [(p.SESSION_EXPIRY_INTERVAL, 60)]


# MQTT-3.3.2-5: a queued message whose expiry passed before delivery is not delivered; a live one is, with the time held subtracted.
def test_queued_message_expires(broker, cid):
    client_id = cid("s")
    sub = connect(broker.port, client_id, 5, clean=False, properties=EXPIRY)
    subscribe(sub, "ex/q", 1)
    sub.send(p.gen_disconnect(0, 5))
    sub.expect_closed()
    pub = connect(broker.port, cid("p"), 5)
    pub.send(p.gen_publish("ex/q", 1, b"short", mid=1, proto_ver=5, properties=[(p.MESSAGE_EXPIRY_INTERVAL, 1)]))
    pub.expect(p.gen_puback(1, 5))
    pub.send(p.gen_publish("ex/q", 1, b"long", mid=2, proto_ver=5, properties=[(p.MESSAGE_EXPIRY_INTERVAL, 60)]))
    pub.expect(p.gen_puback(2, 5))
    pub.expect_nothing(2.2)  # let the 1 s expiry pass
    sub = connect(broker.port, client_id, 5, clean=False, properties=EXPIRY)
    got = sub.receive()
    assert got["type"] == "PUBLISH" and got["payload"] == b"long", got
    assert 55 <= dict(got["props"])[p.MESSAGE_EXPIRY_INTERVAL] <= 59, got
    sub.send(p.gen_puback(got["mid"], 5))
    sub.ping()


# MQTT 5.0 3.1.2.11.2: a session whose expiry interval has passed is gone: session present 0 on reconnect.
def test_session_expires(broker, cid):
    client_id = cid()
    conn = connect(broker.port, client_id, 5, clean=False, properties=[(p.SESSION_EXPIRY_INTERVAL, 1)])
    conn.send(p.gen_disconnect(0, 5))
    conn.expect_closed()
    watcher = connect(broker.port, cid("w"), 5)
    watcher.expect_nothing(2.5)  # let the 1 s session expiry pass (Mosquitto checks about once a second)
    conn = connect(broker.port, client_id, 5, clean=False, properties=EXPIRY)
    assert conn.connack["session_present"] == 0, conn.connack


# MQTT 5.0 3.3.2.3.3: a retained message past its expiry is no longer sent to new subscribers.
def test_retained_message_expires(broker, cid):
    pub = connect(broker.port, cid("p"), 5)
    pub.send(p.gen_publish("ex/r", 0, b"old", retain=True, proto_ver=5,
                           properties=[(p.MESSAGE_EXPIRY_INTERVAL, 1)]))
    pub.expect_nothing(2.2)  # let the 1 s expiry pass
    sub = connect(broker.port, cid("s"), 5)
    subscribe(sub, "ex/r", 0)
    sub.ping()


# MQTT-3.1.3-9 / 3.1.2.5: reconnecting before the will delay has passed cancels the will.
def test_will_delay_cancelled_by_reconnect(broker, cid):
    watcher = connect(broker.port, cid("w"), 5)
    subscribe(watcher, "ex/will", 0)
    client_id = cid("c")
    client = connect(broker.port, client_id, 5, clean=False, will_topic="ex/will", will_payload=b"w",
                     will_properties=[(p.WILL_DELAY_INTERVAL, 1)], properties=EXPIRY)
    client.close()
    client = connect(broker.port, client_id, 5, clean=False, properties=EXPIRY)
    assert client.connack["session_present"] == 1
    watcher.expect_nothing(2.2)  # past the 1 s will delay: still no will
