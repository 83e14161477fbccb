"""01-connect: CONNECT / CONNACK, protocol levels, flags, client ids, takeover, keepalive."""

import pytest

from tests.conformance import packets as p
from tests.conformance.wire import Conn, connect, expect_connect_refused, expect_protocol_close

V5_CONNACK = p.gen_connack(0, proto_ver=5, properties=[(p.TOPIC_ALIAS_MAXIMUM, 10), (p.RECEIVE_MAXIMUM, 20)])


# MQTT-3.2.2-2 / 3.2.2.3: a clean 3.1.1 connect gets CONNACK 0, session present 0.
def test_connect_v311_accepted(broker, cid):
    conn = connect(broker.port, cid(), 4, connack=p.gen_connack(0))
    conn.ping()


# MQTT 3.1 (protocol name "MQIsdp", level 3) is still served, with a 3.1 CONNACK.
def test_connect_v31_accepted(broker, cid):
    conn = connect(broker.port, cid(), 3, connack=p.gen_connack(0))
    conn.ping()


# MQTT 5.0 3.2.2.3: CONNACK 0 with Mosquitto's defaults advertised (topic alias maximum 10, receive maximum 20).
def test_connect_v5_accepted_with_default_properties(broker, cid):
    conn = connect(broker.port, cid(), 5, connack=V5_CONNACK)
    conn.ping()


# MQTT-3.1.2-2: an unsupported protocol level gets CONNACK 0x01 then a close (3.1.1 form, the client's version is unknown).
@pytest.mark.parametrize("level", [2, 6, 0x7F])
def test_connect_unsupported_protocol_level(broker, cid, level):
    conn = Conn(broker.port)
    conn.send(p.gen_connect(cid(), proto_ver=level, proto_name="MQTT"))
    conn.expect(p.gen_connack(1))
    conn.expect_closed()


# MQTT-3.1.2-2: "MQIsdp" with level 4 is not a supported combination: CONNACK 0x01.
def test_connect_v31_name_with_level_4(broker, cid):
    conn = Conn(broker.port)
    conn.send(p.gen_connect(cid(), proto_ver=4, proto_name="MQIsdp"))
    conn.expect(p.gen_connack(1))
    conn.expect_closed()


# MQTT-3.1.2-1: a wrong protocol name: the server may close without CONNACK.
def test_connect_bad_protocol_name(broker, cid):
    conn = Conn(broker.port)
    conn.send(p.gen_connect(cid(), proto_name="MQTX"))
    conn.expect_closed()


# MQTT-3.1.2-3: the reserved CONNECT flag bit must be 0, else the server disconnects.
@pytest.mark.parametrize("ver", [4, 5])
def test_connect_reserved_flag_set(broker, cid, ver):
    conn = Conn(broker.port, ver)
    conn.send(p.gen_connect(cid(), proto_ver=ver, extra_flags=0x01))
    expect_connect_refused(conn)


# MQTT-3.1.2-22 (3.1.1): password flag without username flag is a protocol violation.
def test_connect_v311_password_without_username(broker, cid):
    conn = Conn(broker.port)
    conn.send(p.gen_connect(cid(), password="secret"))
    conn.expect_closed()


# MQTT 5.0 3.1.2.9: v5 allows a password without a user name (anonymous allowed here).
def test_connect_v5_password_without_username(broker, cid):
    connect(broker.port, cid(), 5, connack=V5_CONNACK, password="secret").ping()


# MQTT-3.1.2-14: will QoS 3 is invalid.
@pytest.mark.parametrize("ver", [4, 5])
def test_connect_will_qos_3(broker, cid, ver):
    conn = Conn(broker.port, ver)
    conn.send(p.gen_connect(cid(), proto_ver=ver, will_topic="w", will_qos=3))
    expect_connect_refused(conn)


# MQTT-3.1.2-13: will flag 0 requires will QoS 0.
def test_connect_will_qos_without_will_flag(broker, cid):
    conn = Conn(broker.port)
    conn.send(p.gen_connect(cid(), extra_flags=0x08))
    conn.expect_closed()


# MQTT-3.1.2-15: will flag 0 requires will retain 0.
@pytest.mark.parametrize("ver", [4, 5])
def test_connect_will_retain_without_will_flag(broker, cid, ver):
    conn = Conn(broker.port, ver)
    conn.send(p.gen_connect(cid(), proto_ver=ver, extra_flags=0x20))
    expect_connect_refused(conn)


