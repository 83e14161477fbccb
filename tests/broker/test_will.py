"""Wills: when they are sent, delays, properties, ACL at publish time."""

import pytest

from midge.protocol.constants import Property, ReasonCode
from midge.protocol.packets import Will
from tests.broker.harness import Harness

V311_V5 = pytest.mark.parametrize("version", [4, 5])


def _watcher(h, version=4):
    w = h.connect("watcher", version=version)
    w.subscribe("will/#", 1)
    return w


@V311_V5
def test_will_on_network_loss(version):
    h = Harness()
    w = _watcher(h)
    conn = h.connect("c", version=version, will=Will("will/c", b"gone", 1, False))
    conn.lose()
    [msg] = w.publishes()
    assert (msg.topic, msg.payload, msg.qos) == ("will/c", b"gone", 1)


@V311_V5
def test_no_will_on_normal_disconnect(version):
    h = Harness()
    w = _watcher(h)
    conn = h.connect("c", version=version, will=Will("will/c", b"gone"))
    conn.disconnect()
    assert w.take() == []


def test_v5_disconnect_with_will_message():
    h = Harness()
    w = _watcher(h)
    conn = h.connect("c", version=5, will=Will("will/c", b"gone"))
    conn.disconnect(ReasonCode.DISCONNECT_WITH_WILL_MESSAGE)
    assert len(w.publishes()) == 1


@V311_V5
def test_will_on_keepalive_timeout(version):
    h = Harness()
    w = _watcher(h)
    w.client.keepalive = 0
    h.connect("c", version=version, keepalive=10, will=Will("will/c", b"gone"))
    h.advance(16)
    assert [m.topic for m in w.publishes()] == ["will/c"]


@V311_V5
def test_will_on_protocol_error(version):
    h = Harness()
    w = _watcher(h)
    conn = h.connect("c", version=version, will=Will("will/c", b"gone"))
    conn.send_raw(b"\x10\x00")  # a second CONNECT (garbage) is a protocol error
    assert conn.closed
    assert len(w.publishes()) == 1


@V311_V5
def test_will_on_takeover(version):
    h = Harness()
    w = _watcher(h)
    h.connect("c", version=version, will=Will("will/c", b"gone"))
    h.connect("c", version=version)
    assert len(w.publishes()) == 1


def test_will_retained():
    h = Harness()
    conn = h.connect("c", will=Will("will/c", b"gone", 0, True))
    conn.lose()
    assert h.broker.retained.get("will/c").payload == b"gone"


def test_will_delay_cancelled_by_reconnect():
    h = Harness()
    w = _watcher(h)
    w.client.keepalive = 0
    props = {Property.SESSION_EXPIRY_INTERVAL: 100}
    will = Will("will/c", b"gone", 0, False, {Property.WILL_DELAY_INTERVAL: 10})
    conn = h.connect("c", version=5, clean_start=False, will=will, properties=props)
    conn.lose()
    h.advance(5)
    assert w.take() == []
    h.connect("c", version=5, clean_start=False, properties=props)
    h.advance(20)
    assert w.take() == []


def test_will_delay_sent_after_delay():
    h = Harness()
    w = _watcher(h)
    w.client.keepalive = 0
    will = Will("will/c", b"gone", 0, False, {Property.WILL_DELAY_INTERVAL: 10})
    conn = h.connect("c", version=5, will=will, keepalive=0,
                     properties={Property.SESSION_EXPIRY_INTERVAL: 100})
    conn.lose()
    h.advance(9)
    assert w.take() == []
    h.advance(2)
    [msg] = w.publishes()
    assert Property.WILL_DELAY_INTERVAL not in msg.properties


def test_will_sent_at_session_end_if_earlier():
    h = Harness()
    w = _watcher(h)
    w.client.keepalive = 0
    will = Will("will/c", b"gone", 0, False, {Property.WILL_DELAY_INTERVAL: 100})
    conn = h.connect("c", version=5, will=will, keepalive=0,
                     properties={Property.SESSION_EXPIRY_INTERVAL: 5})
    conn.lose()
    h.advance(6)
    assert len(w.publishes()) == 1


def test_will_delay_with_session_expiry_zero_is_immediate():
    h = Harness()
    w = _watcher(h)
    will = Will("will/c", b"gone", 0, False, {Property.WILL_DELAY_INTERVAL: 100})
    h.connect("c", version=5, will=will).lose()
    assert len(w.publishes()) == 1


def test_will_properties_passed_through():
    h = Harness()
    w = h.connect("watcher", version=5)
    w.subscribe("will/#")
    props = {Property.CONTENT_TYPE: "text/plain", Property.RESPONSE_TOPIC: "r",
             Property.USER_PROPERTY: [("k", "v")], Property.PAYLOAD_FORMAT_INDICATOR: 1}
    h.connect("c", version=5, will=Will("will/c", b"gone", 0, False, props)).lose()
    [msg] = w.publishes()
    for key, value in props.items():
        assert msg.properties[key] == value


def test_will_acl_checked_at_publish_time():
    h = Harness(users={"u": b"p"}, acl="user u\ntopic readwrite will/#\n")
    w = h.connect("watcher", username="u", password=b"p")
    w.subscribe("will/#")
    conn = h.connect("c", username="u", password=b"p", will=Will("will/c", b"gone"))
    with open(h.config.security.acl_file, "w") as f:   # write access withdrawn after CONNECT
        f.write("user u\ntopic read will/#\n")
    h.security.reload(h.config)
    conn.lose()
    assert w.take() == []
