"""broker/router.py in-process: two or three real Brokers (tests/broker/harness.py) whose
Routers are wired to each other through the router's own sans-I/O interface, as the
NATS edge (server/cluster.py) wires them: `take_changes` -> `apply_delta` (a gap ->
`snapshot` -> `apply_full`), `take_outbox` -> `receive` / `receive_shared` /
`store_retained`. Real code on both sides, no NATS and no mocks; the subprocess tests
in this folder check the same behaviour through nats-server."""

from __future__ import annotations

import pytest

from midge.broker.message import Message
from midge.broker.router import Router, decode_records, encode_record
from midge.protocol.constants import Property, ReasonCode
from midge.protocol.packets import Puback, Publish, Subscribe, Subscription
from midge.server.cluster import install
from tests.broker.harness import Harness


class Node:
    def __init__(self, mesh: Mesh, node_id: str, **options):
        self.mesh = mesh
        self.node_id = node_id
        self.h = Harness(now=mesh.now, **options)
        # Wall clock = the harness clock plus a fixed offset (nodes agree, as with NTP).
        self.h.broker.wall_clock = lambda: self.h.now + 1_700_000_000.0
        self.router = Router(self.h.broker, node_id, "midge")
        install(self.h.broker, self.router)
        self.router.hold = self._hold
        self.seq = 0
        self.holds: list[tuple[str, bool]] = []

    def _hold(self, client, changed: bool = True) -> None:
        self.holds.append((client.client_id, changed))

    def connect(self, client_id: str, version: int = 4, **options):
        return self.h.connect(client_id, version, **options)


class Mesh:
    """What NATS and the edges do, done synchronously: `pump()` until nothing moves."""

    def __init__(self):
        self.now = 1000.0
        self.nodes: dict[str, Node] = {}
        self.stream: dict[str, bytes] = {}   # the retained stream: subject -> last record
        self.lose_next_delta_to: set[str] = set()
        self.queue_turn = 0                  # round robin over a queue group's nodes

    def add(self, node_id: str, **options) -> Node:
        node = Node(self, node_id, **options)
        for record in self.stream.values():   # the retained stream is read on start
            node.router.store_retained(record, node.h.now)
        for other in self.nodes.values():     # full announcements both ways
            self._full(node, other)
            self._full(other, node)
        self.nodes[node_id] = node
        return node

    def _full(self, sender: Node, receiver: Node) -> None:
        snapshot = sender.router.snapshot()
        receiver.router.apply_full(sender.node_id, sender.seq, snapshot["filters"], snapshot["shared"],
                                   receiver.h.now)

    def remove(self, node: Node) -> None:
        """A node died: the others forget it (the edge's 'bye' or heartbeat timeout)."""
        del self.nodes[node.node_id]
        for other in self.nodes.values():
            other.router.forget_node(node.node_id)

    def advance(self, seconds: float) -> None:
        self.now += seconds
        for node in self.nodes.values():
            node.h.advance(seconds)

    def pump(self) -> None:
        moved = True
        while moved:
            moved = False
            for node in list(self.nodes.values()):
                moved |= self._announce(node)
                moved |= self._send(node)
                node.router.connects.clear()
            for node in self.nodes.values():
                node.h.drain()

    def _announce(self, node: Node) -> bool:
        changes = node.router.take_changes()
        if not changes:
            return False
        node.seq += 1
        for other in self.nodes.values():
            if other is node:
                continue
            if other.node_id in self.lose_next_delta_to:
                self.lose_next_delta_to.discard(other.node_id)
                continue
            if not other.router.apply_delta(node.node_id, node.seq, changes, other.h.now):
                # A gap: the edge asks for a full announcement ("hello").
                self._full(node, other)
        return True

    def _send(self, node: Node) -> bool:
        outbox, retained = node.router.take_outbox()
        for subject, record in retained:
            self.stream[subject] = record
            for other in self.nodes.values():
                if other is not node:
                    other.router.store_retained(record, other.h.now)
        for subject, pieces in outbox.items():
            data = b"".join(pieces)
            self._deliver(subject, data)
        return bool(outbox or retained)

    def _deliver(self, subject: str, data: bytes) -> None:
        for other in self.nodes.values():
            if subject == other.router.inbox_subject(other.node_id):
                other.router.receive(data, other.h.now)
                return
        # A shared group's subject: one of the nodes with members (a NATS queue group).
        members = [(node, key) for node in self.nodes.values() for key in node.router.local_shared
                   if node.router.shared_subject(*key) == subject]
        assert members, f"nobody listens on {subject}"
        node, (group, topic_filter) = members[self.queue_turn % len(members)]
        self.queue_turn += 1
        node.router.receive_shared(group, topic_filter, data, node.h.now)


