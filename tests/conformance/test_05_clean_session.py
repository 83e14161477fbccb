"""05-clean-session: session state across connections (3.1.1 clean session, v5 clean start + expiry)."""

import pytest

from tests.conformance import packets as p
from tests.conformance.wire import connect, expect_protocol_close, expect_publish, subscribe

EXPIRY = [(p.SESSION_EXPIRY_INTERVAL, 60)]


# MQTT-3.2.2-2/3: clean session 0 with a stored session: CONNACK session present 1.
def test_session_present_after_reconnect_v311(broker, cid):
    client_id = cid()
    connect(broker.port, client_id, 4, clean=False, connack=p.gen_connack(0, False)).close()
    connect(broker.port, client_id, 4, clean=False, connack=p.gen_connack(0, True)).ping()


# MQTT-3.1.2-6 / 3.2.2-1: clean session 1 discards the old session: session present 0, subscriptions gone.
def test_clean_session_discards_state_v311(broker, cid):
    client_id = cid("s")
    sub = connect(broker.port, client_id, 4, clean=False)
    subscribe(sub, "cs/discard", 1)
    sub.close()
    sub = connect(broker.port, client_id, 4, clean=True, connack=p.gen_connack(0, False))
    pub = connect(broker.port, cid("p"))
    pub.send(p.gen_publish("cs/discard", 1, b"x", mid=1))
    pub.expect(p.gen_puback(1))
    sub.expect_nothing()
    sub.close()
    # and the clean session did not leave anything behind either
    connect(broker.port, client_id, 4, clean=False, connack=p.gen_connack(0, False)).close()


# MQTT-3.1.2-4/5: a persistent session keeps subscriptions and queues QoS 1/2 messages while offline.
@pytest.mark.parametrize("ver", [3, 4])
def test_offline_messages_queued(broker, cid, ver):
    client_id = cid("s")
    sub = connect(broker.port, client_id, ver, clean=False)
    subscribe(sub, "cs/queue", 2, granted=[2])
    sub.send(p.gen_disconnect())
    sub.expect_closed()
    pub = connect(broker.port, cid("p"), ver)
    pub.send(p.gen_publish("cs/queue", 1, b"q1", mid=1))
    pub.expect(p.gen_puback(1))
    pub.send(p.gen_publish("cs/queue", 2, b"q2", mid=2))
    pub.expect(p.gen_pubrec(2))
    pub.send(p.gen_pubrel(2))
    pub.expect(p.gen_pubcomp(2))
    # MQTT 3.1 has no session present flag: that CONNACK byte is reserved (0)
    sub = connect(broker.port, client_id, ver, clean=False, connack=p.gen_connack(0, ver == 4))
    mid1 = expect_publish(sub, "cs/queue", b"q1", qos=1)
    mid2 = expect_publish(sub, "cs/queue", b"q2", qos=2)
    sub.send(p.gen_puback(mid1))
    sub.send(p.gen_pubrec(mid2))
    sub.expect(p.gen_pubrel(mid2))
    sub.send(p.gen_pubcomp(mid2))


# MQTT 3.1.2.4: QoS 0 messages for an offline session are not queued (Mosquitto's default, queue_qos0_messages false).
def test_offline_qos0_not_queued(broker, cid):
    client_id = cid("s")
    sub = connect(broker.port, client_id, 4, clean=False)
    subscribe(sub, "cs/q0", 1)
    sub.send(p.gen_disconnect())
    sub.expect_closed()
    pub = connect(broker.port, cid("p"))
    pub.send(p.gen_publish("cs/q0", 0, b"lost"))
    pub.send(p.gen_publish("cs/q0", 1, b"kept", mid=1))
    pub.expect(p.gen_puback(1))
    sub = connect(broker.port, client_id, 4, clean=False, connack=p.gen_connack(0, True))
    expect_publish(sub, "cs/q0", b"kept", qos=1)


# MQTT 5.0 3.1.2.11.2: v5 clean start 0 with session expiry 0 (absent): the session ends with the connection.
def test_v5_session_expiry_zero_not_kept(broker, cid):
    client_id = cid()
    conn = connect(broker.port, client_id, 5, clean=False)
    assert conn.connack["session_present"] == 0
    conn.send(p.gen_disconnect(0, 5))
    conn.expect_closed()
    conn = connect(broker.port, client_id, 5, clean=False)
    assert conn.connack["session_present"] == 0


