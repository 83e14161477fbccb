"""03-publish-qos: QoS 1 and 2 flows in both directions, packet ids, DUP, flow control."""

import pytest

from tests.conformance import packets as p
from tests.conformance.wire import connect, expect_protocol_close, expect_publish, subscribe

VERSIONS = pytest.mark.parametrize("ver", [3, 4, 5])


def _complete_qos2_publish(pub, mid: int) -> None:
    pub.expect(p.gen_pubrec(mid))
    pub.send(p.gen_pubrel(mid))
    pub.expect(p.gen_pubcomp(mid))


# MQTT-4.3.2-4 (3.1.1 numbering 4.3.2-2): a QoS 1 PUBLISH is acknowledged with PUBACK carrying its packet id.
@VERSIONS
def test_qos1_publish_puback(broker, cid, ver):
    sub = connect(broker.port, cid("s"), ver)
    subscribe(sub, "q/1", 1)  # a subscriber exists, so v5 gets reason 0x00
    conn = connect(broker.port, cid(), ver)
    conn.send(p.gen_publish("q/1", 1, b"m", mid=0x1234, proto_ver=ver))
    conn.expect(p.gen_puback(0x1234, ver))


# MQTT-4.3.3-2/3 (3.1.1 numbering): QoS 2 receive: PUBREC, then PUBCOMP for the PUBREL.
@VERSIONS
def test_qos2_publish_flow(broker, cid, ver):
    sub = connect(broker.port, cid("s"), ver)
    subscribe(sub, "q/2", 0)
    conn = connect(broker.port, cid(), ver)
    conn.send(p.gen_publish("q/2", 2, b"m", mid=0x0102, proto_ver=ver))
    conn.expect(p.gen_pubrec(0x0102, ver))
    conn.send(p.gen_pubrel(0x0102, ver))
    conn.expect(p.gen_pubcomp(0x0102, ver))


# MQTT-4.3.3-2 / 4.3.3 method B: a re-sent QoS 2 PUBLISH (DUP) before PUBREL gets another PUBREC and is delivered once.
@pytest.mark.parametrize("ver", [4, 5])
def test_qos2_duplicate_publish_delivered_once(broker, cid, ver):
    sub = connect(broker.port, cid("s"), ver)
    subscribe(sub, "q/dup", 0)
    pub = connect(broker.port, cid("p"), ver)
    pub.send(p.gen_publish("q/dup", 2, b"once", mid=7, proto_ver=ver))
    pub.expect(p.gen_pubrec(7, ver))
    pub.send(p.gen_publish("q/dup", 2, b"once", mid=7, dup=True, proto_ver=ver))
    pub.expect(p.gen_pubrec(7, ver))
    pub.send(p.gen_pubrel(7, ver))
    pub.expect(p.gen_pubcomp(7, ver))
    expect_publish(sub, "q/dup", b"once")
    sub.ping()  # no second copy before the PINGRESP


# MQTT-2.3.1-3 / 4.3.3: once PUBCOMP is sent the packet id is free: a new PUBLISH with it is a new message.
def test_qos2_packet_id_reuse_after_pubcomp(broker, cid):
    sub = connect(broker.port, cid("s"))
    subscribe(sub, "q/reuse", 0)
    pub = connect(broker.port, cid("p"))
    for payload in (b"first", b"second"):
        pub.send(p.gen_publish("q/reuse", 2, payload, mid=3))
        _complete_qos2_publish(pub, 3)
        expect_publish(sub, "q/reuse", payload)


# MQTT-4.3.2 / 2.3.1-2: QoS 1 packet ids can be reused once acknowledged; each message is delivered.
def test_qos1_packet_id_reuse(broker, cid):
    sub = connect(broker.port, cid("s"))
    subscribe(sub, "q/reuse1", 0)
    pub = connect(broker.port, cid("p"))
    for payload in (b"a", b"b", b"c"):
        pub.send(p.gen_publish("q/reuse1", 1, payload, mid=1))
        pub.expect(p.gen_puback(1))
        expect_publish(sub, "q/reuse1", payload)


# MQTT-4.3.3-11 (v5) / 4.3.3: a PUBREL for an unknown packet id still gets a PUBCOMP with that id.
def test_pubrel_unknown_packet_id_v311(broker, cid):
    conn = connect(broker.port, cid())
    conn.send(p.gen_pubrel(77))
    conn.expect(p.gen_pubcomp(77))