@pytest.fixture
def mesh():
    return Mesh()


def payloads(conn) -> list:
    return [(p.topic, p.payload) for p in conn.publishes()]


# -- routing ---------------------------------------------------------------------------

def test_wildcards_route_one_copy_per_node_with_the_highest_qos(mesh):
    a, b = mesh.add("a"), mesh.add("b")
    sub = b.connect("sub")
    sub.subscribe("w/+/c", qos=1)
    sub.subscribe("w/#", qos=0, packet_id=2)
    mesh.pump()
    pub = a.connect("pub")
    pub.publish("w/x/c", b"1", qos=1)
    pub.publish("w", b"2")           # "w/#" matches its parent level
    pub.publish("other/t", b"3")     # nobody elsewhere: nothing routed
    assert a.router.routed_out == 2
    mesh.pump()
    got = sub.publishes()
    assert [(p.topic, p.payload, p.qos) for p in got] == [("w/x/c", b"1", 1), ("w", b"2", 0)]
    assert b.router.routed_in == 2
    assert a.router.route_for("other/t") == ((), ())


def test_dollar_topics_and_sys(mesh):
    a, b = mesh.add("a"), mesh.add("b")
    sub = b.connect("sub")
    sub.subscribe("#")
    sub.subscribe("+/x", packet_id=2)
    sub.subscribe("$app/#", packet_id=3)
    sub.subscribe("$SYS/#", packet_id=4)
    mesh.pump()
    pub = a.connect("pub")
    pub.publish("$app/x", b"dollar")   # not for "#" nor "+/x", for "$app/#"
    pub.publish("$SYS/fake", b"sys")   # each node's $SYS is its own: never routed
    pub.publish("plain/x", b"p")
    mesh.pump()
    assert payloads(sub) == [("$app/x", b"dollar"), ("plain/x", b"p")]


def test_v3_and_v5_subscribers_get_the_same_message(mesh):
    a, b = mesh.add("a"), mesh.add("b")
    v3 = b.connect("v3")
    v5 = b.connect("v5", version=5)
    v3.subscribe("m/#")
    v5.subscribe("m/#")
    mesh.pump()
    pub = a.connect("pub")
    big = bytes(range(256)) * 100     # past the size where the PUBLISH bytes are reused
    for payload in (b"small", big, b""):
        pub.publish("m/t", payload)
    mesh.pump()
    assert payloads(v3) == payloads(v5) == [("m/t", b"small"), ("m/t", big), ("m/t", b"")]


