"""Property tests: random input never raises out of the broker, and random traffic
keeps its bookkeeping consistent."""

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from midge.protocol.codec import encode
from midge.protocol.packets import (
    Connect, Disconnect, Puback, Pubcomp, Publish, Pubrec, Pubrel, Subscribe, Subscription, Unsubscribe,
)
from tests.broker.harness import Harness

FAST = settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))


@FAST
@given(st.binary(max_size=200), st.sampled_from([3, 4, 5]))
def test_random_bytes_after_connect_never_raise(data, version):
    h = Harness()
    conn = h.connect("c", version=version)
    conn.client.receive_data(data, h.now)   # must not raise
    h.broker.take_pending()
    assert not h.log.messages("error")


@FAST
@given(st.binary(max_size=100))
def test_random_bytes_before_connect_never_raise(data):
    h = Harness()
    conn = h.open()
    conn.client.receive_data(data, h.now)
    h.broker.take_pending()
    assert not h.log.messages("error")


TOPICS = ["a", "a/b", "a/c", "b"]
FILTERS = ["a", "a/#", "+/b", "#", "$share/g/a/#", "b"]

_publish = st.tuples(st.just("pub"), st.sampled_from(TOPICS), st.integers(0, 2), st.booleans())
operation = st.one_of(
    _publish, _publish, _publish, _publish,   # weighted: queues and windows must fill up
    st.tuples(st.just("sub"), st.sampled_from(FILTERS), st.integers(0, 2)),
    st.tuples(st.just("unsub"), st.sampled_from(FILTERS)),
    st.tuples(st.just("ack"),),
    st.tuples(st.just("lose"),),
    st.tuples(st.just("reconnect"), st.booleans()),
    st.tuples(st.just("time"), st.integers(0, 100)),
)


@settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(st.tuples(st.integers(0, 2), operation), min_size=20, max_size=80), st.sampled_from([4, 5]))
def test_random_traffic_keeps_state_consistent(steps, version):
    h = Harness(max_inflight_messages=3, max_queued_messages=5)
    conns = {}
    ids = {}

    def ensure(index, clean=False):
        conn = conns.get(index)
        if conn is None or conn.closed:
            conn = h.connect(f"c{index}", version=version, clean_start=clean, keepalive=0,
                             properties={0x11: 1000} if version == 5 else {})
            conns[index] = conn
        return conn

    for index, op in steps:
        kind = op[0]
        if kind == "pub":
            conn = ensure(index)
            ids[index] = ids.get(index, 0) % 65000 + 1
            conn.send(Publish(op[1], b"p", op[2], op[3], False, ids[index] if op[2] else None))
            for packet in conn.take():
                if isinstance(packet, Pubrec):
                    conn.send(Pubrel(packet.packet_id))
        elif kind == "sub":
            ensure(index).send(Subscribe(1, [Subscription(op[1], op[2])]))
        elif kind == "unsub":
            ensure(index).send(Unsubscribe(2, [op[1]]))
        elif kind == "ack":
            conn = ensure(index)
            for packet in conn.take():
                if isinstance(packet, Publish) and packet.qos == 1:
                    conn.send(Puback(packet.packet_id))
                elif isinstance(packet, Publish) and packet.qos == 2:
                    conn.send(Pubrec(packet.packet_id))
                elif isinstance(packet, Pubrel):
                    conn.send(Pubcomp(packet.packet_id))
        elif kind == "lose":
            conn = conns.get(index)
            if conn is not None and not conn.closed:
                conn.lose()
        elif kind == "reconnect":
            conn = conns.get(index)
            if conn is not None and not conn.closed:
                conn.send(Disconnect())
            ensure(index, clean=op[1])
        elif kind == "time":
            h.advance(op[1])
        for conn in conns.values():
            conn.take() if conn.closed else None
    assert not h.log.messages("error")
    broker = h.broker
    for session in broker.sessions.values():
        assert len(session.inflight) <= 3
        assert len(session.queue) <= 5
        assert session.inflight_bytes == sum(len(d.message.payload) for d in session.inflight.values())
        assert session.queue_bytes == sum(len(d.message.payload) for d in session.queue)
        for sub in session.subscriptions.values():
            assert sub.session is session
    count = sum(len(s.subscriptions) for s in broker.sessions.values())
    assert broker.subs.count == count
    assert {c for c in broker.clients} == {s.client for s in broker.sessions.values() if s.client}
