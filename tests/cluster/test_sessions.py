"""Persistent sessions move with their client between nodes (docs/cluster.md), with real
nats-server and midge processes and raw MQTT clients (v3.1.1 and v5)."""

from __future__ import annotations

import asyncio
import json
import select
import signal
import subprocess
import threading
import time

import pytest

from midge.broker.subjects import encode_token

from tests.brokerproc import free_port
from tests.conformance import packets as p
from tests.conformance.wire import connect, expect_publish, subscribe
from tests.peers import require_module, require_peer

EXPIRY = [(p.SESSION_EXPIRY_INTERVAL, 300)]


def persistent(port, client_id, ver, **kwargs):
    """CONNECT with clean session 0 (v3.1.1) / clean start 0 + session expiry (v5)."""
    if ver == 5:
        kwargs.setdefault("properties", EXPIRY)
    return connect(port, client_id, ver, clean=False, **kwargs)


def wait_for_record(nats_url: str, client_id: str, check, timeout: float = 10.0) -> dict:
    """The session's record in JetStream (stream midge_sessions), once `check(record)`
    holds (a disconnection's record is written after the client has gone: nothing
    waits for it)."""
    import nats

    async def read():
        nc = await nats.connect(nats_url)
        try:
            js = nc.jetstream()
            deadline = time.monotonic() + timeout
            record = None
            while time.monotonic() < deadline:
                try:
                    msg = await js.get_last_msg("midge_sessions", "midge.sess." + encode_token(client_id))
                    record = json.loads(msg.data)
                    record = record if "node" in record else None   # (a deletion)
                except nats.js.errors.NotFoundError:
                    record = None
                if check(record):
                    return record
                await nc.flush()   # one round trip to NATS between reads
            raise AssertionError(f"record of {client_id} never satisfied the check: {record}")
        finally:
            await nc.close()
    return asyncio.run(read())


def publish(conn, topic, qos, payload, mid):
    """Publish and complete the flow on the publisher's side."""
    ver = conn.proto_ver
    conn.send(p.gen_publish(topic, qos, payload, mid=mid, proto_ver=ver))
    if qos == 1:
        assert conn.receive()["type"] == "PUBACK"
    elif qos == 2:
        assert conn.receive()["type"] == "PUBREC"
        conn.send(p.gen_pubrel(mid, ver))
        assert conn.receive()["type"] == "PUBCOMP"


def acknowledge(conn, packet):
    ver = conn.proto_ver
    if packet["qos"] == 1:
        conn.send(p.gen_puback(packet["mid"], ver))
    elif packet["qos"] == 2:
        conn.send(p.gen_pubrec(packet["mid"], ver))
        conn.expect(p.gen_pubrel(packet["mid"], ver))
        conn.send(p.gen_pubcomp(packet["mid"], ver))


@pytest.mark.parametrize("ver", [4, 5])
def test_offline_queue_moves_with_the_client(pair, ver):
    """Queued while offline on a (published on b and on a), resumed on b in order, and
    the subscriptions then live on b."""
    a, b = pair
    sub = persistent(a.port, f"mq-{ver}", ver)
    subscribe(sub, [("mq/one", 1), ("mq/two", 2)], mid=1)
    sub.send(p.gen_disconnect(0, ver) if ver == 5 else p.gen_disconnect())
    sub.expect_closed()
    pub_b = connect(b.port, f"mq-pb-{ver}", ver)
    pub_a = connect(a.port, f"mq-pa-{ver}", ver)
    publish(pub_b, "mq/one", 1, b"1", 1)
    publish(pub_b, "mq/two", 2, b"2", 2)
    publish(pub_b, "mq/one", 2, b"3", 3)   # downgraded to the subscription's QoS 1
    publish(pub_b, "mq/two", 0, b"qos0", 4)   # QoS 0 is not queued for an offline session
    publish(pub_a, "mq/two", 1, b"4", 5)
    sub = persistent(b.port, f"mq-{ver}", ver)
    assert sub.connack["session_present"] == 1
    got = [sub.receive() for _ in range(4)]
    assert all(packet["type"] == "PUBLISH" and not packet["dup"] for packet in got)
    # In order per publisher (MQTT 4.6); a's message may come before b's reached a.
    assert [(g["payload"], g["qos"]) for g in got if g["payload"] != b"4"] == [(b"1", 1), (b"2", 2), (b"3", 1)]
    assert [g["qos"] for g in got if g["payload"] == b"4"] == [1]
    for packet in got:
        acknowledge(sub, packet)
    # The subscriptions are b's now: a message published on a reaches the client on b, once.
    publish(pub_a, "mq/two", 2, b"after", 6)
    acknowledge(sub, {"qos": 2, "mid": expect_publish(sub, "mq/two", b"after", qos=2)})
    sub.ping()
    a.wait_for_log(f"mq-{ver}")
    assert f"Client mq-{ver} connected on node b" not in a.output   # it was offline: no takeover