def test_v5_properties_expiry_sub_ids_and_options_cross(mesh):
    a, b = mesh.add("a"), mesh.add("b")
    sub = b.connect("sub", version=5)
    sub.send(Subscribe(1, [Subscription("p/#", 1, retain_as_published=True)],
                       {Property.SUBSCRIPTION_IDENTIFIER: 42}))
    sub.take()
    low = b.connect("low", version=5)
    low.subscribe("p/#", qos=0)
    mesh.pump()
    pub = a.connect("pub", version=5)
    props = {Property.USER_PROPERTY: [("k", "v"), ("k", "w")], Property.CONTENT_TYPE: "text/plain",
             Property.RESPONSE_TOPIC: "p/reply", Property.CORRELATION_DATA: b"\x00\x01",
             Property.PAYLOAD_FORMAT_INDICATOR: 1, Property.MESSAGE_EXPIRY_INTERVAL: 60}
    pub.publish("p/a", b"hello", qos=1, retain=True, properties=props)
    assert pub.take_one(Puback).reason_code == 0
    mesh.advance(10)   # in transit for 10 s: the expiry counts from the original publish
    mesh.pump()
    [got] = sub.publishes()
    assert (got.topic, got.payload, got.qos, got.retain) == ("p/a", b"hello", 1, True)
    expected = {k: v for k, v in props.items() if k != Property.MESSAGE_EXPIRY_INTERVAL}
    assert {k: got.properties[k] for k in expected} == expected
    assert got.properties[Property.SUBSCRIPTION_IDENTIFIER] == [42]
    assert got.properties[Property.MESSAGE_EXPIRY_INTERVAL] == 50
    [downgraded] = low.publishes()
    assert (downgraded.qos, downgraded.retain) == (0, False)   # QoS 0 subscription, no RAP


def test_a_message_expired_in_transit_is_not_delivered(mesh):
    a, b = mesh.add("a"), mesh.add("b")
    sub = b.connect("sub", version=5)
    sub.subscribe("e/#", qos=1)
    mesh.pump()
    pub = a.connect("pub", version=5)
    pub.publish("e/t", b"late", qos=1, properties={Property.MESSAGE_EXPIRY_INTERVAL: 5})
    pub.publish("e/t", b"on time", qos=1, packet_id=2,
                properties={Property.MESSAGE_EXPIRY_INTERVAL: 50})
    mesh.advance(10)
    mesh.pump()
    assert payloads(sub) == [("e/t", b"on time")]


def test_no_local_compares_the_original_publisher(mesh):
    a, b = mesh.add("a"), mesh.add("b")
    sub = b.connect("me", version=5)
    sub.subscribe("n/#", no_local=True)
    mesh.pump()
    # The same client id on two nodes cannot happen (takeover), so build the message
    # a publisher "me" on node a would route, and see node b honour No Local.
    message = Message("n/t", b"x", 0, False, {}, None, "me", None, b"")
    a.router.route(message, a.h.now)
    other = Message("n/t", b"y", 0, False, {}, None, "someone", None, b"")
    a.router.route(other, a.h.now)
    mesh.pump()
    assert payloads(sub) == [("n/t", b"y")]


def test_v5_puback_counts_subscribers_on_other_nodes(mesh):
    a, b = mesh.add("a"), mesh.add("b")
    pub = a.connect("pub", version=5)
    pub.publish("q/t", b"x", qos=1)
    assert pub.take_one(Puback).reason_code == ReasonCode.NO_MATCHING_SUBSCRIBERS
    sub = b.connect("sub")
    sub.subscribe("q/#")
    mesh.pump()
    assert a.h.broker.subs.has_subscribers("q/t")
    pub.publish("q/t", b"x", qos=1, packet_id=2)
    assert pub.take_one(Puback).reason_code == 0


# -- interest --------------------------------------------------------------------------

def test_interest_changes_are_followed_and_a_gap_asks_for_everything(mesh):
    a, b = mesh.add("a"), mesh.add("b")
    sub = b.connect("sub")
    sub.subscribe("i/1")
    mesh.pump()
    assert b.holds == [("sub", True)]   # the SUBACK waited for the other nodes
    pub = a.connect("pub")
    pub.publish("i/1", b"first")
    mesh.pump()
    assert payloads(sub) == [("i/1", b"first")]
    sub.unsubscribe("i/1")
    mesh.pump()
    pub.publish("i/1", b"nobody")
    assert a.router.routed_out == 1
    # Node a misses the next delta; the one after reveals the gap and it gets a full list.
    mesh.lose_next_delta_to.add("a")
    sub.subscribe("i/2", packet_id=3)
    mesh.pump()
    pub.publish("i/2", b"lost delta")
    assert a.router.routed_out == 1
    sub.subscribe("i/3", packet_id=4)
    mesh.pump()
    pub.publish("i/2", b"two")
    pub.publish("i/3", b"three")
    mesh.pump()
    assert payloads(sub) == [("i/2", b"two"), ("i/3", b"three")]
    assert a.router.nodes["b"].filters.keys() == {"i/2", "i/3"}


