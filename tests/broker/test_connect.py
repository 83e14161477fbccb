"""CONNECT: client ids, authentication, takeover, session present, CONNACK properties, log lines."""

import pytest

from midge.protocol.constants import Property, ReasonCode
from midge.protocol.packets import Connack, Connect, Disconnect, Publish, Subscribe, Subscription
from midge.security import Security
from tests.broker.harness import Harness, MemoryLog, make_config, make_listener, security_files

V311_V5 = pytest.mark.parametrize("version", [4, 5])


@V311_V5
def test_connect_accepted_and_logged(version):
    h = Harness()
    conn = h.connect("sensor", version=version, keepalive=30)
    assert conn.connack.session_present is False
    level = {4: 2, 5: 5}[version]   # Mosquitto's protocol enum, not the wire level
    assert h.log.has(f"New client connected from 127.0.0.1:{h.port} as sensor (p{level}, c1, k30).")


def test_connect_log_line_with_username():
    h = Harness()
    h.connect("c", username="user")
    assert h.log.has("as c (p2, c1, k60, u'user').")


def test_v31_connect():
    h = Harness()
    h.connect("old", version=3)
    assert h.log.has("(p1, c1, k60)")


@V311_V5
def test_empty_client_id_is_assigned(version):
    h = Harness()
    conn = h.connect("", version=version)
    client_id = conn.client.client_id
    assert client_id.startswith("auto-") and len(client_id) == len("auto-") + 36
    # Mosquitto's form: upper-case hex, 8-4-4-4-12
    assert [len(part) for part in client_id[5:].split("-")] == [8, 4, 4, 4, 12]
    assert client_id[5:] == client_id[5:].upper()
    if version == 5:
        assert conn.connack.properties[Property.ASSIGNED_CLIENT_IDENTIFIER] == client_id
    else:
        assert conn.connack.properties == {}


def test_auto_id_prefix():
    h = Harness(listener=make_listener(auto_id_prefix="gen-"))
    conn = h.connect("")
    assert conn.client.client_id.startswith("gen-")


def test_v311_empty_id_with_persistent_session_is_rejected():
    h = Harness()
    h.connect("", version=4, clean_start=False, expect=2)


def test_v31_empty_id_is_rejected():
    h = Harness()
    h.connect("", version=3, expect=2)


def test_v5_empty_id_with_persistent_session_is_allowed():
    h = Harness()
    h.connect("", version=5, clean_start=False)


@pytest.mark.parametrize("version,code", [(4, 2), (5, ReasonCode.UNSPECIFIED_ERROR)])
def test_zero_length_clientid_disallowed(version, code):
    h = Harness(listener=make_listener(allow_zero_length_clientid=False))
    conn = h.connect("", version=version, expect=code)
    assert conn.closed


@pytest.mark.parametrize("version,code", [(4, 5), (5, ReasonCode.NOT_AUTHORIZED)])
def test_anonymous_refused(version, code):
    h = Harness(listener=make_listener(allow_anonymous=False))
    conn = h.connect("c", version=version, expect=code)
    assert conn.closed
    assert h.log.has("Client c disconnected, not authorised.")


@pytest.mark.parametrize("version,code", [(4, 5), (5, ReasonCode.NOT_AUTHORIZED)])
def test_bad_password(version, code):
    """Mosquitto 2.0 answers a wrong password with "not authorised" (v3 5, v5 0x87)."""
    h = Harness(users={"u": b"right"})
    h.connect("c", version=version, username="u", password=b"wrong", expect=code)
    h.connect("c", version=version, username="u", password=b"right")


@pytest.mark.parametrize("version,code", [(4, 5), (5, ReasonCode.NOT_AUTHORIZED)])
def test_clientid_prefixes(version, code):
    h = Harness(clientid_prefixes="ok-")
    h.connect("bad", version=version, expect=code)
    h.connect("ok-1", version=version)


@pytest.mark.parametrize("version,code", [(4, 5), (5, ReasonCode.NOT_AUTHORIZED)])
def test_use_username_as_clientid(version, code):
    h = Harness(listener=make_listener(use_username_as_clientid=True))
    conn = h.connect("ignored", version=version, username="alice")
    assert conn.client.client_id == "alice"
    h.connect("x", version=version, expect=code)