# MQTT 5.0 3.7.2.1: the PUBCOMP for an unknown PUBREL is 0x00 or 0x92 (packet identifier not found).
def test_pubrel_unknown_packet_id_v5(broker, cid):
    conn = connect(broker.port, cid(), 5)
    conn.send(p.gen_pubrel(77, 5))
    got = conn.receive()
    assert got["type"] == "PUBCOMP" and got["mid"] == 77 and got["rc"] in (0x00, 0x92), got


# MQTT-3.6.1-1: PUBREL fixed header flags must be 0010.
def test_pubrel_bad_flags(broker, cid):
    conn = connect(broker.port, cid())
    conn.send(p.packet(0x60, b"\x00\x07"))
    conn.expect_closed(probe=True)


# MQTT 4.3.2: a PUBACK for a packet id the server never used is ignored; the connection stays usable.
@pytest.mark.parametrize("ver", [4, 5])
def test_unexpected_puback_ignored(broker, cid, ver):
    conn = connect(broker.port, cid(), ver)
    conn.send(p.gen_puback(99, ver))
    conn.ping()


# MQTT-4.3.2-1/3: outgoing QoS 1: PUBLISH with a non-zero id, completed by the client's PUBACK.
@VERSIONS
def test_outgoing_qos1(broker, cid, ver):
    sub = connect(broker.port, cid("s"), ver)
    subscribe(sub, "q/out1", 1)
    pub = connect(broker.port, cid("p"), ver)
    pub.send(p.gen_publish("q/out1", 1, b"o", mid=1, proto_ver=ver))
    mid = expect_publish(sub, "q/out1", b"o", qos=1)
    sub.send(p.gen_puback(mid, ver))
    sub.ping()


# MQTT-4.3.3-1/3: outgoing QoS 2: PUBLISH, client PUBREC, server PUBREL (flags 0010), client PUBCOMP.
@VERSIONS
def test_outgoing_qos2(broker, cid, ver):
    sub = connect(broker.port, cid("s"), ver)
    subscribe(sub, "q/out2", 2)
    pub = connect(broker.port, cid("p"), ver)
    pub.send(p.gen_publish("q/out2", 2, b"o", mid=1, proto_ver=ver))
    _complete_qos2_publish(pub, 1)
    mid = expect_publish(sub, "q/out2", b"o", qos=2)
    sub.send(p.gen_pubrec(mid, ver))
    sub.expect(p.gen_pubrel(mid, ver))
    sub.send(p.gen_pubcomp(mid, ver))
    sub.ping()


# MQTT-2.3.1-2: unacknowledged outgoing QoS 1 messages use distinct packet ids.
def test_outgoing_packet_ids_distinct(broker, cid):
    sub = connect(broker.port, cid("s"))
    subscribe(sub, "q/ids", 1)
    pub = connect(broker.port, cid("p"))
    for i in range(1, 6):
        pub.send(p.gen_publish("q/ids", 1, str(i).encode(), mid=i))
    mids = [expect_publish(sub, "q/ids", str(i).encode(), qos=1) for i in range(1, 6)]
    assert len(set(mids)) == 5, mids


# MQTT-4.4.0-1 / 3.3.1-1: unacknowledged QoS 1 is re-sent on reconnect with DUP 1 and the same packet id.
@pytest.mark.parametrize("ver", [4, 5])
def test_qos1_redelivered_with_dup_on_reconnect(broker, cid, ver):
    client_id = cid("s")
    session = {"clean": False} if ver == 4 else {"clean": False, "properties": [(p.SESSION_EXPIRY_INTERVAL, 60)]}
    sub = connect(broker.port, client_id, ver, **session)
    subscribe(sub, "q/redo1", 1)
    pub = connect(broker.port, cid("p"), ver)
    pub.send(p.gen_publish("q/redo1", 1, b"again", mid=1, proto_ver=ver))
    mid = expect_publish(sub, "q/redo1", b"again", qos=1)
    sub.close()
    sub = connect(broker.port, client_id, ver, **session)
    assert sub.connack["session_present"] == 1
    assert expect_publish(sub, "q/redo1", b"again", qos=1, dup=True) == mid
    sub.send(p.gen_puback(mid, ver))


# MQTT-4.4.0-1: an unacknowledged outgoing QoS 2 PUBLISH is re-sent on reconnect with DUP 1.
def test_qos2_publish_redelivered_with_dup(broker, cid):
    client_id = cid("s")
    sub = connect(broker.port, client_id, 4, clean=False)
    subscribe(sub, "q/redo2", 2)
    pub = connect(broker.port, cid("p"))
    pub.send(p.gen_publish("q/redo2", 2, b"again", mid=1))
    _complete_qos2_publish(pub, 1)
    mid = expect_publish(sub, "q/redo2", b"again", qos=2)
    sub.close()
    sub = connect(broker.port, client_id, 4, clean=False, connack=p.gen_connack(0, True))
    assert expect_publish(sub, "q/redo2", b"again", qos=2, dup=True) == mid