def test_second_subscriber_of_a_filter_is_not_announced_again(mesh):
    a, b = mesh.add("a"), mesh.add("b")
    one = b.connect("one")
    two = b.connect("two")
    one.subscribe("s/#")
    mesh.pump()
    two.subscribe("s/#")
    assert b.router.take_changes() == []
    assert b.holds == [("one", True), ("two", False)]
    one.lose()
    assert b.router.take_changes() == []        # "two" still holds the filter
    two.lose()
    assert b.router.take_changes() == [("-", "s/#", None)]


def test_node_loss_stops_routing_to_it(mesh):
    a, b, c = mesh.add("a"), mesh.add("b"), mesh.add("c")
    for node in (b, c):
        node.connect("sub").subscribe("l/#")
    mesh.pump()
    pub = a.connect("pub")
    pub.publish("l/t", b"both")
    outbox, _ = a.router.take_outbox()
    assert sorted(outbox) == sorted(n.router.inbox_subject(n.node_id) for n in (b, c))
    mesh.remove(c)
    pub.publish("l/t", b"b only")
    outbox, _ = a.router.take_outbox()
    assert list(outbox) == [b.router.inbox_subject("b")]
    assert "c" not in a.router.nodes


def test_a_restarted_node_replaces_what_was_known_of_it(mesh):
    a, b = mesh.add("a"), mesh.add("b")
    b.connect("sub").subscribe("r/old")
    mesh.pump()
    a.router.apply_full("b", 0, ["r/new"], [], a.h.now)
    assert a.router.route_for("r/old") == ((), ())
    assert a.router.route_for("r/new")[0] == (a.router.inbox_subject("b"),)
    assert not a.router.apply_delta("b", 5, [("+", "r/x", None)], a.h.now)   # a gap
    assert not a.router.apply_delta("zz", 1, [("+", "r/x", None)], a.h.now)  # unknown node


# -- shared subscriptions --------------------------------------------------------------

def test_share_each_message_goes_to_exactly_one_member_cluster_wide(mesh):
    a, b = mesh.add("a"), mesh.add("b")
    members = [a.connect("ma"), b.connect("mb1"), b.connect("mb2")]
    for member in members:
        member.subscribe("$share/g/sh/#", qos=1)
    mesh.pump()
    pub = a.connect("pub")
    for index in range(12):   # one batch each: NATS gives each batch to one node
        pub.publish("sh/t", str(index).encode(), qos=1, packet_id=index + 1)
        mesh.pump()
    got = [payloads(member) for member in members]
    everything = sorted(p for member in got for _, p in member)
    assert everything == sorted(str(i).encode() for i in range(12))   # each exactly once
    assert all(got), got          # node a's own member got its share through the group
    c = mesh.add("c")             # a node that starts learns the group from full lists
    assert c.router.route_for("sh/t")[1] == (a.router.shared_subject("g", "sh/#"),)
    # The last member on b leaves: b's group membership is withdrawn everywhere.
    for member in members[1:]:
        member.unsubscribe("$share/g/sh/#")
    mesh.pump()
    assert a.router._shared_nodes == {("g", "sh/#"): {"a"}}
    pub.publish("sh/t", b"a only", qos=1, packet_id=20)
    mesh.pump()
    assert payloads(members[0]) == [("sh/t", b"a only")]


def test_share_batch_for_a_group_that_left_meanwhile_is_dropped_and_counted(mesh):
    a, b = mesh.add("a"), mesh.add("b")
    record = encode_record(Message("x/y", b"p", 0, False, {}, None, "pub"), a.h.now, 0.0)
    assert b.router.receive_shared("g", "x/#", record, b.h.now) == 1
    assert b.h.broker.stats.publish_dropped == 1


# -- retained messages -----------------------------------------------------------------