@pytest.mark.parametrize("ver", [4, 5])
def test_inflight_messages_resent_with_dup_on_the_new_node(pair, ver):
    a, b = pair
    sub = persistent(a.port, f"if-{ver}", ver)
    subscribe(sub, [("if/1", 1), ("if/2", 2)], mid=1)
    pub = connect(b.port, f"if-p-{ver}", ver)
    publish(pub, "if/1", 1, b"one", 1)
    publish(pub, "if/2", 2, b"two", 2)
    publish(pub, "if/2", 2, b"three", 3)
    mid1 = expect_publish(sub, "if/1", b"one", qos=1)
    mid2 = expect_publish(sub, "if/2", b"two", qos=2)
    mid3 = expect_publish(sub, "if/2", b"three", qos=2)
    sub.send(p.gen_pubrec(mid3, ver))          # three: PUBREC sent, PUBREL outstanding
    sub.expect(p.gen_pubrel(mid3, ver))
    sub.close()                                # network drop, nothing else acknowledged
    sub = persistent(b.port, f"if-{ver}", ver)
    assert sub.connack["session_present"] == 1
    assert expect_publish(sub, "if/1", b"one", qos=1, dup=True) == mid1
    assert expect_publish(sub, "if/2", b"two", qos=2, dup=True) == mid2
    sub.expect(p.gen_pubrel(mid3, ver))        # the PUBREL again, not the message
    sub.send(p.gen_puback(mid1, ver))
    acknowledge(sub, {"qos": 2, "mid": mid2})
    sub.send(p.gen_pubcomp(mid3, ver))
    sub.ping()


def test_takeover_across_nodes_moves_the_session_v5(pair):
    """Still connected on a, connecting on b: a closes it with 0x8E, no will (the session
    goes on), and the session (with its unacknowledged message) is b's."""
    a, b = pair
    watcher = connect(b.port, "tm-watch", 4)
    subscribe(watcher, "tm/will", 0)
    old = persistent(a.port, "tm-c", 5, will_topic="tm/will", will_payload=b"gone")
    subscribe(old, "tm/t", 1)
    pub = connect(b.port, "tm-p", 4)
    publish(pub, "tm/t", 1, b"x", 1)
    mid = expect_publish(old, "tm/t", b"x", qos=1)
    new = persistent(b.port, "tm-c", 5)
    old.expect_disconnect(0x8E)
    assert new.connack["session_present"] == 1
    assert expect_publish(new, "tm/t", b"x", qos=1, dup=True) == mid
    new.send(p.gen_puback(mid, 5))
    publish(pub, "tm/t", 1, b"y", 2)
    new.send(p.gen_puback(expect_publish(new, "tm/t", b"y", qos=1), 5))
    new.ping()
    watcher.ping()
    a.wait_for_log("Client tm-c connected on node b, closing it here and moving its session there.")
    publish(pub, "tm/will", 0, b"marker", 3)
    expect_publish(watcher, "tm/will", b"marker")   # and no will before it


