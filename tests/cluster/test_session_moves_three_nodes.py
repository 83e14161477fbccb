"""Persistent sessions moving between the nodes of a three-node cluster (docs/cluster.md,
issue 10: "nothing acknowledged is lost while the cluster is healthy"), with real
nats-server and midge processes: while messages flow from a third node, across three
nodes in turn, and a session too large for NATS's max_payload."""

from __future__ import annotations

import subprocess
import threading

import pytest

from tests.cluster.conftest import Nodes
from tests.cluster.test_sessions import persistent, publish, wait_for_record
from tests.conformance import packets as p
from tests.conformance.wire import TIMEOUT, Closed, connect, expect_publish, subscribe
from tests.peers import require_module, require_peer

# Unlimited queues: a message dropped because a queue was full would look like a loss.
UNLIMITED = "max_queued_messages 0\n"


# -- 1. moves while a third node publishes ---------------------------------------------

class Publisher(threading.Thread):
    """Numbered messages ("1", "2", ...) from a client on one node, each completed (PUBACK,
    or PUBCOMP for QoS 2) before the next; `acked` holds the numbers whose flow completed.
    It stays at most `window` numbers ahead of what the subscriber got, so the queues stay
    short and the moves happen while messages flow."""

    def __init__(self, port: int, client_id: str, topic: str, qos: int, window: int = 200):
        super().__init__(daemon=True)
        self.conn = connect(port, client_id, 4)
        self.topic = topic
        self.qos = qos
        self.window = window
        self.acked: list[int] = []
        self.highest_received = 0
        self.changed = threading.Condition()
        self.stopping = False
        self.error: BaseException | None = None

    def run(self) -> None:
        number = 0
        try:
            while True:
                with self.changed:
                    # Paced by the subscriber's progress (an event), never by a clock.
                    while not self.stopping and number - self.highest_received >= self.window:
                        self.changed.wait(TIMEOUT)
                    if self.stopping:
                        return
                number += 1
                publish(self.conn, self.topic, self.qos, str(number).encode(), number % 65535 + 1)
                with self.changed:
                    self.acked.append(number)
                    self.changed.notify_all()
        except BaseException as exc:   # re-raised by stop()
            self.error = exc

    def received(self, number: int) -> None:
        with self.changed:
            if number > self.highest_received:
                self.highest_received = number
                self.changed.notify_all()

    def last_acked(self) -> int:
        with self.changed:
            return self.acked[-1] if self.acked else 0

    def stop(self) -> list[int]:
        """Stop after the message under way is acknowledged; every acknowledged number."""
        with self.changed:
            self.stopping = True
            self.changed.notify_all()
        self.join(TIMEOUT)
        assert not self.is_alive(), "the publisher did not stop"
        if self.error is not None:
            raise self.error
        return list(self.acked)


class Subscriber:
    """The persistent subscriber's side: what reached the application, across
    connections. QoS 1: every PUBLISH is handed over and PUBACKed. QoS 2: a PUBLISH whose
    packet id awaits its PUBREL (a resend after a move) is not handed over again."""

    def __init__(self, client_id: str, ver: int, publisher: Publisher):
        self.client_id = client_id
        self.ver = ver
        self.publisher = publisher
        self.deliveries: list[tuple[int, bool, int]] = []   # (number, dup flag, connection)
        self.resends = 0          # QoS 2 PUBLISH resent for a packet id awaiting PUBREL
        self.awaiting_pubrel: set[int] = set()
        self.connection = 0
        self.conn = None

    def connect(self, node) -> None:
        self.connection += 1
        self.conn = persistent(node.port, self.client_id, self.ver)
        self.node = node

    def handle(self, packet: dict) -> int | None:
        """Answer one packet; the number handed to the application, if any."""
        conn, ver = self.conn, self.ver
        if packet["type"] == "PUBREL":
            self.awaiting_pubrel.discard(packet["mid"])
            conn.send(p.gen_pubcomp(packet["mid"], ver))
            return None
        assert packet["type"] == "PUBLISH", packet
        number = int(packet["payload"])
        if packet["qos"] == 1:
            conn.send(p.gen_puback(packet["mid"], ver))
        else:
            assert packet["qos"] == 2, packet
            conn.send(p.gen_pubrec(packet["mid"], ver))
            if packet["mid"] in self.awaiting_pubrel:
                assert packet["dup"], packet
                self.resends += 1
                return None
            self.awaiting_pubrel.add(packet["mid"])
        self.deliveries.append((number, packet["dup"], self.connection))
        self.publisher.received(number)
        return number

    def read_until(self, done, what: str) -> None:
        """Handle packets until `done(number)` holds for a delivered number (done None:
        until a PINGRESP)."""
        while True:
            try:
                packet = self.conn.receive(TIMEOUT)
            except AssertionError as exc:
                raise AssertionError(f"{what} on node {self.node.node_id}: {exc}; so far {self.summary()}") from None
            if packet["type"] == "PINGRESP" and done is None:
                return
            number = self.handle(packet)
            if number is not None and done is not None and done(number):
                return

    def settle(self) -> None:
        """PINGREQ, handling packets until the PINGRESP."""
        self.conn.send(p.gen_pingreq())
        self.read_until(None, "PINGRESP")

    def barrier(self) -> None:
        """PINGREQ, ignoring what arrives until the PINGRESP: then the node has read every
        acknowledgement sent before (one connection is read in order), so a takeover
        now cannot find one of them unread. What was ignored is resent after the move."""
        self.conn.send(p.gen_pingreq())
        while self.conn.receive(TIMEOUT)["type"] != "PINGRESP":
            pass

    def disconnect(self) -> None:
        """DISCONNECT, after which nothing more is handed over (what arrives before the
        close is dropped unacknowledged: the session resends it)."""
        conn = self.conn
        conn.send(p.gen_disconnect(0, self.ver) if self.ver == 5 else p.gen_disconnect())
        drain(conn)

    def summary(self) -> str:
        numbers = [d[0] for d in self.deliveries]
        return f"{len(numbers)} deliveries, highest {max(numbers, default=0)}"


