"""Persistent sessions moving between cluster nodes, in process (broker/session_moves.py,
persist/transfer.py): two brokers with their routers; the test carries what the edge
(server/cluster_sessions.py) would carry over NATS, so every byte of a moving session
goes through the same dump and load as over the wire."""

from __future__ import annotations

from midge.broker.router import ClusterSubscriptionTree, Router
from midge.broker.session_moves import GENERATION_KEEP, NONE, REFUSED, RESTORE
from midge.persist.transfer import dump_session, load_session, record_row, restore_record
from midge.protocol.constants import Property
from midge.protocol.packets import Connack, Connect, Disconnect, Pubcomp, Publish, Pubrec, Pubrel, Will
from tests.broker.harness import Harness

EXPIRY = {Property.SESSION_EXPIRY_INTERVAL: 300}


class Node:
    """One broker with its router, on a wall clock the test moves."""

    def __init__(self, node_id: str, clock: list):
        self.node_id = node_id
        self.h = Harness()
        broker = self.h.broker
        broker.wall_clock = lambda: clock[0]
        self.router = Router(broker, node_id, "midge")
        broker.subs = ClusterSubscriptionTree(self.router)
        broker.router = self.router
        self.moves = self.router.moves
        self.held = []
        self.moves.hold = self.held.append

    @property
    def broker(self):
        return self.h.broker

    def connect_waiting(self, client_id, version=5, clean_start=False, properties=None, will=None):
        """Send a CONNECT that has to fetch its session: no CONNACK yet."""
        conn = self.h.open(version)
        conn.send(Connect(version, client_id, clean_start, 60, None, None, will,
                          EXPIRY if properties is None and version == 5 else properties or {}, "MQTT"))
        assert conn.inbox == [], conn.inbox
        (fetch,) = self.moves.take_fetches()
        return conn, fetch


def share_records(source: Node, *nodes: Node) -> None:
    """What the JetStream stream carries: `source`'s record writes, to every node."""
    puts, deletes = source.moves.take_records(source.h.now)
    for node in (source,) + nodes:
        for client_id, row, generation in puts:
            node.moves.record_seen(client_id, source.node_id, row, generation)
        for client_id, generation in deletes:
            node.moves.record_seen(client_id, None, None, generation)


def offline_on(holder: Node, client_id: str, topic: str, *others: Node, version: int = 4,
               properties=None, lose: bool = True):
    """A persistent session on `holder` subscribed to `topic` at QoS 1, its client gone
    (network loss, or a DISCONNECT with lose=False), its record shared with `others`."""
    conn = holder.h.connect(client_id, version=version, clean_start=False, properties=properties)
    conn.subscribe(topic, qos=1)
    if lose:
        conn.lose()
    else:
        conn.disconnect()
    share_records(holder, *others)
    return conn


def nodes():
    clock = [1_000_000.0]
    return Node("a", clock), Node("b", clock), clock


def arrive(node: Node, fetch, data) -> None:
    client, holder, wall, resume = fetch
    node.moves.arrived(client, data, node.h.now, resume)
    node.h.drain()


