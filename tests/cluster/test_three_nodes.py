"""docs/cluster.md's "three nodes on a NATS cluster", run as written: three nats-server
processes clustered with JetStream, three midge nodes each on its own nats-server,
checked with mosquitto_pub/mosquitto_sub and paho-mqtt.

The nats-server and midge configurations are the how-to's own code blocks, read from
docs/cluster.md; only host names, ports and folders are replaced (every replaced string
must be in the block, so the doc cannot drift from what runs here).
"""

from __future__ import annotations

import re
import signal
import subprocess
import threading
from pathlib import Path

import pytest

from tests.brokerproc import TIMEOUT_SCALE, BrokerProcess, free_port, start_midge, wait_for_port
from tests.peers import require_module, require_peer

DOC = Path(__file__).resolve().parents[2] / "docs" / "cluster.md"
NATS_BLOCK = "# /etc/nats-server.conf on nats1"
MIDGE_BLOCK = "# /etc/mosquitto/mosquitto.conf on nats1"
HOSTS = ("nats1", "nats2", "nats3")
NODES = ("node-a", "node-b", "node-c")
TIMEOUT = 20 * TIMEOUT_SCALE


def doc_block(first_line: str) -> str:
    """The fenced code block of docs/cluster.md that starts with `first_line`."""
    for block in re.findall(r"^```\n(.*?)^```", DOC.read_text(), re.S | re.M):
        if block.splitlines()[0] == first_line:
            return block
    raise AssertionError(f"docs/cluster.md has no code block starting with {first_line!r}")


def substitute(text: str, replacements: dict[str, str]) -> str:
    for old, new in replacements.items():
        assert old in text, f"docs/cluster.md's block no longer contains {old!r}:\n{text}"
        text = text.replace(old, new)
    return text


class NatsCluster:
    """Three nats-server processes from the how-to's file (one per host, on 127.0.0.1)."""

    def __init__(self, tmp_path: Path):
        self.tmp_path = tmp_path
        self.client_ports = [free_port() for _ in HOSTS]
        self.route_ports = [free_port() for _ in HOSTS]
        self.servers: list[BrokerProcess] = []

    def config(self, index: int) -> str:
        host = HOSTS[index]
        store = self.tmp_path / f"{host}-store"
        replacements = {
            "server_name: nats1": f"server_name: {host}",
            "listen: 0.0.0.0:4222": f"listen: 127.0.0.1:{self.client_ports[index]}",
            "listen: 0.0.0.0:6222": f"listen: 127.0.0.1:{self.route_ports[index]}",
            '"/var/lib/nats-server"': f'"{store}"',
        }
        for other, port in zip(HOSTS, self.route_ports):
            replacements[f"nats-route://{other}:6222"] = f"nats-route://127.0.0.1:{port}"
        return substitute(doc_block(NATS_BLOCK), replacements)

    def start(self) -> None:
        exe = require_peer("nats-server")
        for index, host in enumerate(HOSTS):
            conf = self.tmp_path / f"{host}.conf"
            conf.write_text(self.config(index))
            self.servers.append(BrokerProcess([exe, "-c", str(conf)], cwd=self.tmp_path))
        for server in self.servers:
            server.wait_for_log("Server is ready", timeout=TIMEOUT)
        # What the how-to says to wait for: each knows JetStream's metadata leader
        # ("JetStream cluster new metadata leader: ..." or "Self is new JetStream cluster
        # metadata leader").
        for server in self.servers:
            server.wait_for_log("metadata leader", timeout=TIMEOUT)

    def url(self, index: int) -> str:
        return f"nats://127.0.0.1:{self.client_ports[index]}"

    def stop(self) -> None:
        for server in self.servers:
            server.stop()


class MidgeNodes:
    """midge nodes from the how-to's file, node i on nats-server i."""

    def __init__(self, tmp_path: Path, nats: NatsCluster):
        self.tmp_path = tmp_path
        self.nats = nats
        self.started: list[BrokerProcess] = []

    def start(self, index: int, port: int | None = None, node_id: str | None = None,
              extra: str = "") -> BrokerProcess:
        """Node `index` from the how-to's config; `extra`: lines appended (a listener)."""
        port = port or free_port()
        text = substitute(doc_block(MIDGE_BLOCK), {
            "listener 1883": f"listener {port} 127.0.0.1",
            "nats://nats1:4222": self.nats.url(index),
            "cluster_node_id node-a": f"cluster_node_id {node_id or NODES[index]}",
        }) + extra
        folder = self.tmp_path / f"{NODES[index]}-{len(self.started)}"
        folder.mkdir()
        process = start_midge(text, folder, port, wait=False)
        process.port = port
        process.node_id = node_id or NODES[index]
        self.started.append(process)
        # A node opens its port once it joined: after JetStream answered, which takes a
        # NATS cluster that lost a server some seconds (a new stream leader).
        process.wait_for_log("joined through NATS", timeout=40 * TIMEOUT_SCALE)
        wait_for_port(port, proc=process.proc)
        return process

    def stop(self) -> None:
        for process in self.started:
            process.stop()
        for process in self.started:
            assert "Traceback" not in process.output, process.output