def drain(conn) -> None:
    """Read until the broker closes the connection (packets dropped, unanswered)."""
    try:
        while True:
            conn.read_packet(TIMEOUT)
    except Closed:
        pass
    except TimeoutError:
        raise AssertionError("the broker did not close the connection") from None


MOVES = 6
PER_CONNECTION = 40   # messages handed over on each connection (published after it began)


def fresh_counter(start: int):
    """A `done` for Subscriber.read_until: PER_CONNECTION numbers above `start` arrived."""
    fresh = []

    def done(number: int) -> bool:
        if number > start:
            fresh.append(number)
        return len(fresh) >= PER_CONNECTION
    return done


@pytest.mark.parametrize("qos", [1, 2])
@pytest.mark.parametrize("ver", [4, 5])
def test_session_moves_while_a_third_node_publishes(nodes, ver, qos):
    """The subscriber moves a -> b -> a ... (alternately after a DISCONNECT and by a
    takeover, its old connection still open) while a client on c publishes numbered
    messages without pause; after the last move and a final reconnect, every number
    whose publish completed (PUBACK / PUBCOMP) has reached the subscriber, once."""
    a, b, c = (nodes.start(n, UNLIMITED) for n in "abc")
    nodes.joined(a, b, c)
    topic = f"mv3/{ver}/{qos}"
    client_id = f"mv3-{ver}-{qos}"
    publisher = Publisher(c.port, f"mv3-pub-{ver}-{qos}", topic, qos)
    sub = Subscriber(client_id, ver, publisher)
    sub.connect(a)
    subscribe(sub.conn, topic, qos)
    publisher.start()
    windows = []   # per move: the last number acknowledged before it began, and at its CONNACK
    try:
        for move in range(MOVES + 1):
            fresh = fresh_counter(publisher.last_acked())
            sub.read_until(fresh, f"messages published after connection {sub.connection} began")
            if move == MOVES:
                break
            target = b if sub.node is a else a
            old = sub.conn
            before = publisher.last_acked()
            if move % 2 == 0:
                sub.disconnect()
                sub.connect(target)
            else:   # takeover: connect there with this one still open
                sub.barrier()
                sub.connect(target)
                drain(old)
            windows.append((before, publisher.last_acked()))
            assert sub.conn.connack["session_present"] == 1
    finally:
        acked = publisher.stop()
    # The last move, with nothing flowing, then a marker from the same publisher after
    # the CONNACK: once it arrived, everything published before it has too (MQTT 4.6).
    sub.disconnect()
    sub.connect(b if sub.node is a else a)
    assert sub.conn.connack["session_present"] == 1
    end = acked[-1] + 1 if acked else 1
    publish(publisher.conn, topic, qos, str(end).encode(), 1)
    sub.read_until(lambda n: n == end, "the end marker")
    sub.settle()

    numbers = [d[0] for d in sub.deliveries if d[0] != end]
    missing = sorted(set(acked) - set(numbers))
    # Every PUBACK / PUBREC reached the node before the session moved on (a DISCONNECT,
    # or the barrier before a takeover): nothing may come twice.
    counts: dict[int, list] = {}
    for number, dup, connection in sub.deliveries:
        counts.setdefault(number, []).append((dup, connection))
    duplicates = {n: seen for n, seen in counts.items() if len(seen) > 1}
    assert not missing, (f"{len(missing)} of {len(acked)} acknowledged messages lost across {MOVES + 1} moves: "
                         f"{missing[:50]}{' ...' if len(missing) > 50 else ''}; per move (acknowledged before "
                         f"it, at its CONNACK, lost): {describe_losses(windows, missing)}; "
                         f"{len(duplicates)} delivered twice")
    assert not duplicates, f"{len(duplicates)} numbers delivered more than once ((dup, connection), ...): " \
                           f"{dict(list(duplicates.items())[:20])}"