def test_offline_session_moves_with_queue_inflight_and_incoming_qos2():
    a, b, _ = nodes()
    sub = a.h.connect("s", version=5, clean_start=False, properties=EXPIRY)
    sub.subscribe("t/+", qos=2)
    pub = a.h.connect("p", version=4, clean_start=False)
    pub.publish("t/1", b"m1", qos=1, packet_id=1)
    first = sub.publishes()[0]
    pub.publish("t/2", b"m2", qos=2, packet_id=2)
    pub.send(Pubrel(2))
    second = sub.publishes()[0]
    sub.send(Pubrec(second.packet_id))
    assert isinstance(sub.take_one(), Pubrel)
    pub.send(Publish("t/3", b"held", 2, False, False, 9, {}))   # incoming QoS 2, no PUBREL yet
    assert isinstance(pub.take()[-1], Pubrec)
    sub.lose()
    pub.lose()
    other = a.h.connect("o", version=4)
    other.publish("t/4", b"m4", qos=1, packet_id=1)   # queued for the offline session
    share_records(a, b)
    assert b.moves.directory["s"][0] == "a" and b.moves.directory["p"][0] == "a"
    # The subscriber reaches b: CONNACK session present, in-flight again with DUP, the queue.
    conn, fetch = b.connect_waiting("s")
    assert fetch[1] == "a"
    arrive(b, fetch, a.moves.give("s", "b", fetch[2], a.h.now))
    assert "s" not in a.broker.sessions and a.moves.directory["s"][0] == "b"
    packets = conn.take()
    assert isinstance(packets[0], Connack) and packets[0].session_present
    assert (packets[1].topic, packets[1].dup, packets[1].packet_id) == ("t/1", True, first.packet_id)
    assert packets[2] == Pubrel(second.packet_id)
    assert (packets[3].topic, packets[3].payload, packets[3].dup) == ("t/4", b"m4", False)
    assert b.moves.moved_in == 1 and a.moves.moved_out == 1
    # The publisher reaches b too and completes its QoS 2 message there.
    pconn, pfetch = b.connect_waiting("p", version=4, properties={})
    arrive(b, pfetch, a.moves.give("p", "b", pfetch[2], a.h.now))
    assert pconn.take()[0].session_present
    pconn.send(Pubrel(9))
    assert pconn.take() == [Pubcomp(9)]
    assert [p.payload for p in conn.publishes()] == [b"held"]
    # b writes the records now; a stale write of a (an older generation) changes nothing.
    share_records(b, a)
    assert a.moves.directory["s"][0] == "b"


def test_takeover_of_a_connected_session_closes_it_without_will_and_moves_it():
    a, b, clock = nodes()
    watcher = a.h.connect("w", version=4)
    watcher.subscribe("will", qos=0)
    old = a.h.connect("c", version=5, clean_start=False, properties=EXPIRY,
                      will=Will("will", b"gone", 0, False, {}))
    old.subscribe("x", qos=1)
    share_records(a, b)
    clock[0] += 1
    conn, fetch = b.connect_waiting("c")
    arrive(b, fetch, a.moves.give("c", "b", fetch[2], a.h.now))
    a.h.drain()
    assert old.take() == [Disconnect(0x8E, {})]
    assert watcher.take() == []   # the session goes on: no will
    assert conn.take()[0].session_present
    assert a.h.log.has("Client c connected on node b, closing it here and moving its session there.")


def test_the_later_connect_keeps_the_session():
    a, b, clock = nodes()
    a.h.connect("c", version=5, clean_start=False, properties=EXPIRY)
    share_records(a, b)
    conn, fetch = b.connect_waiting("c")
    # a's connect is later than the one b asks for: a keeps it, b starts afresh.
    assert a.moves.give("c", "b", fetch[2] - 5, a.h.now) == REFUSED
    arrive(b, fetch, REFUSED)
    assert not conn.take()[0].session_present
    assert "c" in a.broker.sessions


def test_dead_holder_session_resumes_from_its_record():
    a, b, _ = nodes()
    sub = a.h.connect("s", version=4, clean_start=False)
    sub.subscribe("k/+", qos=1)
    sub.subscribe("gone", qos=1, packet_id=2)
    sub.unsubscribe("gone", packet_id=3)
    sub.lose()
    share_records(a, b)
    conn, fetch = b.connect_waiting("s", version=4, properties={})
    arrive(b, fetch, None)   # no answer: a died
    assert conn.take()[0].session_present
    assert b.moves.restored == 1
    other = b.h.connect("o", version=4)
    other.publish("k/1", b"x", qos=1, packet_id=1)
    other.publish("gone", b"no", qos=1, packet_id=2)
    assert [p.payload for p in conn.publishes()] == [b"x"]


def test_restarted_holder_says_restore_and_a_holder_that_ended_it_says_none():
    a, b, _ = nodes()
    offline_on(a, "s", "r", b)
    restarted = Node("a", [a.broker.wall_clock()])   # a again, without its sessions
    restarted.moves.record_seen("s", "a", b.moves.directory["s"][1], 1.0)
    assert restarted.moves.give("s", "b", 0.0, 0.0) == RESTORE
    conn, fetch = b.connect_waiting("s", version=4, properties={})
    arrive(b, fetch, RESTORE)
    assert conn.take()[0].session_present
    # A holder that ended the session (its deletion still on its way) says there is none.
    offline_on(a, "t", "t", b)
    a.broker.end_session(a.broker.sessions["t"], a.h.now)
    assert a.moves.give("t", "b", 0.0, a.h.now) == NONE
    assert b.moves.give("nobody", "a", 0.0, b.h.now) == NONE
    conn, fetch = b.connect_waiting("t", version=4, properties={})
    arrive(b, fetch, NONE)
    assert not conn.take()[0].session_present
    assert "t" in b.moves.deletes


