"""The broker with midge's real config and log: reload (SIGHUP), shutdown, log_dest topic."""

import io

from midge.config import load_config_string
from midge.log import Log, LogType, MemoryLog
from midge.protocol.constants import Property, ReasonCode
from midge.protocol.packets import Disconnect, Subscribe, Subscription
from midge.security import Security
from tests.broker.harness import Harness


def _config(extra=""):
    return load_config_string(f"listener 1883 127.0.0.1\nallow_anonymous true\n{extra}")


def _harness(extra=""):
    h = Harness(config=_config(extra))
    h.log = MemoryLog()
    h.broker.log = h.log
    return h


def test_real_config_defaults_connect_and_route():
    h = _harness()
    sub = h.connect("sub", version=5)
    assert sub.connack.properties[Property.RECEIVE_MAXIMUM] == 20
    assert sub.connack.properties[Property.TOPIC_ALIAS_MAXIMUM] == 10
    sub.subscribe("a/#", 1)
    h.connect("pub").publish("a/b", b"x", qos=1)
    assert [m.payload for m in sub.publishes()] == [b"x"]
    assert h.log.contains("New client connected from")


def test_real_config_listener_options():
    h = Harness(config=_config("mount_point m/\nmax_qos 1\n"))
    sub = h.connect("sub", version=5)
    assert sub.connack.properties[Property.MAXIMUM_QOS] == 1
    sub.subscribe("t", 2)
    assert h.broker.subs.match("m/t")[0]


def test_anonymous_false_without_password_file_refuses_everyone():
    h = Harness(config=load_config_string("listener 1883\n"))
    h.connect("c", username="u", password=b"p", expect=5)


def test_reload_applies_limits_and_connection_messages():
    h = _harness()
    h.broker.reload(_config("message_size_limit 3\nconnection_messages false\nmax_inflight_messages 1\n"),
                    h.now)
    assert h.broker.limits.message_size_limit == 3
    sub = h.connect("sub")
    assert not h.log.contains("as sub")
    sub.subscribe("t", 1)
    pub = h.connect("pub")
    pub.publish("t", b"toolong", qos=1)
    pub.publish("t", b"ok", qos=1, packet_id=2)
    pub.publish("t", b"ok", qos=1, packet_id=3)
    assert [m.payload for m in sub.publishes()] == [b"ok"]   # one in flight


def test_reload_kicks_clients_no_longer_allowed():
    class Withdrawing(Security):
        """midge's Security, told by the test when the clients lost their right in."""
        allowed = True

        def still_allowed(self, client):
            return self.allowed

    config = _config()
    security = Withdrawing(config, MemoryLog())
    h = Harness(config=config, security=security)
    v5 = h.connect("v5", version=5)
    v3 = h.connect("v3")
    security.allowed = False
    h.broker.reload(_config(), h.now)
    h.drain()
    assert v5.take()[-1].reason_code == ReasonCode.ADMINISTRATIVE_ACTION
    assert v5.closed and v3.closed
    assert h.log.has("Client v3 been disconnected by administrative action.")


def test_reload_sys_interval():
    h = _harness("sys_interval 0\n")
    h.advance(20)
    assert h.broker.retained.count == 0
    h.broker.reload(_config("sys_interval 5\n"), h.now)
    h.advance(0)
    assert h.broker.retained.get("$SYS/broker/version") is not None


def test_shutdown_v5_gets_server_shutting_down_and_no_will():
    h = _harness()
    watcher = h.connect("w")
    watcher.subscribe("will")
    from midge.protocol.packets import Will
    v5 = h.connect("v5", version=5, will=Will("will", b"x"))
    v3 = h.connect("v3")
    h.broker.shutdown(h.now)
    h.drain()
    packet = v5.take()[-1]
    assert isinstance(packet, Disconnect) and packet.reason_code == ReasonCode.SERVER_SHUTTING_DOWN
    assert v3.closed and v5.closed
    assert not [m for m in watcher.take() if getattr(m, "topic", None) == "will"]


def test_log_dest_topic_publishes_log_lines():
    config = _config("log_dest topic\nlog_type all\n")
    log = Log(config, stream=io.StringIO())
    h = Harness(config=config)
    h.broker = type(h.broker)(config, log, h.security, now=h.now)
    h.log = log
    sub = h.connect("sub")
    sub.send(Subscribe(1, [Subscription("$SYS/broker/log/#", 0)]))
    sub.take()   # the SUBACK and the log line of this very subscription
    h.connect("other")
    messages = {m.topic: m for m in sub.publishes()}
    assert b"New client connected" in messages["$SYS/broker/log/N"].payload
    assert Property.MESSAGE_EXPIRY_INTERVAL not in messages["$SYS/broker/log/N"].properties  # v3


def test_dump_subscriptions():
    h = _harness()
    conn = h.connect("c")
    conn.subscribe("a/b", 1)
    conn.subscribe("$share/g/x", 0, packet_id=3)
    lines = h.broker.dump_subscriptions()
    assert any("a/b" in line and "c" in line for line in lines)
    assert any("share g" in line for line in lines)


def test_debug_off_formats_nothing():
    h = Harness(config=_config())
    h.log = MemoryLog(types=int(LogType.ERROR))
    h.broker.log = h.log
    h.broker.debug = False
    sub = h.connect("sub")
    sub.subscribe("t")
    h.connect("pub").publish("t")
    assert h.log.records == []
