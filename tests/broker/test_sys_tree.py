"""$SYS: published retained at sys_interval, only changed values, loads."""

from tests.broker.harness import Harness


def _values(conn):
    return {m.topic: m.payload.decode() for m in conn.publishes()}


def test_sys_tree_published_and_retained():
    h = Harness(sys_interval=10)
    h.advance(0)
    sub = h.connect("sub")
    sub.subscribe("$SYS/#")
    values = _values(sub)
    assert values["$SYS/broker/version"].startswith("midge version ")
    assert values["$SYS/broker/uptime"] == "0 seconds"
    for topic in ("clients/total", "clients/connected", "messages/received", "publish/messages/dropped",
                  "bytes/sent", "retained messages/count", "subscriptions/count",
                  "store/messages/count", "load/messages/received/1min", "load/connections/15min"):
        assert f"$SYS/broker/{topic}" in values, topic


def test_sys_tree_updates_only_changes():
    h = Harness(sys_interval=10)
    h.advance(0)
    sub = h.connect("sub")
    sub.subscribe("$SYS/broker/#")
    sub.take()
    h.advance(10)
    values = _values(sub)
    assert values["$SYS/broker/uptime"] == "10 seconds"
    assert values["$SYS/broker/clients/total"] == "1"
    assert "$SYS/broker/clients/expired" not in values   # unchanged, not republished
    h.advance(10)
    values = _values(sub)
    assert "$SYS/broker/clients/total" not in values


def test_sys_interval_zero_is_off():
    h = Harness(sys_interval=0)
    h.advance(100)
    assert h.broker.retained.count == 0


def test_hash_does_not_get_sys():
    h = Harness(sys_interval=10)
    h.advance(0)
    sub = h.connect("sub")
    sub.subscribe("#")
    h.advance(10)
    assert sub.take() == []
