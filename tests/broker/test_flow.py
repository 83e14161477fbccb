"""Issue 14, defect 4: flow control from QoS 1 subscribers back to their publishers
(broker/flow.py), in the in-memory harness. The end-to-end reproducer with
mosquitto_pub / mosquitto_sub is tests/server/test_flow_pipelined.py."""

from midge.broker import flow
from midge.protocol.codec import encode
from midge.protocol.packets import Puback, Publish
from tests.broker.harness import Harness

# max_queued_messages 8: the high-water mark is 4 queued messages, the low one 2.
OPTIONS = dict(max_inflight_messages=2, max_queued_messages=8)


def _setup(**options):
    h = Harness(**{**OPTIONS, **options})
    sub = h.connect("sub")
    sub.subscribe("t", 1)
    pub = h.connect("pub")
    return h, sub, pub


def _pipeline(pub, count, start=1):
    """`count` QoS 1 PUBLISHes in one received chunk, as a pipelining publisher sends."""
    pub.send(*[Publish("t", str(i).encode(), 1, False, False, i, {}) for i in range(start, start + count)])


def _ack_all(sub):
    """Acknowledge every PUBLISH received so far; return their payloads."""
    got = []
    while True:
        packets = sub.publishes()
        if not packets:
            return got
        got += [p.payload for p in packets]
        sub.send(*[Puback(p.packet_id) for p in packets])


def test_a_subscriber_that_keeps_up_loses_nothing_to_a_pipelining_publisher():
    h, sub, pub = _setup()
    _pipeline(pub, 40)
    # 2 in flight, 4 queued: the publisher is held after its 6th message, 34 wait.
    assert len([p for p in pub.take() if p.__class__.__name__ == "Puback"]) == 6
    assert not flow.reading_allowed(pub.client)
    assert h.broker.take_read_changes() == [pub.client]
    received = []
    while len(received) < 40:
        received += _ack_all(sub)
        h.advance(0)            # the released publisher goes on at the next timer turn
        pub.take()
        assert h.broker.stats.publish_dropped == 0
    assert received == [str(i).encode() for i in range(1, 41)]
    assert flow.reading_allowed(pub.client)
    assert not h.log.messages("notice") or not any("keeping up" in m for m in h.log.messages("notice"))


def test_a_stuck_subscriber_holds_its_publisher_once_then_drops_as_before():
    h, sub, pub = _setup()
    _pipeline(pub, 40)
    assert not flow.reading_allowed(pub.client)
    h.advance(flow.HOLD_LIMIT)  # the subscriber acknowledged nothing: it is behind
    assert h.log.has("Client sub is not keeping up")
    assert flow.reading_allowed(pub.client)
    acks = [p for p in pub.take() if p.__class__.__name__ == "Puback"]
    assert len(acks) == 40                     # the publisher went on with every message
    assert h.broker.stats.publish_dropped == 40 - 2 - 8
    # Behind, it holds nobody until it has drained, however much more arrives.
    _pipeline(pub, 20, start=41)
    assert flow.reading_allowed(pub.client) and len(pub.take()) == 20


def test_a_publisher_released_by_a_slow_subscriber_is_not_held_again_during_the_cooldown():
    # Many slow subscribers connected one after another must not pause a publisher
    # again and again.
    h, sub, pub = _setup()
    _pipeline(pub, 10)
    h.advance(flow.HOLD_LIMIT)
    assert flow.reading_allowed(pub.client)
    late = h.connect("late")
    late.subscribe("t", 1)
    _pipeline(pub, 10, start=11)
    assert flow.reading_allowed(pub.client) and len(pub.take()) == 10 + 10
    h.advance(flow.COOLDOWN)
    fresh = h.connect("fresh")
    fresh.subscribe("t", 1)
    _pipeline(pub, 10, start=21)
    assert not flow.reading_allowed(pub.client)   # after the cooldown a new hold is allowed


def test_the_subscriber_going_away_releases_its_publishers():
    h, sub, pub = _setup()
    _pipeline(pub, 20)
    assert not flow.reading_allowed(pub.client)
    sub.lose()
    h.advance(0)
    assert flow.reading_allowed(pub.client)
    assert len([p for p in pub.take() if p.__class__.__name__ == "Puback"]) == 20


def test_a_publisher_is_never_held_by_its_own_session():
    # Its PUBACKs are what would drain the queue: holding them would stall it.
    h = Harness(**OPTIONS)
    both = h.connect("both")
    both.subscribe("t", 1)
    _pipeline(both, 20)
    assert flow.reading_allowed(both.client)


def test_qos0_and_offline_sessions_hold_nobody():
    h = Harness(**OPTIONS)
    sub = h.connect("sub", clean_start=False)
    sub.subscribe("t", 1)
    sub.disconnect()
    pub = h.connect("pub")
    _pipeline(pub, 20)                         # the offline session queues, drops
    assert flow.reading_allowed(pub.client)
    pub.send(*[Publish("t", b"x", 0, False, False, None, {}) for _ in range(50)])
    assert flow.reading_allowed(pub.client)


def test_held_packets_keep_their_order_and_a_decoding_error_after_them():
    h, sub, pub = _setup()
    data = b"".join(encode(Publish("t", str(i).encode(), 1, False, False, i, {}), 4) for i in range(1, 21))
    pub.send_raw(data + b"\x00\x00")           # a reserved packet type after them
    assert not pub.closed                      # held: the error waits behind the messages
    received = []
    while not pub.closed:
        received += _ack_all(sub)
        h.advance(0)
        pub.take()
    received += _ack_all(sub)
    assert received == [str(i).encode() for i in range(1, 21)]


def test_a_stuck_subscriber_does_not_cost_a_prompt_one_its_protection():
    # The cooldown a stuck subscriber puts the publisher in does not apply to a
    # subscriber that has shown it keeps up.
    h, sub, pub = _setup()
    received = []

    _pipeline(pub, 40)
    while len(received) < 40:                  # `sub` holds the publisher and drains: proven
        received.extend(_ack_all(sub))
        h.advance(0)
        pub.take()
    stuck = h.connect("stuck")
    stuck.subscribe("t", 1)
    _pipeline(pub, 40, start=41)
    for _ in range(40):                        # (bounded: a lost message never comes)
        received.extend(_ack_all(sub))
        h.advance(flow.HOLD_LIMIT / 4)         # the stuck one times out on the way
        pub.take()
    assert h.log.has("Client stuck is not keeping up")
    assert received == [str(i).encode() for i in range(1, 81)]
    assert h.broker.stats.publish_dropped == 40 - 2 - 8   # all of them the stuck one's