def test_expired_record_is_not_resumed_and_is_deleted():
    a, b, clock = nodes()
    offline_on(a, "s", "e", b, version=5,
               properties={Property.SESSION_EXPIRY_INTERVAL: 10}, lose=False)
    clock[0] += 11
    conn, fetch = b.connect_waiting("s")
    arrive(b, fetch, None)
    assert not conn.take()[0].session_present
    assert "s" in b.moves.deletes and "s" not in b.moves.directory


def test_session_expiry_on_the_holder_deletes_the_record_everywhere():
    a, b, _ = nodes()
    offline_on(a, "s", "e", b, version=5,
               properties={Property.SESSION_EXPIRY_INTERVAL: 10}, lose=False)
    a.h.advance(11)
    share_records(a, b)
    assert "s" not in b.moves.directory and "s" not in a.moves.directory
    assert not b.moves.must_fetch("s", False)


def test_clean_start_discards_a_session_held_elsewhere():
    a, b, _ = nodes()
    offline_on(a, "s", "d", b)
    conn = b.h.connect("s", version=4, clean_start=True)
    assert not conn.connack.session_present
    assert b.held == []   # (no other node known: nothing to wait for)
    assert "s" in b.moves.deletes and "s" not in b.moves.directory
    (announced,) = b.router.connects
    assert announced[0] == "s" and announced[2] is True
    # a learns of the connect: its session ends, and its own stale record write (older
    # generation than the deletion) changes nothing anywhere.
    a.router.remote_connect("s", "b", announced[1], True, a.h.now)
    assert "s" not in a.broker.sessions
    share_records(b, a)
    a.moves.record_seen("s", "a", ["stale"], 0.0)
    assert "s" not in a.moves.directory
    assert a.h.log.has("Client s connected on node b, ending its session here.")


def test_persistent_connect_is_held_until_the_nodes_know_and_announced():
    a, b, _ = nodes()
    a.router.nodes["b"] = object()   # (another node is known: announcements are acknowledged)
    conn = a.h.open(5)
    conn.send(Connect(5, "p", False, 60, None, None, None, EXPIRY, "MQTT"))
    assert [client.client_id for client in a.held] == ["p"]
    (announced,) = a.router.connects
    assert announced[0] == "p" and announced[3] is True
    b.moves.connect_seen("p", "a", True)
    b.moves.connect_seen("q", "a", False)
    assert b.moves.directory == {"p": ("a", [])}
    clean = a.h.connect("q", version=4)
    assert clean.connack and [client.client_id for client in a.held] == ["p"]   # a clean connect is not held
    assert a.moves.changed.keys() == {"p"}   # and has no record


def test_damaged_transfer_costs_the_session_not_the_node():
    a, b, _ = nodes()
    offline_on(a, "s", "z", b)
    conn, fetch = b.connect_waiting("s", version=4, properties={})
    arrive(b, fetch, b"not a persistence file")
    assert not conn.take()[0].session_present
    assert b.h.log.has("Cluster: could not resume the session of s")


def test_remote_connect_while_connected_takes_over_and_leaves_the_record_to_the_new_node():
    a, b, _ = nodes()
    old = a.h.connect("c", version=5, clean_start=False, properties=EXPIRY)
    a.router.remote_connect("c", "b", a.broker.wall_clock() + 1, False, a.h.now)
    a.h.drain()
    assert old.take() == [Disconnect(0x8E, {})]
    assert a.moves.directory["c"][0] == "b"
    puts, deletes = a.moves.take_records(a.h.now)
    assert deletes == []