# MQTT-4.4.0-1 / 4.3.3: after the client's PUBREC, a reconnect re-sends the PUBREL, not the PUBLISH.
def test_qos2_pubrel_resent_on_reconnect(broker, cid):
    client_id = cid("s")
    sub = connect(broker.port, client_id, 4, clean=False)
    subscribe(sub, "q/rel", 2)
    pub = connect(broker.port, cid("p"))
    pub.send(p.gen_publish("q/rel", 2, b"x", mid=1))
    _complete_qos2_publish(pub, 1)
    mid = expect_publish(sub, "q/rel", b"x", qos=2)
    sub.send(p.gen_pubrec(mid))
    sub.expect(p.gen_pubrel(mid))
    sub.close()
    sub = connect(broker.port, client_id, 4, clean=False, connack=p.gen_connack(0, True))
    sub.expect(p.gen_pubrel(mid))
    sub.send(p.gen_pubcomp(mid))
    sub.ping()


# MQTT-3.3.4-9: the server sends no more unacknowledged QoS 1/2 PUBLISHes than the client's Receive Maximum.
def test_v5_client_receive_maximum_respected(broker, cid):
    sub = connect(broker.port, cid("s"), 5, properties=[(p.RECEIVE_MAXIMUM, 1)])
    subscribe(sub, "q/rm", 1)
    pub = connect(broker.port, cid("p"), 5)
    for i in range(1, 4):
        pub.send(p.gen_publish("q/rm", 1, str(i).encode(), mid=i, proto_ver=5))
        pub.expect(p.gen_puback(i, 5))
    for i in range(1, 4):
        mid = expect_publish(sub, "q/rm", str(i).encode(), qos=1)
        sub.expect_nothing()
        sub.send(p.gen_puback(mid, 5))


# MQTT-3.3.4-7/8 and 4.9: more unacknowledged QoS 2 PUBLISHes than the server's Receive Maximum (20): DISCONNECT 0x93.
@pytest.mark.mosquitto_bug("2.0.11 answers the 21st with PUBREC 0x97 and keeps the connection")
def test_v5_server_receive_maximum_exceeded(broker, cid):
    sub = connect(broker.port, cid("s"), 5)
    subscribe(sub, "q/rmx", 0)  # so that every PUBREC is a plain success
    conn = connect(broker.port, cid(), 5)
    receive_maximum = dict(conn.connack["props"]).get(p.RECEIVE_MAXIMUM, 65535)
    assert receive_maximum == 20
    conn.send(b"".join(p.gen_publish("q/rmx", 2, b"x", mid=i, proto_ver=5) for i in range(1, 22)))
    for i in range(1, 21):
        conn.expect(p.gen_pubrec(i, 5))
    conn.expect_disconnect(0x93)


# MQTT 5.0 3.4.2.1: a QoS 1 PUBLISH nobody subscribes to: PUBACK 0x10 "no matching subscribers" (Mosquitto's choice).
def test_v5_puback_no_matching_subscribers(broker, cid):
    conn = connect(broker.port, cid(), 5)
    conn.send(p.gen_publish("q/nobody", 1, b"x", mid=5, proto_ver=5))
    conn.expect(p.gen_puback(5, 5, reason_code=0x10))


# MQTT 5.0 3.5.2.1: a QoS 2 PUBLISH nobody subscribes to: Mosquitto answers PUBREC 0x00 (0x10 is also allowed).
def test_v5_pubrec_no_matching_subscribers(broker, cid):
    conn = connect(broker.port, cid(), 5)
    conn.send(p.gen_publish("q/nobody2", 2, b"x", mid=5, proto_ver=5))
    got = conn.receive()
    assert got["type"] == "PUBREC" and got["mid"] == 5 and got["rc"] in (0x00, 0x10), got


# MQTT-3.3.1-3: the DUP flag of an incoming PUBLISH is not propagated to subscribers.
def test_incoming_dup_not_propagated(broker, cid):
    sub = connect(broker.port, cid("s"))
    subscribe(sub, "q/dupflag", 1)
    pub = connect(broker.port, cid("p"))
    pub.send(p.gen_publish("q/dupflag", 1, b"d", mid=4, dup=True))
    pub.expect(p.gen_puback(4))
    expect_publish(sub, "q/dupflag", b"d", qos=1, dup=False)