def describe_losses(windows: list[tuple[int, int]], missing: list[int]) -> list:
    """Per move (last number acknowledged before it began, at its CONNACK): how many
    of the missing numbers were published from then until the next move."""
    starts = [before for before, _ in windows] + [float("inf")]
    return [(before, after, sum(1 for n in missing if starts[i] < n <= starts[i + 1]))
            for i, (before, after) in enumerate(windows)] + \
           [("before the first move", sum(1 for n in missing if n <= starts[0]))]


# -- 2. a session across three nodes -----------------------------------------------------

class PahoSession:
    """A paho-mqtt persistent session (v3.1.1 clean session 0, v5 session expiry), one
    connection at a time; messages land in `messages` (paho acknowledges them)."""

    def __init__(self, client_id: str, version: str):
        self.mqtt = require_module("paho.mqtt.client")
        self.client_id = client_id
        self.version = version
        self.messages: list[tuple[str, bytes, int]] = []
        self.changed = threading.Condition()
        self.client = None

    def connect(self, port: int) -> bool:
        """Connect; the CONNACK's session present flag."""
        mqtt = self.mqtt
        present = []
        if self.version == "v5":
            from paho.mqtt.packettypes import PacketTypes
            from paho.mqtt.properties import Properties
            client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=self.client_id, protocol=mqtt.MQTTv5)
            properties = Properties(PacketTypes.CONNECT)
            properties.SessionExpiryInterval = 300
            args = {"clean_start": False, "properties": properties}
        else:
            client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=self.client_id,
                                 protocol=mqtt.MQTTv311, clean_session=False)
            args = {}
        connected = threading.Event()

        def on_connect(client, userdata, flags, reason_code, properties):
            present.append(flags.session_present)
            connected.set()

        client.on_connect = on_connect
        client.on_message = self._on_message
        client.connect("127.0.0.1", port, **args)
        client.loop_start()
        self.client = client
        assert connected.wait(TIMEOUT), f"paho {self.client_id} not connected on {port}"
        return present[0]

    def _on_message(self, client, userdata, message):
        with self.changed:
            self.messages.append((message.topic, message.payload, message.qos))
            self.changed.notify_all()

    def subscribe(self, topic: str, qos: int) -> None:
        done = threading.Event()
        self.client.on_subscribe = lambda *args: done.set()
        self.client.subscribe(topic, qos=qos)
        assert done.wait(TIMEOUT), f"no SUBACK for {topic}"

    def wait_for(self, count: int) -> list:
        with self.changed:
            assert self.changed.wait_for(lambda: len(self.messages) >= count, TIMEOUT), self.messages
            return list(self.messages)

    def disconnect(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def mosquitto_pub(port: int, topic: str, message: str, qos: int) -> None:
    subprocess.run([require_peer("mosquitto_pub"), "-p", str(port), "-t", topic, "-m", message, "-q", str(qos)],
                   check=True, timeout=TIMEOUT)


@pytest.mark.parametrize("version", ["v311", "v5"])
def test_session_follows_its_client_across_three_nodes(nodes, version):
    """paho subscribes persistently on a and goes offline; mosquitto_pub on c; paho back
    on b (session present, the message); offline; mosquitto_pub on a; paho on c (the
    message); mosquitto_pub on b while it is on c: each time the session and its queue
    followed it."""
    a, b, c = (nodes.start(n) for n in "abc")
    nodes.joined(a, b, c)
    client_id = f"tri-move-{version}"
    session = PahoSession(client_id, version)

    def offline_on(node) -> None:
        """Disconnected, and its node has written so (the record's disconnection time)."""
        session.disconnect()
        wait_for_record(nodes.nats.url, client_id,
                        lambda r: r is not None and r["node"] == node.node_id and r["row"][4] is not None)

    assert session.connect(a.port) is False
    session.subscribe("tm3/+", 1)
    offline_on(a)
    mosquitto_pub(c.port, "tm3/one", "queued on a, from c", 1)
    assert session.connect(b.port) is True
    assert session.wait_for(1) == [("tm3/one", b"queued on a, from c", 1)]
    offline_on(b)
    mosquitto_pub(a.port, "tm3/two", "queued on b, from a", 1)
    mosquitto_pub(a.port, "tm3/two", "qos 2, downgraded", 2)
    assert session.connect(c.port) is True
    assert session.wait_for(3)[1:] == [("tm3/two", b"queued on b, from a", 1), ("tm3/two", b"qos 2, downgraded", 1)]
    mosquitto_pub(b.port, "tm3/three", "live, from b", 1)
    mosquitto_pub(a.port, "tm3/three", "live, from a", 1)
    got = session.wait_for(5)[3:]
    assert sorted(got) == [("tm3/three", b"live, from a", 1), ("tm3/three", b"live, from b", 1)]
    session.disconnect()
    assert session.messages[5:] == []
    # Each holder handed the session over when asked (none was rebuilt from its record).
    assert not [node.node_id for node in (a, b, c) if "did not hand over" in node.output]


# -- 3. a session larger than NATS's max_payload ------------------------------------------

MAX_PAYLOAD = 65536


@pytest.fixture
def small_nats_nodes(tmp_path):
    """Nodes on a nats-server whose max_payload is 64 KiB (the last value in its file wins)."""
    require_peer("nats-server")
    from midge.server.natsproc import NatsServer
    from tests.brokerproc import free_port

    server = NatsServer(str(tmp_path / "nats"), port=free_port(), extra_config=f"max_payload: {MAX_PAYLOAD}")
    server.start()
    started = Nodes(tmp_path, server)
    try:
        yield started
    finally:
        started.stop_all()
        server.stop()


@pytest.mark.parametrize("ver", [4, 5])
def test_session_larger_than_max_payload_resumes_from_its_record(small_nats_nodes, ver):
    """docs/cluster.md: a session too large for max_payload cannot move; it resumes from
    its record (subscriptions, session present), without its messages, and the old node
    logs it, naming the session and its size."""
    nodes = small_nats_nodes
    a, b, c = (nodes.start(n, UNLIMITED) for n in "abc")
    nodes.joined(a, b, c)
    client_id = f"big-{ver}"
    sub = persistent(a.port, client_id, ver)
    subscribe(sub, [("big/q", 1), ("big/other/+", 2)], mid=1)
    sub.send(p.gen_disconnect(0, ver) if ver == 5 else p.gen_disconnect())
    sub.expect_closed()
    wait_for_record(nodes.nats.url, client_id, lambda r: r is not None and r["row"][4] is not None)
    pub = connect(a.port, f"big-pub-{ver}", ver)
    chunk = 20000
    for mid in range(1, 6):   # 100 kB queued on a, each message well under max_payload
        publish(pub, "big/q", 1, bytes([48 + mid]) * chunk, mid)
    sub = persistent(b.port, client_id, ver)
    assert sub.connack["session_present"] == 1
    line = a.wait_for_log(f"the session of {client_id} (")
    size = int(line.split(f"the session of {client_id} (")[1].split(" bytes)")[0])
    assert size > 5 * chunk and f"larger than NATS's max_payload ({MAX_PAYLOAD})" in line, line
    assert "resumes from its record, without its messages" in line, line
    # Its subscriptions were kept (with their QoS), its queue was not; messages published
    # anywhere now reach it on b.
    other = connect(c.port, f"big-pub-c-{ver}", ver)
    publish(other, "big/other/x", 2, b"after, from c", 1)
    publish(pub, "big/q", 1, b"after, from a", 6)
    got = [sub.receive() for _ in range(2)]   # (from two nodes: either order)
    assert sorted((g["type"], g["topic"], g["payload"], g["qos"], g["dup"]) for g in got) == [
        ("PUBLISH", b"big/other/x", b"after, from c", 2, False), ("PUBLISH", b"big/q", b"after, from a", 1, False)]
    for packet in got:
        if packet["qos"] == 1:
            sub.send(p.gen_puback(packet["mid"], ver))
        else:
            sub.send(p.gen_pubrec(packet["mid"], ver))
            sub.expect(p.gen_pubrel(packet["mid"], ver))
            sub.send(p.gen_pubcomp(packet["mid"], ver))
    sub.ping()
    sub.expect_nothing()
    # The nodes carry on: the session can still move (small now), back to a. (Queued by
    # a publisher on b itself: one on another node would race the move, test 1's case.)
    sub.send(p.gen_disconnect(0, ver) if ver == 5 else p.gen_disconnect())
    sub.expect_closed()
    on_b = connect(b.port, f"big-pub-b-{ver}", ver)
    publish(on_b, "big/q", 1, b"queued on b", 1)
    sub = persistent(a.port, client_id, ver)
    assert sub.connack["session_present"] == 1
    sub.send(p.gen_puback(expect_publish(sub, "big/q", b"queued on b", qos=1), ver))
    sub.ping()