def test_retained_messages_reach_every_node_and_late_joiners(mesh):
    a, b = mesh.add("a"), mesh.add("b")
    pub = a.connect("pub", version=5)
    mesh.pump()
    pub.publish("ret/t", b"kept", qos=1, retain=True, properties={Property.CONTENT_TYPE: "x"})
    assert a.holds == [("pub", True)]   # its PUBACK waits until every node stored it
    pub.publish("ret/gone", b"soon", qos=1, packet_id=2, retain=True,
                properties={Property.MESSAGE_EXPIRY_INTERVAL: 5})
    pub.publish("$SYS/ret", b"own", retain=True)   # never to the cluster store
    mesh.pump()
    sub = b.connect("sub", version=5)
    sub.subscribe("ret/#")
    got = sub.publishes()
    assert [(p.topic, p.payload, p.retain) for p in got] == [("ret/gone", b"soon", True),
                                                             ("ret/t", b"kept", True)] or \
        sorted((p.topic, p.payload) for p in got) == [("ret/gone", b"soon"), ("ret/t", b"kept")]
    assert next(p for p in got if p.topic == "ret/t").properties[Property.CONTENT_TYPE] == "x"
    assert all("$SYS" not in subject for subject in mesh.stream)
    mesh.advance(10)   # the second one expires (counted from its original publish)
    c = mesh.add("c")
    late = c.connect("late")
    late.subscribe("ret/#")
    assert payloads(late) == [("ret/t", b"kept")]
    # An empty retained payload clears it everywhere.
    pub.publish("ret/t", b"", qos=1, packet_id=3, retain=True)
    mesh.pump()
    for node in (b, c):
        again = node.connect("again")
        again.subscribe("ret/#")
        assert again.publishes() == []


# -- records ---------------------------------------------------------------------------

def test_records_round_trip_and_a_damaged_batch_is_refused():
    now, wall = 100.0, 1_700_000_000.0
    messages = [
        Message("t/1", b"a", 1, True, {Property.USER_PROPERTY: [("k", "v")]}, now + 30, "c1"),
        Message("t/1", b"b" * 300, 2, False, {}, None, "c1"),
        Message("t/\u00e9 x", b"", 0, False, {}, None, None),
        Message("t/2", b"d", 0, False, {}, None, "c2"),
    ]
    data = b"".join(encode_record(m, now, wall) for m in messages)
    later = now + 5
    decoded = [m for m, _ in decode_records(data, later, wall + 5)]
    assert [(m.topic, m.payload, m.qos, m.retain, m.origin_id) for m in decoded] == \
        [(m.topic, m.payload, m.qos, m.retain, m.origin_id) for m in messages]
    assert decoded[0].properties == {Property.USER_PROPERTY: [("k", "v")]}
    assert decoded[0].expiry_at == pytest.approx(now + 30)
    for message in decoded:   # built field by field (no __init__): none may be missing
        assert all(hasattr(message, name) for name in Message.__slots__), message
    with pytest.raises(ValueError):
        decode_records(b"\x00\x20\x03abc", now, wall)   # not a PUBLISH


def test_a_publish_from_another_node_is_never_routed_back(mesh):
    a, b = mesh.add("a"), mesh.add("b")
    a.connect("sa").subscribe("loop/#")
    b.connect("sb").subscribe("loop/#")
    mesh.pump()
    a.connect("pub").publish("loop/t", b"once")
    mesh.pump()
    assert (a.router.routed_out, b.router.routed_out, b.router.routed_in) == (1, 0, 1)
    assert b.h.broker.router is b.router   # restored after the batch


def test_publish_packet_passes_through_unchanged(mesh):
    """The bytes a v3 publisher sent are what a v3 subscriber on another node gets."""
    a, b = mesh.add("a"), mesh.add("b")
    sub = b.connect("sub")
    sub.subscribe("b/#")
    mesh.pump()
    pub = a.connect("pub")
    pub.send(Publish("b/t", b"wire", 0))
    mesh.pump()
    assert payloads(sub) == [("b/t", b"wire")]