def test_transfer_and_record_round_trip():
    a, b, _ = nodes()
    sub = a.h.connect("s", version=5, clean_start=False, properties=EXPIRY,
                      will=Will("w", b"bye", 1, False, {Property.WILL_DELAY_INTERVAL: 30}))
    sub.subscribe("r/#", qos=2, no_local=True)
    sub.lose()   # the will waits for its delay
    session = a.broker.sessions["s"]
    data = dump_session(a.broker, session, a.h.now)
    row = record_row(session, a.h.now, a.broker.wall_clock())
    moved = load_session(b.broker, data, b.h.now)
    assert moved.subscriptions["r/#"].no_local and moved.will is not None
    fresh = Node("c", [a.broker.wall_clock()])
    restored = restore_record(fresh.broker, row, fresh.h.now)
    assert list(restored.subscriptions) == ["r/#"] and restored.expiry_interval == 300


def test_connect_times_are_forgotten_with_the_session():
    """Router.clients (the takeover tie-break) holds only ids with a session here: it
    does not grow with every client id a long-running node has seen."""
    a, _b, _clock = nodes()
    for n in range(50):
        conn = a.h.connect(f"clean-{n}", version=4, clean_start=True)
        conn.disconnect()
    assert a.router.clients == {}
    kept = a.h.connect("kept", version=4, clean_start=False)
    kept.disconnect()                       # offline, still here: its time stays
    assert list(a.router.clients) == ["kept"]
    a.moves.take_records(a.h.now)
    again = a.h.connect("kept", version=4, clean_start=True)   # clean start ends it
    again.disconnect()
    _puts, deletes = a.moves.take_records(a.h.now)
    assert [client_id for client_id, _ in deletes] == ["kept"]
    assert a.router.clients == {}


# -- Moving without loss: the cut per publishing node ---------------------------------

def carry(source: Node, nodes: dict) -> None:
    """Deliver `source`'s record batches to the nodes they are for, as NATS would."""
    outbox, _retained = source.router.take_outbox()
    for subject, pieces in outbox.items():
        for node in nodes.values():
            if subject == node.router.inbox_subject(node.node_id):
                node.router.receive(b"".join(pieces), node.h.now, source.node_id)
                node.h.drain()


def test_messages_published_anywhere_during_a_move_arrive_once():
    """A third node publishes while the session moves from a to b: every message it
    published before its cut is in the session a hands over, every one after it in b's
    placeholder, and none in both; the same for a's own and b's own publishers."""
    clock = [1_000_000.0]
    a, b, c = Node("a", clock), Node("b", clock), Node("c", clock)
    every = {"a": a, "b": b, "c": c}
    offline_on(a, "s", "t/+", b, c, version=5, properties=EXPIRY)
    for node in every.values():   # every node knows every other's interest
        for other in every.values():
            if other is not node:
                node.router.apply_full(other.node_id, 0, other.router.snapshot()["filters"], [], node.h.now)
    pubs = {name: node.h.connect(f"p{name}", version=4) for name, node in every.items()}
    ids = iter(range(1, 100))

    def publish(name, payload):
        pubs[name].publish("t/x", payload, qos=1, packet_id=next(ids))

    conn, fetch = b.connect_waiting("s")
    answer = a.moves.prepare("s", "b", fetch[2], a.h.now)
    publish("c", b"c-before")             # c knows nothing of the move: to a only
    assert b.moves.prepared(fetch[0], answer, b.h.now)
    (change,) = b.router.take_changes()   # the placeholder's interest
    a.moves.marker("s", "b", "a", "b")    # b's cut is the placeholder: its marker goes at once
    publish("b", b"b-own")                # into the placeholder; a, which gets it too, keeps out
    carry(b, every)
    for node in (a, c):
        assert node.router.apply_delta("b", 1, [change], node.h.now)
    publish("c", b"c-to-both")            # c routes to a and b now, but has not cut yet
    carry(c, every)
    # c's cut: markers to a and b after what it routed before.
    assert c.moves.announced("s", "a", "b") == ("a", "b")
    publish("c", b"c-after")
    a.moves.marker("s", "c", "a", "b")
    b.moves.marker("s", "c", "a", "b")
    carry(c, every)
    publish("a", b"a-before")             # a's own, before its cut: a's session has it
    carry(a, every)
    assert a.moves.announced("s", "a", "b") == ("b",)
    publish("a", b"a-after")              # after: b's
    b.moves.marker("s", "a", "a", "b")
    carry(a, every)
    assert a.moves.outgoing["s"].complete
    arrive(b, fetch, a.moves.hand_over("s", "b", 0.0, a.h.now))
    connack, *packets = conn.take()
    assert connack.session_present
    # a's session first (what reached a before each cut), then the placeholder's.
    assert [p.payload for p in packets] == [
        b"c-before", b"c-to-both", b"a-before", b"b-own", b"c-after", b"a-after"]
    assert not a.moves.outgoing and not b.moves.incoming
    assert "_send_or_queue" not in vars(a.broker) and "_send_or_queue" not in vars(b.broker)