# MQTT 4.3.1: QoS 0 messages are never acknowledged.
def test_qos0_not_acknowledged(broker, cid):
    conn = connect(broker.port, cid())
    conn.send(p.gen_publish("q/zero", 0, b"x"))
    conn.ping()  # the first packet back is the PINGRESP, no ack


# MQTT-4.4.0-1 / 4.3.3: an incoming QoS 2 flow survives a reconnect: the PUBREL on the new connection completes it.
def test_incoming_qos2_completed_after_reconnect(broker, cid):
    sub = connect(broker.port, cid("s"))
    subscribe(sub, "q/in2", 0)
    client_id = cid("p")
    pub = connect(broker.port, client_id, 4, clean=False)
    pub.send(p.gen_publish("q/in2", 2, b"held", mid=11))
    pub.expect(p.gen_pubrec(11))
    pub.close()
    pub = connect(broker.port, client_id, 4, clean=False, connack=p.gen_connack(0, True))
    pub.send(p.gen_pubrel(11))
    pub.expect(p.gen_pubcomp(11))
    expect_publish(sub, "q/in2", b"held")
    sub.ping()


# Mosquitto max_inflight_messages (default 20) for 3.1.1: at most 20 unacknowledged QoS 1 messages; the rest wait.
def test_v311_max_inflight_messages(broker, cid):
    sub = connect(broker.port, cid("s"))
    subscribe(sub, "q/inflight", 1)
    pub = connect(broker.port, cid("p"))
    pub.send(b"".join(p.gen_publish("q/inflight", 1, str(i).encode(), mid=i) for i in range(1, 26)))
    for i in range(1, 26):
        pub.expect(p.gen_puback(i))
    mids = [expect_publish(sub, "q/inflight", str(i).encode(), qos=1) for i in range(1, 21)]
    sub.expect_nothing()
    sub.send(p.gen_puback(mids[0]))
    expect_publish(sub, "q/inflight", b"21", qos=1)


# MQTT-3.3.4-9: a QoS 2 message counts against the client's Receive Maximum until its PUBCOMP, not its PUBREC.
def test_v5_receive_maximum_counts_until_pubcomp(broker, cid):
    sub = connect(broker.port, cid("s"), 5, properties=[(p.RECEIVE_MAXIMUM, 1)])
    subscribe(sub, "q/rm2", 2)
    pub = connect(broker.port, cid("p"), 5)
    for i in (1, 2):
        pub.send(p.gen_publish("q/rm2", 2, str(i).encode(), mid=i, proto_ver=5))
        _complete_qos2_publish(pub, i)
    mid = expect_publish(sub, "q/rm2", b"1", qos=2)
    sub.send(p.gen_pubrec(mid, 5))
    sub.expect(p.gen_pubrel(mid, 5))
    sub.expect_nothing()
    sub.send(p.gen_pubcomp(mid, 5))
    expect_publish(sub, "q/rm2", b"2", qos=2)


# MQTT 3.3.1.3 / 4.3.3: a retained QoS 2 message is stored at QoS 2 and sent at QoS 2 to a QoS 2 subscriber.
def test_retained_qos2(broker, cid):
    pub = connect(broker.port, cid("p"))
    pub.send(p.gen_publish("q/ret2", 2, b"r2", retain=True, mid=1))
    _complete_qos2_publish(pub, 1)
    sub = connect(broker.port, cid("s"))
    subscribe(sub, "q/ret2", 2)
    mid = expect_publish(sub, "q/ret2", b"r2", qos=2, retain=True)
    sub.send(p.gen_pubrec(mid))
    sub.expect(p.gen_pubrel(mid))
    sub.send(p.gen_pubcomp(mid))
    pub.send(p.gen_publish("q/ret2", 0, b"", retain=True))
    pub.ping()


# MQTT-4.3.3-4 (v5): the sender sends PUBREL only for a PUBREC below 0x80; an error PUBREC ends the flow.
def test_v5_error_pubrec_ends_flow(broker, cid):
    sub = connect(broker.port, cid("s"), 5)
    subscribe(sub, "q/recerr", 2)
    pub = connect(broker.port, cid("p"), 5)
    pub.send(p.gen_publish("q/recerr", 2, b"x", mid=1, proto_ver=5))
    _complete_qos2_publish(pub, 1)
    mid = expect_publish(sub, "q/recerr", b"x", qos=2)
    sub.send(p.gen_pubrec(mid, 5, reason_code=0x80))
    sub.ping()  # no PUBREL before the PINGRESP
    pub.send(p.gen_publish("q/recerr", 2, b"next", mid=2, proto_ver=5))
    _complete_qos2_publish(pub, 2)
    expect_publish(sub, "q/recerr", b"next", qos=2)
