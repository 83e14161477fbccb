"""11-sys: the $SYS tree as Mosquitto 2.0 publishes it (reference section 6): retained,
only reachable by explicit $SYS filters, not writable by clients."""

import re

from tests.conformance import packets as p
from tests.conformance.wire import connect, expect_publish, subscribe


# $SYS/broker/uptime is retained and reads "<N> seconds".
def test_sys_uptime_retained(broker, cid):
    conn = connect(broker.port, cid())
    subscribe(conn, "$SYS/broker/uptime", 0)
    got = conn.receive()
    assert got["type"] == "PUBLISH" and got["retain"] and got["topic"] == b"$SYS/broker/uptime", got
    assert re.fullmatch(rb"\d+ seconds", got["payload"]), got


# $SYS/broker/version is retained at start-up and names the broker and its version.
def test_sys_version_retained(broker, cid):
    conn = connect(broker.port, cid())
    subscribe(conn, "$SYS/broker/version", 0)
    got = conn.receive()
    assert got["type"] == "PUBLISH" and got["retain"] and got["topic"] == b"$SYS/broker/version", got
    assert re.fullmatch(rb"\S+ version \S+", got["payload"]), got


# $SYS messages are delivered at the granted QoS (stored at QoS 2): a QoS 1 subscription gets QoS 1.
def test_sys_granted_qos(broker, cid):
    conn = connect(broker.port, cid())
    subscribe(conn, "$SYS/broker/version", 1)
    got = conn.receive()
    assert got["qos"] == 1 and got["retain"], got
    conn.send(p.gen_puback(got["mid"]))


# MQTT-4.7.2-1: "#" does not deliver $SYS messages; "$SYS/#" does.
def test_sys_needs_explicit_filter(broker, cid):
    conn = connect(broker.port, cid())
    subscribe(conn, "#", 0, mid=1)
    conn.ping()  # no retained $SYS message arrived before the PINGRESP
    subscribe(conn, "$SYS/#", 0, mid=2)
    got = conn.receive()
    assert got["type"] == "PUBLISH" and got["topic"].startswith(b"$SYS/") and got["retain"], got


# Mosquitto refuses client writes below $SYS: the QoS 1 flow completes but nothing is delivered.
def test_client_cannot_publish_to_sys(broker, cid):
    sub = connect(broker.port, cid("s"))
    subscribe(sub, "$SYS/conformance/+", 0)
    pub = connect(broker.port, cid("p"))
    pub.send(p.gen_publish("$SYS/conformance/x", 1, b"fake", mid=1))
    got = pub.receive()
    assert got["type"] == "PUBACK" and got["mid"] == 1, got
    subscribe(sub, "conformance/marker", 0, mid=2)  # a delivered fake would arrive before this SUBACK
    pub.send(p.gen_publish("conformance/marker", 0, b"m"))
    expect_publish(sub, "conformance/marker", b"m")