def wait_joined(started: list[BrokerProcess]) -> None:
    """Until every node has seen every other one."""
    for node in started:
        for other in started:
            if other is not node:
                node.wait_for_log(f"Cluster: node {other.node_id} is part of cluster midge.", timeout=TIMEOUT)


@pytest.fixture
def three(tmp_path):
    nats = NatsCluster(tmp_path)
    nodes = MidgeNodes(tmp_path, nats)
    try:
        nats.start()
        started = [nodes.start(i) for i in range(3)]
        wait_joined(started)
        yield nats, nodes, started
    finally:
        nodes.stop()
        nats.stop()


# -- the clients -----------------------------------------------------------------------

def mosquitto_sub(port: int, topic: str, count: int, *extra: str) -> subprocess.Popen:
    """mosquitto_sub -C count, returned once its SUBACK came (-d, line-buffered stdout)."""
    exe = require_peer("mosquitto_sub")
    proc = subprocess.Popen(["stdbuf", "-oL", exe, "-d", "-p", str(port), "-t", topic, "-C", str(count),
                             "-F", "%r %q %t %p", "-W", str(int(TIMEOUT)), *extra],
                            stdout=subprocess.PIPE, text=True)
    for line in proc.stdout:
        if "received SUBACK" in line:
            return proc
    raise AssertionError(f"mosquitto_sub on {port} got no SUBACK (exit {proc.wait()})")


def received(proc: subprocess.Popen) -> list[str]:
    """The -F lines of a finished mosquitto_sub (debug lines left out)."""
    assert proc.wait(TIMEOUT) == 0, proc.returncode
    return [line for line in proc.stdout.read().splitlines() if not line.startswith(("Client ", "Subscribed"))]


def mosquitto_pub(port: int, topic: str, message: str, *extra: str) -> None:
    subprocess.run([require_peer("mosquitto_pub"), "-p", str(port), "-t", topic, "-m", message, *extra],
                   check=True, timeout=TIMEOUT)


class Paho:
    """A paho-mqtt v5 client on one node, whose messages land in a list (with an event)."""

    def __init__(self, port: int, client_id: str, will: tuple[str, bytes] | None = None):
        mqtt = require_module("paho.mqtt.client")
        self.mqtt = mqtt
        self.messages: list = []
        self.changed = threading.Condition()
        self.disconnects: list = []
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        self.client.on_message = self._on_message
        self.client.on_disconnect = self._on_disconnect
        if will:
            self.client.will_set(*will, qos=1)
        connected = threading.Event()
        self.client.on_connect = lambda *args: connected.set()
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert connected.wait(TIMEOUT), f"paho {client_id} not connected"

    def _on_message(self, client, userdata, message):
        with self.changed:
            self.messages.append(message)
            self.changed.notify_all()

    def _on_disconnect(self, client, userdata, flags, reason, properties):
        with self.changed:
            self.disconnects.append(reason)
            self.changed.notify_all()

    def wait(self, condition, what: str):
        with self.changed:
            assert self.changed.wait_for(condition, TIMEOUT), what

    def subscribe(self, topic: str, qos: int = 1) -> None:
        done = threading.Event()
        self.client.on_subscribe = lambda *args: done.set()
        self.client.subscribe(topic, qos=qos)
        assert done.wait(TIMEOUT), f"no SUBACK for {topic}"

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False, properties=None) -> None:
        self.client.publish(topic, payload, qos=qos, retain=retain, properties=properties).wait_for_publish(TIMEOUT)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


# -- the test --------------------------------------------------------------------------

