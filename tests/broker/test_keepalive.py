"""Keepalive: 1.5 x keepalive of silence closes the client; traffic keeps it alive."""

import pytest

from tests.broker.harness import Harness

V311_V5 = pytest.mark.parametrize("version", [4, 5])


@V311_V5
def test_timeout_at_one_and_a_half_keepalive(version):
    h = Harness()
    conn = h.connect("c", version=version, keepalive=10)
    h.advance(14.9)
    assert not conn.closed
    h.advance(0.2)
    assert conn.closed
    assert h.log.has("Client c has exceeded timeout, disconnecting.")


def test_traffic_keeps_alive():
    h = Harness()
    conn = h.connect("c", keepalive=10)
    for _ in range(5):
        h.advance(9)
        conn.send_raw(b"\xc0\x00")
        assert conn.take_one().__class__.__name__ == "Pingresp"
    assert not conn.closed
    h.advance(16)
    assert conn.closed


def test_keepalive_zero_never_times_out():
    h = Harness()
    conn = h.connect("c", keepalive=0)
    h.advance(100000)
    assert not conn.closed


def test_connection_without_connect_is_closed():
    h = Harness()
    conn = h.open()
    h.advance(91)
    assert conn.closed


def test_v5_server_keep_alive_applies():
    h = Harness(max_keepalive=10)
    conn = h.connect("c", version=5, keepalive=0)
    h.advance(16)
    assert conn.closed


def test_next_deadline_reports_keepalive():
    h = Harness()
    h.connect("c", keepalive=10)
    deadline = h.broker.next_deadline()
    assert deadline is not None and deadline <= h.now + 15


def test_never_closed_before_the_deadline_and_at_most_a_second_after():
    # Clients wait in one-second buckets: a fractional deadline rounds up, never down.
    h = Harness(now=1000.3)
    conn = h.connect("c", keepalive=10)  # deadline 1015.3
    h.advance(15.0 - 0.01)
    assert not conn.closed
    h.advance(1.0)
    assert conn.closed


def test_a_closed_client_leaves_its_keepalive_bucket():
    h = Harness()
    conns = [h.connect(f"c{i}", keepalive=30) for i in range(3)]
    assert sum(len(bucket) for bucket in h.broker.keepalive_buckets.values()) == 3
    conns[0].disconnect()
    conns[1].lose()
    buckets = h.broker.keepalive_buckets
    assert [c.client_id for bucket in buckets.values() for c in bucket] == ["c2"]
    conns[2].disconnect()
    assert not any(h.broker.keepalive_buckets.values())
    h.advance(100)  # the emptied bucket's heap entry comes due and takes the bucket away
    assert h.broker.keepalive_buckets == {}


def test_connections_with_keepalive_zero_do_not_grow_the_timer_heap():
    # Each is armed at accept and disarmed at CONNECT (keepalive 0): the bucket they
    # share must keep its one heap entry, not get one per connection.
    h = Harness()
    heap_before = len(h.broker.timers._heap)
    for i in range(50):
        h.connect(f"c{i}", keepalive=0)
    assert len(h.broker.timers._heap) <= heap_before + 1