@pytest.mark.parametrize("version,code", [(4, 4), (5, ReasonCode.BAD_USER_NAME_OR_PASSWORD)])
def test_identity_as_username_without_tls_refused(version, code):
    h = Harness(listener=make_listener(use_identity_as_username=True, allow_anonymous=False))
    h.connect("c", version=version, username="u", password=b"p", expect=code)


def test_v5_authentication_method_not_supported():
    h = Harness()
    h.connect("c", version=5, properties={Property.AUTHENTICATION_METHOD: "SCRAM-SHA-1"},
              expect=ReasonCode.BAD_AUTHENTICATION_METHOD)


@V311_V5
def test_takeover_closes_old_connection(version):
    h = Harness()
    old = h.connect("dup", version=version)
    new = h.connect("dup", version=version)
    assert old.closed and not new.closed
    if version == 5:
        assert old.take_one(Disconnect).reason_code == ReasonCode.SESSION_TAKEN_OVER
    else:
        assert old.take() == []
    assert h.log.has("Client dup already connected, closing old connection.")
    # The old connection's loss must not disturb the new one's session.
    assert h.broker.sessions["dup"].client is new.client


@V311_V5
def test_session_present(version):
    h = Harness()
    props = {Property.SESSION_EXPIRY_INTERVAL: 100} if version == 5 else {}
    conn = h.connect("s", version=version, clean_start=False, properties=props)
    assert conn.connack.session_present is False
    conn.subscribe("a/b", 1)
    conn.disconnect()
    again = h.connect("s", version=version, clean_start=False, properties=props)
    assert again.connack.session_present is True
    fresh = h.connect("s", version=version, clean_start=True, properties=props)
    assert fresh.connack.session_present is False


def test_clean_session_discards_subscriptions():
    h = Harness()
    conn = h.connect("s", clean_start=False)
    conn.subscribe("a", 0)
    conn.disconnect()
    h.connect("s", clean_start=True).disconnect()
    again = h.connect("s", clean_start=False)
    assert again.connack.session_present is False
    pub = h.connect("p")
    pub.publish("a")
    assert again.take() == []


def test_v5_connack_properties():
    listener = make_listener(max_qos=1, max_topic_alias=5)
    h = Harness(listener=listener, max_inflight_messages=7, retain_available=False, max_packet_size=5000)
    conn = h.connect("c", version=5)
    props = conn.connack.properties
    assert props[Property.RECEIVE_MAXIMUM] == 7
    assert props[Property.MAXIMUM_QOS] == 1
    assert props[Property.RETAIN_AVAILABLE] == 0
    assert props[Property.MAXIMUM_PACKET_SIZE] == 5000
    assert props[Property.TOPIC_ALIAS_MAXIMUM] == 5


def test_v5_connack_defaults_omit_default_properties():
    h = Harness(max_inflight_messages=0)
    props = h.connect("c", version=5).connack.properties
    assert Property.RECEIVE_MAXIMUM not in props
    assert Property.MAXIMUM_QOS not in props
    assert Property.RETAIN_AVAILABLE not in props


def test_max_keepalive_v5_server_keep_alive():
    h = Harness(max_keepalive=20)
    conn = h.connect("c", version=5, keepalive=100)
    assert conn.connack.properties[Property.SERVER_KEEP_ALIVE] == 20
    conn0 = h.connect("d", version=5, keepalive=0)
    assert conn0.connack.properties[Property.SERVER_KEEP_ALIVE] == 20


def test_max_keepalive_v3_rejected():
    h = Harness(max_keepalive=20)
    h.connect("c", version=4, keepalive=100, expect=2)
    h.connect("d", version=4, keepalive=0, expect=2)
    h.connect("e", version=4, keepalive=20)


@V311_V5
def test_packet_before_connect_closes(version):
    h = Harness()
    conn = h.open(version)
    conn.send_raw(b"\xc0\x00")  # PINGREQ
    assert conn.closed


@V311_V5
def test_second_connect_closes(version):
    h = Harness()
    conn = h.connect("c", version=version)
    conn.send(Connect(version, "c", True, 60))
    assert conn.closed