@pytest.mark.timeout(240)
def test_three_nodes_on_a_nats_cluster_as_in_the_how_to(three):
    nats, nodes, (a, b, c) = three
    ports = [node.port for node in (a, b, c)]

    # Every direction: a subscriber per node gets the message published on each node.
    subs = [mosquitto_sub(port, "tri/#", 3, "-q", "1") for port in ports]
    for index, port in enumerate(ports):
        mosquitto_pub(port, f"tri/{NODES[index]}", f"from {NODES[index]}", "-q", "1")
    for index, sub in enumerate(subs):
        assert sorted(received(sub)) == [f"0 1 tri/{n} from {n}" for n in NODES], NODES[index]

    # paho, MQTT 5 properties and QoS 2, from c to a.
    properties = paho_properties(content_type="text/plain", user=[("k", "v")])
    on_a = Paho(a.port, "tri-paho-a")
    on_a.subscribe("tri/paho", qos=2)
    on_c = Paho(c.port, "tri-paho-c")
    on_c.publish("tri/paho", b"v5 from c", qos=2, properties=properties)
    on_a.wait(lambda: on_a.messages, "paho message from c")
    message = on_a.messages[0]
    assert (message.payload, message.qos) == (b"v5 from c", 2)
    assert message.properties.ContentType == "text/plain" and message.properties.UserProperty == [("k", "v")]

    # $share: each message to exactly one member, across the three nodes.
    members = [Paho(port, f"tri-share-{i}") for i, port in enumerate(ports)]
    for index, member in enumerate(members):
        member.subscribe("$share/g/tri-sh/#", qos=1)
        # The marker through a one-member group each: like the shared messages it goes
        # through NATS also to the member on the publishing node (a plain subscription
        # there gets it at once, possibly before the last shared message crossed).
        member.subscribe(f"$share/end{index}/tri-end", qos=1)
    count = 90
    for i in range(count):
        on_c.publish(f"tri-sh/{i % 4}", str(i).encode(), qos=1)
    on_c.publish("tri-end", b"end", qos=1)   # after the last one, on the same path from c
    for member in members:
        member.wait(lambda m=member: any(x.topic == "tri-end" for x in m.messages), "end marker")
    shared = [[int(x.payload) for x in m.messages if x.topic.startswith("tri-sh/")] for m in members]
    assert sorted(sum(shared, [])) == list(range(count)), [len(s) for s in shared]   # once each
    assert all(shared), [len(s) for s in shared]   # and the three nodes took part
    for member in members:
        member.close()

    # Retained: published on a, served by c (and by a node started later, below).
    mosquitto_pub(a.port, "tri/retained", "kept", "-q", "1", "-r")
    assert received(mosquitto_sub(c.port, "tri/retained", 1)) == ["1 0 tri/retained kept"]

    # Takeover: the same client id connecting on c closes it on a (v5 0x8E, its will).
    watcher = Paho(b.port, "tri-watch")
    watcher.subscribe("tri/will")
    first = Paho(a.port, "tri-same", will=("tri/will", b"gone"))
    second = Paho(c.port, "tri-same")
    first.wait(lambda: first.disconnects, "takeover disconnect")
    assert first.disconnects[0].value == 0x8E, first.disconnects
    watcher.wait(lambda: watcher.messages, "will")
    assert watcher.messages[0].payload == b"gone"
    a.wait_for_log("Client tri-same connected on node node-c, closing it here.")
    first.client.loop_stop()
    second.close()

    # kill -9 of node b: a and c carry on, b's interest times out, a restarted b rejoins.
    b.proc.send_signal(signal.SIGKILL)
    b.proc.wait()
    for node in (a, c):
        node.wait_for_log("node node-b silent for", timeout=TIMEOUT)
    sub = mosquitto_sub(c.port, "tri/after", 1, "-q", "1")
    mosquitto_pub(a.port, "tri/after", "a to c", "-q", "1")
    assert received(sub) == ["0 1 tri/after a to c"]
    b2 = nodes.start(1, port=b.port)
    for node in (a, c):
        node.wait_for_log("node node-b is part of cluster", start=0, timeout=TIMEOUT)
    assert received(mosquitto_sub(b2.port, "tri/retained", 1)) == ["1 0 tri/retained kept"]
    sub = mosquitto_sub(b2.port, "tri/back", 1, "-q", "1")
    mosquitto_pub(c.port, "tri/back", "c to b", "-q", "1")
    assert received(sub) == ["0 1 tri/back c to b"]

    # kill -9 of node c's nats-server: c moves to one it learnt from NATS and carries on.
    mark = c.mark()
    nats.servers[2].proc.send_signal(signal.SIGKILL)
    nats.servers[2].proc.wait()
    c.wait_for_log("lost NATS", start=mark, timeout=TIMEOUT)
    line = c.wait_for_log("reconnected to NATS", start=mark, timeout=TIMEOUT)
    assert any(f":{port};" in line for port in nats.client_ports[:2]), line
    sub = mosquitto_sub(c.port, "tri/moved", 2, "-q", "1")
    mosquitto_pub(a.port, "tri/moved", "a to c", "-q", "1")
    mosquitto_pub(b2.port, "tri/moved", "b to c", "-q", "1")
    assert received(sub) == ["0 1 tri/moved a to c", "0 1 tri/moved b to c"]
    sub = mosquitto_sub(a.port, "tri/moved-back", 1, "-q", "1")
    mosquitto_pub(c.port, "tri/moved-back", "c to a", "-q", "1")
    assert received(sub) == ["0 1 tri/moved-back c to a"]
    # The retained stream has 3 replicas: with one of three nats-servers gone, a node
    # that starts now still loads it (with one replica it was on nats3 one time in three).
    assert "for retained messages (3 replicas)" in a.output, a.output
    d = nodes.start(0, node_id="node-d")
    assert received(mosquitto_sub(d.port, "tri/retained", 1)) == ["1 0 tri/retained kept"]
    for client in (on_a, on_c, watcher):
        client.close()


def paho_properties(content_type: str, user: list[tuple[str, str]]):
    mqtt = require_module("paho.mqtt.client")
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    properties = Properties(PacketTypes.PUBLISH)
    properties.ContentType = content_type
    properties.UserProperty = user
    del mqtt
    return properties
