"""The broker with midge's real Security: password file, ACL file, TLS identity."""

from types import SimpleNamespace

import pytest

from midge.config import load_config_string
from midge.log import MemoryLog
from midge.protocol.constants import ReasonCode
from midge.protocol.packets import Puback
from midge.security import Security
from midge.security.passwords import hash_password
from tests.broker.harness import Harness


@pytest.fixture
def secured(tmp_path):
    passwords = tmp_path / "pw"
    passwords.write_text(f"alice:{hash_password(b'secret', iterations=10)}\n"
                         f"bob:{hash_password(b'hunter2', iterations=10)}\n")
    acl = tmp_path / "acl"
    acl.write_text("user alice\ntopic readwrite a/#\n\nuser bob\ntopic read a/#\ntopic write b/#\n")
    config = load_config_string(f"listener 1883\npassword_file {passwords}\nacl_file {acl}\n"
                                "auth_fail_delay 0\n")
    log = MemoryLog()
    h = Harness(config=config, security=Security(config, log))
    return h


@pytest.mark.parametrize("version,code", [(4, 5), (5, ReasonCode.NOT_AUTHORIZED)])
def test_password_file(secured, version, code):
    secured.connect("a", version=version, username="alice", password=b"secret")
    secured.connect("b", version=version, username="alice", password=b"wrong", expect=code)
    secured.connect("c", version=version, expect=code)


def test_acl_read_and_write(secured):
    h = secured
    bob = h.connect("bob", version=5, username="bob", password=b"hunter2")
    assert bob.subscribe("#", 1).reason_codes == [1]         # the file ACL grants every subscribe
    alice = h.connect("alice", version=5, username="alice", password=b"secret")
    alice.publish("a/1", b"for bob", qos=1)
    assert alice.take_one(Puback).reason_code == 0
    assert [m.payload for m in bob.publishes()] == [b"for bob"]
    alice.publish("b/1", qos=1, packet_id=2)                 # alice may not write b/#
    assert alice.take_one(Puback).reason_code == ReasonCode.NOT_AUTHORIZED
    bob.publish("b/x", b"bob writes", qos=1, packet_id=3)    # allowed, but bob can't read b/#
    packets = bob.take()
    assert [type(m) for m in packets] == [Puback]            # bob's own "#" does not deliver b/x
    assert packets[0].reason_code == 0                       # a matching subscription existed


def test_retained_delivery_checks_read(secured):
    h = secured
    alice = h.connect("alice", username="alice", password=b"secret")
    alice.publish("a/r", b"kept", retain=True)
    bob = h.connect("bob", username="bob", password=b"hunter2")
    bob.subscribe("a/#")
    assert [m.payload for m in bob.publishes()] == [b"kept"]


def test_tls_identity_skips_password(tmp_path):
    config = load_config_string("listener 1883\nallow_anonymous false\n")
    listener = config.listeners[0]
    listener.use_identity_as_username = True
    h = Harness(config=config, security=Security(config, MemoryLog()))
    tls = SimpleNamespace(psk_identity="device-7", common_name=None)
    conn = h.connect("x", username="ignored", password=b"ignored", tls=tls)
    assert conn.client.username == "device-7"
    h.connect("y", expect=4)   # no TLS at all: CONNACK 4