def moving(a: Node, b: Node, client_id: str = "s"):
    """A move of `client_id` from a to b, prepared: b's placeholder is open."""
    for node, other in ((a, b), (b, a)):
        node.router.apply_full(other.node_id, 0, other.router.snapshot()["filters"], [], node.h.now)
    conn, fetch = b.connect_waiting(client_id)
    answer = a.moves.prepare(client_id, "b", fetch[2], a.h.now)
    assert b.moves.prepared(fetch[0], answer, b.h.now)
    return conn, fetch


def test_holder_dying_mid_move_leaves_the_placeholder_as_the_session():
    a, b, _ = nodes()
    offline_on(a, "s", "d/+", b, version=5, properties=EXPIRY)
    conn, fetch = moving(a, b)
    assert b.moves.changed == {}          # a placeholder writes no record
    pub = b.h.connect("p", version=4)
    pub.publish("d/1", b"after the cut", qos=1, packet_id=1)
    arrive(b, fetch, None)                # the holder never answers `give`
    connack, *packets = conn.take()
    assert connack.session_present and [p.payload for p in packets] == [b"after the cut"]
    assert b.moves.restored == 1 and "s" in b.moves.changed   # its record is b's now
    assert list(b.broker.sessions["s"].subscriptions) == ["d/+"]


def test_refused_move_closes_the_placeholder_and_the_holder_keeps_the_session():
    a, b, _ = nodes()
    offline_on(a, "s", "r", b, version=5, properties=EXPIRY)
    conn, fetch = moving(a, b)
    again = a.h.connect("s", version=5, clean_start=False, properties=EXPIRY)   # back on a meanwhile
    assert again.connack.session_present
    assert a.moves.hand_over("s", "b", 0.0, a.h.now) == REFUSED   # the later connect keeps it
    arrive(b, fetch, REFUSED)
    assert not conn.take()[0].session_present
    assert not b.moves.incoming and not a.moves.outgoing
    assert "_send_or_queue" not in vars(b.broker)


def test_a_node_that_leaves_is_not_waited_for_and_an_unclaimed_move_is_abandoned():
    a, b, clock = nodes()
    c = Node("c", clock)
    offline_on(a, "s", "g", b, c, version=5, properties=EXPIRY)
    a.router.apply_full("c", 0, [], [], a.h.now)
    conn, fetch = moving(a, b)
    assert a.moves.outgoing["s"].waiting == {"a", "b", "c"}
    a.moves.announced("s", "a", "b")
    a.moves.marker("s", "b", "a", "b")
    assert a.moves.node_gone("c") == ["s"]   # complete without c's marker
    b.moves.incoming["s"].waiting.add("c")
    b.moves.node_gone("c")
    arrive(b, fetch, a.moves.hand_over("s", "b", 0.0, a.h.now))
    assert conn.take()[0].session_present
    b.moves.finish_incoming("s")
    assert not b.moves.incoming
    # A move whose new node never asks for the session: the holder keeps it.
    offline_on(a, "t", "g", b, version=5, properties=EXPIRY)
    conn, fetch = moving(a, b, "t")
    a.moves.abandon("t", "b")
    assert not a.moves.outgoing and "t" in a.broker.sessions
    assert "_send_or_queue" not in vars(a.broker)


def test_a_second_connect_during_the_move_waits_for_it_then_takes_over():
    a, b, _ = nodes()
    offline_on(a, "s", "w", b, version=5, properties=EXPIRY)
    first, fetch = moving(a, b)
    second = b.h.open(5)
    second.send(Connect(5, "s", False, 60, None, None, None, EXPIRY, "MQTT"))
    assert second.inbox == [] and b.moves.take_fetches() == []   # no second move: it waits
    arrive(b, fetch, a.moves.hand_over("s", "b", 0.0, a.h.now))
    connack, taken_over = first.take()
    assert connack.session_present and taken_over == Disconnect(0x8E, {})
    (connack,) = second.take()
    assert connack.session_present and b.broker.sessions["s"].client is second.client