def test_takeover_across_nodes_moves_the_session_v311(pair):
    a, b = pair
    old = persistent(a.port, "tv-c", 4)
    subscribe(old, "tv/t", 1)
    new = persistent(b.port, "tv-c", 4, connack=p.gen_connack(0, True))
    old.expect_closed()
    pub = connect(a.port, "tv-p", 4)
    publish(pub, "tv/t", 1, b"x", 1)
    expect_publish(new, "tv/t", b"x", qos=1)


def resume_after_kill(holder, other, client_id: str, ver: int):
    """kill -9 the node holding `client_id`'s session, reconnect on `other` (session
    present); the resumed connection and a publisher on `other`."""
    holder.proc.send_signal(signal.SIGKILL)
    holder.proc.wait()
    sub = persistent(other.port, client_id, ver)
    assert sub.connack["session_present"] == 1
    return sub, connect(other.port, f"{client_id}-pub", ver)


def only_these_arrive(pub, sub, unsubscribed: str, expected: list[tuple[str, bytes, int]]) -> None:
    """Publish on `unsubscribed` (which must not arrive), then each of `expected` (topic,
    payload, QoS), which must arrive at `sub` in order."""
    publish(pub, unsubscribed, 1, b"no", 1)
    for mid, (topic, payload, qos) in enumerate(expected, 2):
        publish(pub, topic, qos, payload, mid)
    for topic, payload, qos in expected:
        acknowledge(sub, {"qos": qos, "mid": expect_publish(sub, topic, payload, qos=qos)})
    sub.ping()


@pytest.mark.parametrize("ver", [4, 5])
def test_owner_killed_session_resumes_elsewhere_with_subscriptions(nodes, ver):
    a, b = nodes.start("a"), nodes.start("b")
    nodes.joined(a, b)
    sub = persistent(a.port, f"kl-{ver}", ver)
    subscribe(sub, [("kl/x", 1), ("kl/+/y", 2)], mid=1)
    subscribe(sub, "kl/gone", 1, mid=2)
    sub.send(p.gen_unsubscribe(3, "kl/gone", ver))
    assert sub.receive()["type"] == "UNSUBACK"
    sub.close()
    # What JetStream holds once a has written the disconnection (row[4]: its wall time).
    record = wait_for_record(nodes.nats.url, f"kl-{ver}", lambda r: r is not None and r["row"][4] is not None)
    assert record["node"] == "a" and [s[0] for s in json.loads(record["row"][7])] == ["kl/x", "kl/+/y"]
    sub, pub = resume_after_kill(a, b, f"kl-{ver}", ver)
    only_these_arrive(pub, sub, "kl/gone", [("kl/x", b"x", 1), ("kl/a/y", b"y", 2)])
    b.wait_for_log(f"did not hand over the session of kl-{ver}")


@pytest.mark.parametrize("ver", [4, 5])
def test_what_a_suback_promised_survives_a_kill_right_after(nodes, ver):
    """A persistent session's SUBACK and UNSUBACK wait until JetStream stored its record:
    the node killed the moment the client has them, the session resumes elsewhere with
    exactly those subscriptions."""
    a, b = nodes.start("a"), nodes.start("b")
    nodes.joined(a, b)
    sub = persistent(a.port, f"ks-{ver}", ver)
    subscribe(sub, "ks/kept", 1, mid=1)
    subscribe(sub, "ks/gone", 1, mid=2)
    sub.send(p.gen_unsubscribe(3, "ks/gone", ver))
    assert sub.receive()["type"] == "UNSUBACK"
    subscribe(sub, "ks/late", 1, mid=4)
    sub, pub = resume_after_kill(a, b, f"ks-{ver}", ver)
    only_these_arrive(pub, sub, "ks/gone", [("ks/kept", b"kept", 1), ("ks/late", b"late", 1)])


def test_suback_of_a_persistent_session_waits_for_jetstream(nodes):
    """With NATS stopped (SIGSTOP), a persistent session's SUBACK is held (its record
    cannot be stored) and comes once NATS runs again; a clean session's is not held."""
    a = nodes.start("a")
    kept = persistent(a.port, "js-wait", 4)
    clean = connect(a.port, "js-clean", 4)
    nats = nodes.nats.proc
    nats.send_signal(signal.SIGSTOP)
    try:
        subscribe(clean, "js/clean", 1, mid=1)      # no record: answered at once
        kept.send(p.gen_subscribe(1, "js/kept", 1, 4))
        with pytest.raises(TimeoutError):
            kept.read_packet(timeout=0.5)
    finally:
        nats.send_signal(signal.SIGCONT)
    assert kept.receive()["type"] == "SUBACK"