def test_unsupported_protocol_level_gets_rc1():
    h = Harness()
    conn = h.open(4)
    # CONNECT "MQTT" level 7
    conn.send_raw(bytes([0x10, 12, 0, 4]) + b"MQTT" + bytes([7, 2, 0, 60, 0, 0]))
    packets = conn.take()
    assert conn.closed
    assert packets and isinstance(packets[0], Connack) and packets[0].reason_code == 1


def test_connection_lost_logs_closed():
    h = Harness()
    conn = h.connect("c")
    conn.lose()
    assert h.log.has("Client c closed its connection.")


def test_disconnect_logs_disconnected():
    h = Harness()
    conn = h.connect("c")
    conn.disconnect()
    assert conn.closed
    assert h.log.has("Client c disconnected.")


def test_connection_messages_false_is_quiet():
    h = Harness(connection_messages=False)
    h.connect("c").disconnect()
    assert not h.log.has("New client connected")
    assert not h.log.has("disconnected.")


def test_garbage_never_raises():
    h = Harness()
    conn = h.open(4)
    conn.send_raw(b"\xff\xff\xff\xff\xff")
    assert conn.closed


def test_internal_error_closes_only_that_client(monkeypatch):
    h = Harness()
    good = h.connect("good")
    bad = h.connect("bad")

    def boom(client, packet, now):
        raise RuntimeError("bug")

    handlers = dict(bad.client.handlers)
    handlers[Subscribe] = boom
    bad.client.handlers = handlers
    bad.send(Subscribe(1, [Subscription("a", 0)]))
    assert bad.closed and not good.closed
    assert any("Internal error" in m for m in h.log.messages("error"))
    good.send(Publish("x", b"1"))


def test_v31_never_sets_session_present():
    h = Harness()
    h.connect("s", version=3, clean_start=False).disconnect()
    again = h.connect("s", version=3, clean_start=False)
    assert again.connack.session_present is False
    assert again.client.session is h.broker.sessions["s"]


class _Pending:
    """Stand-in for security.PendingAuth: the decision arrives later."""

    def __init__(self):
        self.callbacks = []

    def on_done(self, callback):
        self.callbacks.append(callback)

    def finish(self, result):
        for callback in self.callbacks:
            callback(result)


class AsyncSecurity(Security):
    """midge's Security whose decision for client "slow" arrives later (as from an
    async plugin hook)."""

    def __init__(self, config):
        super().__init__(config, MemoryLog())
        self.pending = []

    def authenticate(self, client, username, password):
        if client.client_id != "slow":
            return 0
        pending = _Pending()
        self.pending.append(pending)
        return pending


@pytest.mark.parametrize("result,code", [(0, 0), (ReasonCode.NOT_AUTHORIZED, 5)])
def test_async_authentication_holds_following_packets(result, code):
    config = make_config()
    security = AsyncSecurity(config)
    h = Harness(config=config, security=security)
    sub = h.connect("sub")
    sub.subscribe("t")
    conn = h.open(4)
    conn.send(Connect(4, "slow", True, 60), Publish("t", b"after connect"))
    assert conn.take() == [] and sub.take() == []
    security.pending[-1].finish(result)
    h.drain()
    packets = conn.take()
    assert isinstance(packets[0], Connack) and packets[0].reason_code == code
    delivered = [m.payload for m in sub.take()]
    assert delivered == ([b"after connect"] if result == 0 else [])


class ThrottledSecurity(Security):
    """midge's Security with a fixed login delay, recording the failures it is told of."""

    def __init__(self, config, delay):
        super().__init__(config, MemoryLog())
        self.delay = delay
        self.failures = []

    throttling = True

    def login_delay(self, host, now):
        return self.delay

    def record_failure(self, host, now):
        self.failures.append(host)

    def record_success(self, host):
        pass


def test_login_delay_postpones_connack():
    config = make_config(**security_files(users={"u": b"p"}), allow_anonymous=False)
    security = ThrottledSecurity(config, 2.0)
    h = Harness(config=config, security=security)
    conn = h.open(4)
    conn.send(Connect(4, "c", True, 60, "u", b"wrong"))
    assert conn.take() == []
    h.advance(1.9)
    assert conn.take() == []
    h.advance(0.2)
    assert conn.take()[0].reason_code == 5   # Mosquitto 2.0: "not authorised"
    assert security.failures == ["127.0.0.1"]