# MQTT-3.2.2-2 (v5): clean start 0 and a session kept by its expiry interval: session present 1, subscriptions kept.
def test_v5_session_kept_with_expiry(broker, cid):
    client_id = cid("s")
    sub = connect(broker.port, client_id, 5, clean=False, properties=EXPIRY)
    subscribe(sub, "cs/v5keep", 1)
    sub.send(p.gen_disconnect(0, 5))
    sub.expect_closed()
    pub = connect(broker.port, cid("p"), 5)
    pub.send(p.gen_publish("cs/v5keep", 1, b"k", mid=1, proto_ver=5))
    pub.expect(p.gen_puback(1, 5))
    sub = connect(broker.port, client_id, 5, clean=False, properties=EXPIRY)
    assert sub.connack["session_present"] == 1
    expect_publish(sub, "cs/v5keep", b"k", qos=1)


# MQTT-3.1.2-4 (v5): clean start 1 discards an existing session: session present 0.
def test_v5_clean_start_discards(broker, cid):
    client_id = cid()
    connect(broker.port, client_id, 5, clean=False, properties=EXPIRY).close()
    conn = connect(broker.port, client_id, 5, clean=True, properties=EXPIRY)
    assert conn.connack["session_present"] == 0


# MQTT 5.0 3.14.2.2.2: DISCONNECT may set a new session expiry when CONNECT had a non-zero one.
def test_v5_disconnect_sets_session_expiry(broker, cid):
    client_id = cid()
    conn = connect(broker.port, client_id, 5, clean=False, properties=EXPIRY)
    conn.send(p.gen_disconnect(0, 5, properties=[(p.SESSION_EXPIRY_INTERVAL, 0)]))
    conn.expect_closed()
    conn = connect(broker.port, client_id, 5, clean=False, properties=EXPIRY)
    assert conn.connack["session_present"] == 0


# MQTT-3.14.2-2: DISCONNECT with a non-zero session expiry after CONNECT had 0 is a protocol error.
def test_v5_disconnect_session_expiry_after_zero(broker, cid):
    conn = connect(broker.port, cid(), 5)
    conn.send(p.gen_disconnect(0, 5, properties=[(p.SESSION_EXPIRY_INTERVAL, 30)]))
    expect_protocol_close(conn, codes=(0x82,))


# MQTT 3.1.2.4 / 4.1: a 3.1.1 persistent session is kept after a v3 network drop as well.
def test_session_kept_after_network_drop(broker, cid):
    client_id = cid("s")
    sub = connect(broker.port, client_id, 4, clean=False)
    subscribe(sub, "cs/drop", 1)
    sub.close()
    sub = connect(broker.port, client_id, 4, clean=False, connack=p.gen_connack(0, True))
    pub = connect(broker.port, cid("p"))
    pub.send(p.gen_publish("cs/drop", 1, b"d", mid=1))
    expect_publish(sub, "cs/drop", b"d", qos=1)


# MQTT 4.1 / 3.1.2.4: a session can move between protocol versions: a 3.1.1 session resumed by v5 keeps subscriptions.
def test_session_resumed_across_versions(broker, cid):
    client_id = cid("s")
    sub = connect(broker.port, client_id, 4, clean=False)
    subscribe(sub, "cs/cross", 1)
    sub.close()
    sub = connect(broker.port, client_id, 5, clean=False, properties=EXPIRY)
    assert sub.connack["session_present"] == 1
    pub = connect(broker.port, cid("p"))
    pub.send(p.gen_publish("cs/cross", 1, b"c", mid=1))
    expect_publish(sub, "cs/cross", b"c", qos=1)


# MQTT-3.1.4-2/3 + 4.4.0-1: taking over a persistent session keeps it: session present 1 and unacknowledged messages re-sent.
def test_takeover_keeps_persistent_session(broker, cid):
    client_id = cid("s")
    first = connect(broker.port, client_id, 4, clean=False)
    subscribe(first, "cs/take", 1)
    pub = connect(broker.port, cid("p"))
    pub.send(p.gen_publish("cs/take", 1, b"t", mid=1))
    mid = expect_publish(first, "cs/take", b"t", qos=1)
    second = connect(broker.port, client_id, 4, clean=False, connack=p.gen_connack(0, True))
    first.expect_closed()
    assert expect_publish(second, "cs/take", b"t", qos=1, dup=True) == mid
