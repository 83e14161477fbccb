"""10-listener: per-listener options (mount_point, max_connections, max_qos, max_topic_alias,
IPv6) and the global limits a v5 CONNACK advertises (retain_available, max_keepalive,
max_packet_size, message_size_limit). Expected values are Mosquitto's, where the spec
leaves the server a choice."""

import pytest

from tests.conformance import packets as p
from tests.conformance.wire import Conn, expect_publish, subscribe
from tests.conformance.wire import connect as _connect

CONFIG = "retain_available false\nmax_keepalive 30\nmax_packet_size 300\nmessage_size_limit 100\n"
EXTRA_LISTENERS = {
    "mount": "mount_point mp/\n",
    "maxconn": "max_connections 1\n",
    "qos1": "max_qos 1\n",
    "v6": ("::1", "max_topic_alias 0\n"),
}


def connect(port, client_id, ver=4, **kwargs):
    """Mosquitto 2.0.12+ refuses a 3.x keepalive above max_keepalive (CONNACK 2): stay below it."""
    if ver != 5:
        kwargs.setdefault("keepalive", 20)
    return _connect(port, client_id, ver, **kwargs)


LIMITS = [(p.SERVER_KEEP_ALIVE, 30), (p.RECEIVE_MAXIMUM, 20), (p.RETAIN_AVAILABLE, 0), (p.MAXIMUM_PACKET_SIZE, 300)]


# MQTT 5.0 3.2.2.3: the v5 CONNACK advertises the configured limits (keep alive 30 < 60 asked, retain unavailable, max packet size).
def test_v5_connack_advertises_limits(broker, cid):
    expected = p.gen_connack(0, proto_ver=5, properties=LIMITS + [(p.TOPIC_ALIAS_MAXIMUM, 10)])
    connect(broker.port, cid(), 5, connack=expected, keepalive=60).ping()


# MQTT-3.1.2-21 / 3.2.2.3.14: a keepalive of 0 is overridden by the Server Keep Alive when max_keepalive is set.
def test_v5_keepalive_zero_gets_server_keep_alive(broker, cid):
    conn = connect(broker.port, cid(), 5, keepalive=0)
    assert dict(conn.connack["props"])[p.SERVER_KEEP_ALIVE] == 30


# MQTT 5.0 3.3.1.3 / 3.2.2.3.5: a retained PUBLISH when retain is unavailable: DISCONNECT 0x9A.
def test_v5_retain_unavailable(broker, cid):
    conn = connect(broker.port, cid(), 5)
    conn.send(p.gen_publish("l/r", 0, b"x", retain=True, proto_ver=5))
    conn.expect_disconnect(0x9A)


# retain_available false (Mosquitto): a 3.1.1 client publishing retained is disconnected.
def test_v311_retain_unavailable(broker, cid):
    conn = connect(broker.port, cid(), 4)
    conn.send(p.gen_publish("l/r", 0, b"x", retain=True))
    conn.expect_closed(probe=True)


# MQTT-3.2.2-15 (4.13): a packet above the advertised Maximum Packet Size: DISCONNECT 0x95.
def test_v5_packet_too_large(broker, cid):
    conn = connect(broker.port, cid(), 5)
    conn.send(p.gen_publish("l/big", 0, b"x" * 400, proto_ver=5))
    conn.expect_disconnect(0x95)


# max_packet_size (Mosquitto): a 3.1.1 client sending a larger packet is disconnected.
def test_v311_packet_too_large(broker, cid):
    conn = connect(broker.port, cid(), 4)
    conn.send(p.gen_publish("l/big", 0, b"x" * 400))
    conn.expect_closed(probe=True)


# message_size_limit (Mosquitto): an oversize QoS 1/2 payload is dropped but acknowledged; v5 gets reason 0x95 (2.0.11) or 0x83 (2.0.20).
@pytest.mark.parametrize("qos", [1, 2])
def test_v5_message_size_limit(broker, cid, qos):
    sub = connect(broker.port, cid("s"), 5)
    subscribe(sub, "l/msl", 1)
    conn = connect(broker.port, cid(), 5)
    conn.send(p.gen_publish("l/msl", qos, b"x" * 150, mid=1, proto_ver=5))
    got = conn.receive()
    assert got["type"] == ("PUBACK" if qos == 1 else "PUBREC") and got["mid"] == 1, got
    assert got["rc"] in (0x83, 0x95), got
    sub.expect_nothing()