# MQTT-3.1.3-11 / 4.7.1: a will topic must be a topic name, not a filter.
@pytest.mark.parametrize("ver", [4, 5])
def test_connect_will_topic_with_wildcard(broker, cid, ver):
    conn = Conn(broker.port, ver)
    conn.send(p.gen_connect(cid(), proto_ver=ver, will_topic="w/#"))
    expect_connect_refused(conn, codes=(0x81, 0x82, 0x90))


# MQTT-3.1.3-6/7: empty client id with clean session 1 is accepted (the server assigns one).
def test_connect_v311_empty_client_id_clean(broker):
    connect(broker.port, "", 4, connack=p.gen_connack(0)).ping()


# MQTT-3.1.3-8: empty client id with clean session 0: CONNACK 0x02 then close.
def test_connect_v311_empty_client_id_persistent(broker):
    conn = Conn(broker.port)
    conn.send(p.gen_connect("", clean=False))
    conn.expect(p.gen_connack(2))
    conn.expect_closed()


# MQTT 3.1: a client id must be 1..23 characters; empty gets CONNACK 2 (identifier rejected).
def test_connect_v31_empty_client_id(broker):
    conn = Conn(broker.port, 3)
    conn.send(p.gen_connect("", proto_ver=3))
    conn.expect(p.gen_connack(2))
    conn.expect_closed()


# MQTT-3.2.2-16: v5 empty client id: the CONNACK carries an Assigned Client Identifier ("auto-" + 36 chars as Mosquitto).
def test_connect_v5_empty_client_id_assigned(broker):
    conn = connect(broker.port, "", 5)
    props = dict(conn.connack["props"])
    assigned = props.pop(p.ASSIGNED_CLIENT_IDENTIFIER)
    assert assigned.startswith("auto-") and len(assigned) == 5 + 36, assigned
    assert props == {p.TOPIC_ALIAS_MAXIMUM: 10, p.RECEIVE_MAXIMUM: 20}
    conn.ping()


# MQTT-3.1.3-4 / 1.5.3: a client id that is not valid UTF-8 is a malformed packet.
@pytest.mark.parametrize("ver", [4, 5])
def test_connect_client_id_invalid_utf8(broker, ver):
    conn = Conn(broker.port, ver)
    conn.send(p.gen_connect(b"ab\xff", proto_ver=ver))
    expect_connect_refused(conn, codes=(0x81, 0x85))


# MQTT-1.5.4-2: a user name containing U+0000 is malformed.
@pytest.mark.parametrize("ver", [4, 5])
def test_connect_username_with_nul(broker, cid, ver):
    conn = Conn(broker.port, ver)
    conn.send(p.gen_connect(cid(), proto_ver=ver, username="a\x00b"))
    expect_connect_refused(conn)


# MQTT-3.1.0-2: a second CONNECT on a connection is a protocol violation: close.
@pytest.mark.parametrize("ver", [4, 5])
def test_connect_twice(broker, cid, ver):
    client_id = cid()
    conn = connect(broker.port, client_id, ver)
    conn.send(p.gen_connect(client_id, proto_ver=ver))
    expect_protocol_close(conn, codes=(0x82,))


# MQTT-3.1.0-1: the first packet must be CONNECT; anything else closes the connection.
@pytest.mark.parametrize("first", [p.gen_pingreq(), p.gen_publish("t", 0, b"x"), p.gen_subscribe(1, "t")],
                         ids=["pingreq", "publish", "subscribe"])
def test_first_packet_not_connect(broker, first):
    conn = Conn(broker.port)
    conn.send(first)
    conn.expect_closed()


# MQTT-3.1.4-2: a second connection with the same client id disconnects the first (3.1.1).
def test_takeover_v311(broker, cid):
    client_id = cid()
    first = connect(broker.port, client_id, 4)
    second = connect(broker.port, client_id, 4, connack=p.gen_connack(0))
    first.expect_closed()
    second.ping()


# MQTT-3.1.4-3: the server sends the taken-over v5 connection DISCONNECT 0x8E (session taken over), then closes it.
@pytest.mark.mosquitto_bug("2.0.11 closes the old v5 connection without DISCONNECT 0x8E")
def test_takeover_v5(broker, cid):
    client_id = cid()
    first = connect(broker.port, client_id, 5)
    second = connect(broker.port, client_id, 5, connack=V5_CONNACK)
    first.expect_disconnect(0x8E)
    second.ping()


# MQTT-3.12.4-1: PINGREQ gets PINGRESP, in every protocol version.
@pytest.mark.parametrize("ver", [3, 4, 5])
def test_pingreq_pingresp(broker, cid, ver):
    conn = connect(broker.port, cid(), ver)
    conn.send(p.gen_pingreq())
    conn.expect(p.gen_pingresp())