def test_expired_session_is_not_resumed_on_another_node(pair):
    a, b = pair
    sub = connect(a.port, "ex-c", 5, clean=False, properties=[(p.SESSION_EXPIRY_INTERVAL, 1)])
    subscribe(sub, "ex/t", 1)
    sub.send(p.gen_disconnect(0, 5))
    sub.expect_closed()
    a.wait_for_log("Expiring client ex-c due to timeout.")
    sub = connect(b.port, "ex-c", 5, clean=False, properties=EXPIRY)
    assert sub.connack["session_present"] == 0
    pub = connect(a.port, "ex-p", 4)
    publish(pub, "ex/t", 1, b"x", 1)
    sub.ping()
    sub.expect_nothing()


@pytest.mark.parametrize("kill", [False, True])
def test_clean_start_discards_the_session_everywhere(nodes, kill):
    a, b = nodes.start("a"), nodes.start("b")
    nodes.joined(a, b)
    sub = persistent(a.port, "cs-c", 4)
    subscribe(sub, "cs/t", 1)
    sub.close()
    if kill:
        wait_for_record(nodes.nats.url, "cs-c", lambda r: r is not None and r["row"][4] is not None)
        a.proc.send_signal(signal.SIGKILL)
        a.proc.wait()
    clean = connect(b.port, "cs-c", 5, clean=True, properties=EXPIRY)
    assert clean.connack["session_present"] == 0
    clean.send(p.gen_disconnect(0, 5))
    clean.expect_closed()
    if not kill:
        a.wait_for_log("Client cs-c connected on node b, ending its session here.")
    # The v5 clean start with expiry left a new, empty session; nothing of the old one.
    again = persistent(b.port, "cs-c", 4)
    assert again.connack["session_present"] == 1
    pub = connect(b.port, "cs-p", 4)
    publish(pub, "cs/t", 1, b"x", 1)
    again.ping()
    again.expect_nothing()


def test_mosquitto_clients_session_moves(pair):
    """mosquitto_sub -c (clean session 0) on a, offline; mosquitto_pub on b; mosquitto_sub
    again on b gets what was queued."""
    sub_exe, pub_exe = require_peer("mosquitto_sub"), require_peer("mosquitto_pub")
    a, b = pair
    first = subprocess.run(["stdbuf", "-oL", sub_exe, "-d", "-p", str(a.port), "-i", "mq-cli", "-c", "-q", "1",
                            "-t", "cli/#", "-E"], capture_output=True, text=True, timeout=30)
    assert "received SUBACK" in first.stdout, first.stdout + first.stderr
    for i in range(3):
        subprocess.run([pub_exe, "-p", str(b.port), "-t", f"cli/{i}", "-m", f"m{i}", "-q", "1"], check=True, timeout=30)
    again = subprocess.run([sub_exe, "-p", str(b.port), "-i", "mq-cli", "-c", "-q", "1", "-t", "cli/#", "-v",
                            "-C", "3", "-W", "20"], capture_output=True, text=True, timeout=30)
    assert again.stdout.splitlines() == [f"cli/{i} m{i}" for i in range(3)], again.stdout + again.stderr