# message_size_limit (Mosquitto): 3.1.1 gets a plain PUBACK and the message is dropped.
def test_v311_message_size_limit(broker, cid):
    sub = connect(broker.port, cid("s"))
    subscribe(sub, "l/msl4", 1)
    conn = connect(broker.port, cid())
    conn.send(p.gen_publish("l/msl4", 1, b"x" * 150, mid=1))
    conn.expect(p.gen_puback(1))
    conn.send(p.gen_publish("l/msl4", 1, b"small", mid=2))
    conn.expect(p.gen_puback(2))
    expect_publish(sub, "l/msl4", b"small", qos=1)


# mount_point: a client on that listener publishes under the prefix and sees topics without it.
@pytest.mark.mosquitto_bug("2.0.11 sends the mount point prefix to clients of the mounted listener")
def test_mount_point(broker, cid):
    outside = connect(broker.port, cid("o"))
    subscribe(outside, "mp/l/+", 0)
    inside = connect(broker.ports["mount"], cid("i"))
    subscribe(inside, "l/+", 0)
    inside.send(p.gen_publish("l/in", 0, b"from-inside"))
    expect_publish(outside, "mp/l/in", b"from-inside")
    expect_publish(inside, "l/in", b"from-inside")
    outside.send(p.gen_publish("mp/l/out", 0, b"from-outside"))
    expect_publish(inside, "l/out", b"from-outside")
    outside.send(p.gen_publish("l/out", 0, b"not-mounted"))
    expect_publish(outside, "mp/l/out", b"from-outside")
    inside.ping()  # "l/out" outside the mount point never reached the inside client


# max_connections 1: a second client on the listener is closed without a CONNACK.
def test_max_connections(broker, cid):
    first = connect(broker.ports["maxconn"], cid("a"))
    second = Conn(broker.ports["maxconn"])
    try:
        second.send(p.gen_connect(cid("b")))
    except OSError:
        pass
    second.expect_closed()
    first.ping()


# MQTT 5.0 3.2.2.3.4: max_qos 1 is advertised as Maximum QoS 1.
def test_v5_maximum_qos_advertised(broker, cid):
    conn = connect(broker.ports["qos1"], cid(), 5)
    assert dict(conn.connack["props"]).get(p.MAXIMUM_QOS) == 1, conn.connack


# MQTT-3.2.2-11 / 3.3.1.2: a QoS 2 PUBLISH above the advertised Maximum QoS: DISCONNECT 0x9B.
def test_v5_publish_above_maximum_qos(broker, cid):
    conn = connect(broker.ports["qos1"], cid(), 5)
    conn.send(p.gen_publish("l/q2", 2, b"x", mid=1, proto_ver=5))
    conn.expect_disconnect(0x9B)


# max_qos (Mosquitto): a 3.1.1 client publishing above it is disconnected.
def test_v311_publish_above_maximum_qos(broker, cid):
    conn = connect(broker.ports["qos1"], cid())
    conn.send(p.gen_publish("l/q2", 2, b"x", mid=1))
    conn.expect_closed(probe=True)


# MQTT-3.2.2-10 / 3.9.3: a subscription asking for QoS 2 is granted max_qos (1).
@pytest.mark.parametrize("ver", [4, 5])
def test_subscribe_granted_maximum_qos(broker, cid, ver):
    conn = connect(broker.ports["qos1"], cid(), ver)
    conn.send(p.gen_subscribe(1, "l/g", 2, ver))
    conn.expect(p.gen_suback(1, [1], ver))


# MQTT 5.0 3.2.2.3.8: with max_topic_alias 0 no Topic Alias Maximum is sent and any alias is invalid (0x94); over IPv6.
def test_v6_listener_topic_alias_disabled(broker, cid):
    conn = Conn(broker.ports["v6"], 5, host="::1")
    conn.send(p.gen_connect(cid(), proto_ver=5))
    connack = conn.receive()
    assert connack["type"] == "CONNACK" and connack["rc"] == 0, connack
    assert p.TOPIC_ALIAS_MAXIMUM not in dict(connack["props"]), connack
    conn.send(p.gen_publish("l/a", 0, b"x", proto_ver=5, properties=[(p.TOPIC_ALIAS, 1)]))
    conn.expect_disconnect(0x94)