# MQTT-3.1.2-24: no packet within 1.5 x keepalive: the server closes the connection.
def test_keepalive_expiry_closes(broker, cid):
    conn = connect(broker.port, cid(), 4, keepalive=1)
    conn.expect_closed(timeout=8.0)  # Mosquitto checks keepalive coarsely: ~3 s


# MQTT 5.0 3.1.2.11.3: Receive Maximum 0 is a protocol error.
def test_connect_v5_receive_maximum_zero(broker, cid):
    conn = Conn(broker.port, 5)
    conn.send(p.gen_connect(cid(), proto_ver=5, properties=[(p.RECEIVE_MAXIMUM, 0)]))
    expect_connect_refused(conn)


# MQTT 5.0 3.1.2.11.4: Maximum Packet Size 0 is a protocol error.
def test_connect_v5_maximum_packet_size_zero(broker, cid):
    conn = Conn(broker.port, 5)
    conn.send(p.gen_connect(cid(), proto_ver=5, properties=[(p.MAXIMUM_PACKET_SIZE, 0)]))
    expect_connect_refused(conn)


# MQTT 5.0 2.2.2.2: a property included twice (not user property) is a protocol error.
def test_connect_v5_duplicate_property(broker, cid):
    conn = Conn(broker.port, 5)
    conn.send(p.gen_connect(cid(), proto_ver=5, properties=[(p.SESSION_EXPIRY_INTERVAL, 0),
                                                             (p.SESSION_EXPIRY_INTERVAL, 0)]))
    expect_connect_refused(conn)


# MQTT 5.0 2.2.2.2: a property not allowed in CONNECT (Topic Alias) is malformed.
def test_connect_v5_property_not_allowed(broker, cid):
    conn = Conn(broker.port, 5)
    conn.send(p.gen_connect(cid(), proto_ver=5, properties=[(p.TOPIC_ALIAS, 1)]))
    expect_connect_refused(conn)


# MQTT 5.0 3.1.3.2: a will property not allowed there (Session Expiry) is malformed.
def test_connect_v5_will_property_not_allowed(broker, cid):
    conn = Conn(broker.port, 5)
    conn.send(p.gen_connect(cid(), proto_ver=5, will_topic="w",
                            will_properties=[(p.SESSION_EXPIRY_INTERVAL, 1)]))
    expect_connect_refused(conn)


# MQTT-4.12.0-1: an authentication method the server does not support: CONNACK 0x8C then close.
def test_connect_v5_unsupported_auth_method(broker, cid):
    conn = Conn(broker.port, 5)
    conn.send(p.gen_connect(cid(), proto_ver=5, properties=[(p.AUTHENTICATION_METHOD, "SCRAM-SHA-1")]))
    conn.expect(p.gen_connack(0x8C, proto_ver=5))
    conn.expect_closed()


# MQTT-3.1.2-23 / 3.1.2.10: a persistent 3.1.1 session that did not exist gets session present 0.
def test_connect_persistent_new_session_not_present(broker, cid):
    connect(broker.port, cid(), 4, clean=False, connack=p.gen_connack(0, session_present=False)).ping()


# MQTT 3.1 (CONNECT, Client Identifier): more than 23 characters gets CONNACK 2 "identifier rejected".
@pytest.mark.mosquitto_bug("2.0.11 accepts MQTT 3.1 client ids longer than 23 characters")
def test_connect_v31_client_id_too_long(broker):
    conn = Conn(broker.port, 3)
    conn.send(p.gen_connect("x" * 24, proto_ver=3))
    conn.expect(p.gen_connack(2))
    conn.expect_closed()


# MQTT 3.1.3.5: the password is binary data; bytes that are not UTF-8 are fine (anonymous access allowed here).
def test_connect_binary_password(broker, cid):
    connect(broker.port, cid(), 4, username="user", password=b"\xff\x00\xfe",
            connack=p.gen_connack(0)).ping()


# MQTT-3.1.3-5 allows servers more: a client id with multibyte UTF-8 and 100 characters is accepted (Mosquitto does).
@pytest.mark.parametrize("ver", [4, 5])
def test_connect_long_utf8_client_id(broker, ver):
    client_id = "clïent-€-" + "x" * 91
    conn = connect(broker.port, client_id, ver)
    assert p.ASSIGNED_CLIENT_IDENTIFIER not in dict(conn.connack["props"])
    conn.ping()