def test_client_back_on_the_holder_during_a_move_gets_everything():
    a, b, _ = nodes()
    offline_on(a, "s", "k", b, version=5, properties=EXPIRY)
    conn, fetch = moving(a, b)
    a.moves.announced("s", "a", "b")        # a's own publishes are b's from now...
    again = a.h.connect("s", version=5, clean_start=False, properties=EXPIRY)
    pub = a.h.connect("p", version=4)
    pub.publish("k", b"kept", qos=1, packet_id=1)
    assert [p.payload for p in again.publishes()] == [b"kept"]   # ...but its client is here again


def test_generations_of_deleted_records_are_forgotten_after_a_while():
    a, b, _ = nodes()
    for n in range(20):
        b.moves.record_seen(f"gone-{n}", "a", ["row"], 5.0)
        b.moves.record_seen(f"gone-{n}", None, None, 6.0)
    b.moves.record_seen("gone-0", "a", ["stale"], 5.5)   # overtaken: still rejected
    assert "gone-0" not in b.moves.directory
    b.h.advance(GENERATION_KEEP + 1)
    b.moves.record_seen("live", "a", ["row"], 7.0)
    assert set(b.moves.generations) == {"live"} and b.moves.deleted == {}


def test_a_client_gone_during_its_move_leaves_the_session_on_the_new_node():
    a, b, _ = nodes()
    offline_on(a, "s", "q", b, version=5, properties=EXPIRY)
    pub = a.h.connect("p", version=4)
    pub.publish("q", b"queued", qos=1, packet_id=1)
    conn, fetch = moving(a, b)
    conn.lose()   # the client gives up while its session is on the way
    arrive(b, fetch, a.moves.hand_over("s", "b", fetch[2], a.h.now))
    session = b.broker.sessions["s"]
    assert session.client is None and session.queued == 1
    (put,), _ = b.moves.take_records(b.h.now)
    assert put[0] == "s" and put[2] == fetch[2]   # dated by the connect that brought it


def test_sweep_deletes_expired_records_of_nodes_that_are_gone():
    a, b, clock = nodes()
    short = {Property.SESSION_EXPIRY_INTERVAL: 60}
    offline_on(a, "expired", "e", b, version=5, properties=short, lose=False)
    offline_on(a, "kept", "k", b, version=5, properties={Property.SESSION_EXPIRY_INTERVAL: 3600}, lose=False)
    offline_on(a, "never", "n", b, version=4, lose=False)            # v3: no expiry of its own
    a.h.connect("connected", version=5, clean_start=False, properties=short)   # connected when a went
    share_records(a, b)
    b.moves.node_gone("a")
    clock[0] += 30
    assert b.moves.sweep({"b"}, clock[0]) == 0
    clock[0] += 40   # 70 s after the disconnections and after a was seen going
    assert b.moves.sweep({"b"}, clock[0]) == 2
    _puts, deletes = b.moves.take_records(b.h.now)
    assert sorted(client_id for client_id, _ in deletes) == ["connected", "expired"]
    assert set(b.moves.directory) == {"kept", "never"}
    # Deletions carry the record's generation: every node takes them.
    a.moves.record_seen("expired", None, None, dict(deletes)["expired"])
    assert "expired" not in a.moves.directory
    # A live holder's records are never swept.
    assert a.moves.sweep({"a", "b"}, clock[0] + 10_000) == 0


def test_sweep_waits_a_round_for_a_holder_it_never_saw():
    a, b, clock = nodes()
    offline_on(a, "s", "e", b, version=5, properties={Property.SESSION_EXPIRY_INTERVAL: 1}, lose=False)
    clock[0] += 10
    assert b.moves.sweep({"b"}, clock[0]) == 0   # a may just not be announced yet
    assert b.moves.sweep({"b", "a"}, clock[0]) == 0   # there it is
    assert b.moves.sweep({"b"}, clock[0]) == 0
    assert b.moves.sweep({"b"}, clock[0]) == 1   # absent twice in a row: gone