def test_paho_v5_session_moves(pair):
    mqtt = require_module("paho.mqtt.client")
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    a, b = pair
    got, present, arrived = [], [], threading.Event()

    def on_connect(client, userdata, flags, reason_code, properties):
        present.append(flags.session_present)

    def on_message(client, userdata, message):
        got.append((message.topic, message.payload, message.qos))
        if len(got) == 2:
            arrived.set()

    def session_client():
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="paho-mv", protocol=mqtt.MQTTv5)
        client.on_connect = on_connect
        client.on_message = on_message
        return client

    properties = Properties(PacketTypes.CONNECT)
    properties.SessionExpiryInterval = 300
    client = session_client()
    client.connect("127.0.0.1", a.port, clean_start=False, properties=properties)
    subscribed = threading.Event()
    client.on_subscribe = lambda *args: subscribed.set()
    client.loop_start()
    client.subscribe("paho/+", qos=2)
    assert subscribed.wait(10)   # offline only once its SUBACK came back
    publisher = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="paho-pub", protocol=mqtt.MQTTv5)
    publisher.connect("127.0.0.1", b.port)
    publisher.loop_start()
    client.disconnect()
    client.loop_stop()
    publisher.publish("paho/1", b"one", qos=1).wait_for_publish(10)
    publisher.publish("paho/2", b"two", qos=2).wait_for_publish(10)
    client = session_client()
    client.connect("127.0.0.1", b.port, clean_start=False, properties=properties)
    client.loop_start()
    assert arrived.wait(10), got
    assert present == [False, True]
    assert got == [("paho/1", b"one", 1), ("paho/2", b"two", 2)]
    for c in (client, publisher):
        c.disconnect()
        c.loop_stop()


@pytest.mark.parametrize("ver", [4, 5])
def test_racing_connects_of_one_id_leave_exactly_one(pair, ver):
    """Both CONNECTs sent before either CONNACK is read: each node accepts its own, then
    the announcements cross and the earlier connect is closed; exactly one stays."""
    from tests.conformance.wire import Closed, Conn

    a, b = pair
    conns = [Conn(node.port, ver) for node in (a, b)]
    for conn in conns:
        conn.send(p.gen_connect("race", clean=False, proto_ver=ver, properties=EXPIRY if ver == 5 else ()))
    for conn in conns:
        assert conn.receive()["type"] == "CONNACK"
    # Wait for one of them to be closed (a v5 one gets DISCONNECT 0x8E first).
    closed = []
    deadline = time.monotonic() + 10
    while not closed:
        remaining = deadline - time.monotonic()
        assert remaining > 0, "neither connection was closed"
        ready, _, _ = select.select([c.sock for c in conns], [], [], remaining)
        for conn in conns:
            if conn.sock in ready or conn.buffer:
                try:
                    packet = p.decode(conn.read_packet(1), ver)
                except Closed:
                    closed.append(conn)
                    continue
                assert packet["type"] == "DISCONNECT" and packet["rc"] == 0x8E, packet
    (survivor,) = [conn for conn in conns if conn not in closed]
    survivor.ping()


def test_session_moves_are_counted_in_metrics_and_sys(nodes):
    """The node a session moved to counts it (Prometheus `midge_cluster_*` and
    `$SYS/broker/cluster/sessions/moved/in`), the node it left too."""
    from tests.ops.test_metrics import samples, scrape, value

    metrics = free_port()
    a = nodes.start("a", extra="sys_interval 1\n")
    b = nodes.start("b", extra=f"sys_interval 1\nlistener {metrics} 127.0.0.1\nprotocol metrics\n")
    nodes.joined(a, b)
    sub = persistent(a.port, "counted", 4)
    subscribe(sub, "counted/t", 1, mid=1)
    sub.close()
    sub = persistent(b.port, "counted", 4)
    assert sub.connack["session_present"] == 1
    status, text, _ = scrape(metrics)
    found = samples(text)
    assert status == 200
    assert value(found, "midge_cluster_node_info", node_id="b", cluster="midge") == 1
    assert value(found, "midge_cluster_nodes") == 2 and value(found, "midge_cluster_nats_connected") == 1
    assert value(found, "midge_cluster_session_moves_total", direction="in") == 1
    assert value(found, "midge_cluster_session_moves_total", direction="out") == 0
    assert value(found, "midge_cluster_sessions_restored_total") == 0
    watcher = connect(a.port, "sys-watch", 4)
    subscribe(watcher, "$SYS/broker/cluster/sessions/moved/out", 0)
    while watcher.receive(10)["payload"] != b"1":
        pass
