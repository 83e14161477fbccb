"""Black-box tests: a real midge process with Debian's mosquitto clients and paho-mqtt."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys

import pytest

from tests.brokerproc import free_port, start_midge, wait_for_port
from tests.clients import PahoClient, Subscriber, mosquitto_pub
from tests.peers import require_peer

VERSIONS = ["mqttv311", "mqttv5"]


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    port = free_port()
    tmp = tmp_path_factory.mktemp("broker")
    proc = start_midge(f"listener {port} 127.0.0.1\nallow_anonymous true\nlog_type all\n", tmp, port)
    proc.port = port
    yield proc
    assert proc.stop() == 0, proc.output


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("qos", [0, 1, 2])
def test_pub_sub_roundtrip(broker, version, qos):
    topic = f"interop/{version}/{qos}"
    with Subscriber(broker.port, topic, "-V", version, "-q", str(qos), "-C", "3", "-v") as sub:
        sub.wait_subscribed()
        for i in range(3):
            r = mosquitto_pub(broker.port, "-V", version, "-q", str(qos), "-t", topic, "-m", f"m{i}")
            assert r.returncode == 0, r.stderr
        assert sub.messages(3) == [f"{topic} m0", f"{topic} m1", f"{topic} m2"]
        assert sub.wait_exit() == 0


@pytest.mark.parametrize("version", VERSIONS)
def test_wildcards_and_sys_topics(broker, version):
    with Subscriber(broker.port, ["wild/+/x", "wild/#"], "-V", version, "-v") as sub:
        sub.wait_subscribed()
        mosquitto_pub(broker.port, "-V", version, "-t", "wild/a/x", "-m", "1")
        mosquitto_pub(broker.port, "-V", version, "-t", "other", "-m", "no")
        mosquitto_pub(broker.port, "-V", version, "-t", "wild/b", "-m", "2")
        lines = sub.messages(2)
        # mosquitto_sub with two overlapping filters: v5 gets one copy; v3.1.1 may get one per
        # matching subscription (Mosquitto 2.0 delivers once per client too).
        assert lines[0] == "wild/a/x 1"
        assert "wild/b 2" in lines


@pytest.mark.parametrize("version", VERSIONS)
def test_retained_set_replace_clear(broker, version):
    topic = f"retain/{version}"
    assert mosquitto_pub(broker.port, "-V", version, "-t", topic, "-m", "first", "-r").returncode == 0
    assert mosquitto_pub(broker.port, "-V", version, "-t", topic, "-m", "second", "-r").returncode == 0
    with Subscriber(broker.port, topic, "-V", version, "-C", "1", "-v") as sub:
        assert sub.messages(1) == [f"{topic} second"]
        assert sub.wait_exit() == 0
    assert mosquitto_pub(broker.port, "-V", version, "-t", topic, "-n", "-r").returncode == 0
    r = subprocess.run([require_peer("mosquitto_sub"), "-p", str(broker.port), "-h", "127.0.0.1",
                        "-V", version, "-t", topic, "-W", "1", "--retained-only"],
                       capture_output=True, text=True, timeout=10)
    assert r.stdout == ""


@pytest.mark.parametrize("version", [4, 5])
def test_will_sent_on_network_loss_not_on_disconnect(broker, version):
    topic = f"will/{version}"
    watcher = PahoClient(broker.port, version=version)
    watcher.subscribe(topic, qos=1)
    polite = PahoClient(broker.port, version=version, will={"topic": topic, "payload": b"polite", "qos": 1})
    polite.disconnect()
    rude = PahoClient(broker.port, version=version, will={"topic": topic, "payload": b"gone", "qos": 1})
    rude.drop()
    msg = watcher.message()
    assert (msg.topic, msg.payload) == (topic, b"gone")
    assert watcher.no_message()
    watcher.disconnect()


@pytest.mark.parametrize("version", VERSIONS)
def test_persistent_session_queues_qos1_while_offline(broker, version):
    client_id = f"persist-{version}"
    topic = f"persist/{version}"
    extra = ["-x", "60"] if version == "mqttv5" else []
    with Subscriber(broker.port, topic, "-V", version, "-q", "1", "-c", "-i", client_id, *extra, "-E") as sub:
        assert sub.wait_exit() == 0
    for i in range(3):
        assert mosquitto_pub(broker.port, "-V", version, "-q", "1", "-t", topic, "-m", f"q{i}").returncode == 0
    with Subscriber(broker.port, topic, "-V", version, "-q", "1", "-c", "-i", client_id, *extra, "-C", "3") as sub:
        assert sub.messages(3) == ["q0", "q1", "q2"]


def test_request_response_with_mosquitto_rr(broker):
    rr = require_peer("mosquitto_rr")
    responder = PahoClient(broker.port, version=5)
    responder.subscribe("rr/request", qos=1)
    proc = subprocess.Popen([rr, "-h", "127.0.0.1", "-p", str(broker.port), "-t", "rr/request",
                             "-e", "rr/response", "-m", "ping", "-W", "10"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    request = responder.message()
    assert request.payload == b"ping"
    response_topic = request.properties.ResponseTopic
    assert response_topic == "rr/response"
    responder.publish(response_topic, b"pong", qos=1)
    out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    assert out == "pong\n"
    responder.disconnect()


def test_v5_properties_pass_through(broker):
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    sub = PahoClient(broker.port, version=5)
    sub_props = Properties(PacketTypes.SUBSCRIBE)
    sub_props.SubscriptionIdentifier = 42
    sub.subscribe("props/#", qos=1, properties=sub_props)
    pub = PahoClient(broker.port, version=5)
    props = Properties(PacketTypes.PUBLISH)
    props.UserProperty = [("a", "1"), ("b", "2")]
    props.ContentType = "text/plain"
    props.CorrelationData = b"\x00\x01"
    props.ResponseTopic = "props/reply"
    props.PayloadFormatIndicator = 1
    pub.publish("props/x", b"hello", qos=1, properties=props)
    msg = sub.message()
    assert msg.payload == b"hello"
    assert msg.properties.UserProperty == [("a", "1"), ("b", "2")]
    assert msg.properties.ContentType == "text/plain"
    assert msg.properties.CorrelationData == b"\x00\x01"
    assert msg.properties.ResponseTopic == "props/reply"
    assert msg.properties.SubscriptionIdentifier == [42]
    pub.disconnect()
    sub.disconnect()


def test_malformed_packet_closes_only_that_connection(broker):
    watcher = PahoClient(broker.port, version=4)
    watcher.subscribe("still/alive", qos=0)
    mark = broker.mark()
    with socket.create_connection(("127.0.0.1", broker.port)) as s:
        # CONNECT with remaining length that claims more than 4 length bytes: malformed.
        s.sendall(b"\x10\xff\xff\xff\xff\xff")
        s.settimeout(5)
        assert s.recv(100) == b""  # the broker closed it
    broker.wait_for_log(f"127.0.0.1", start=mark)
    assert mosquitto_pub(broker.port, "-t", "still/alive", "-m", "yes").returncode == 0
    assert watcher.message().payload == b"yes"
    watcher.disconnect()


def test_tls_client_on_plain_port_is_named_in_the_log(broker):
    mark = broker.mark()
    with socket.create_connection(("127.0.0.1", broker.port)) as s:
        s.sendall(b"\x16\x03\x01\x00\x05hello")
        s.settimeout(5)
        assert s.recv(100) == b""
    broker.wait_for_log("TLS handshake was sent to a plain MQTT listener", start=mark)


def test_http_on_mqtt_port_is_named_in_the_log(broker):
    mark = broker.mark()
    with socket.create_connection(("127.0.0.1", broker.port)) as s:
        s.sendall(b"GET /mqtt HTTP/1.1\r\nHost: x\r\n\r\n")
        s.settimeout(5)
        assert s.recv(100) == b""
    broker.wait_for_log("an HTTP request was sent to an MQTT listener", start=mark)


def test_connect_log_lines_match_mosquitto(broker):
    mark = broker.mark()
    c = PahoClient(broker.port, client_id="logcheck", version=4, keepalive=30)
    broker.wait_for_log("New client connected from 127.0.0.1:", start=mark)
    line = broker.wait_for_log("as logcheck (p2, c1, k30)", start=mark)
    assert line.endswith(".")
    c.disconnect()
    broker.wait_for_log("Client logcheck disconnected.", start=mark)


def test_config_error_names_file_line_option_and_exits_3(tmp_path):
    conf = tmp_path / "bad.conf"
    conf.write_text("listener 1883\nmax_inflight_messages lots\n")
    r = subprocess.run([sys.executable, "-m", "midge", "broker", "-c", str(conf)],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 3
    assert f"{conf}:2:" in r.stderr and "max_inflight_messages" in r.stderr


def test_sigterm_exits_zero(tmp_path):
    port = free_port()
    proc = start_midge(f"listener {port} 127.0.0.1\n", tmp_path, port)
    proc.signal(signal.SIGTERM)
    assert proc.proc.wait(10) == 0


def test_no_config_is_local_only_with_anonymous(tmp_path):
    port = free_port()
    proc = start_midge(None, tmp_path, port, extra_args=["-p", str(port)])
    try:
        wait_for_port(port, "::1")
        assert mosquitto_pub(port, "-t", "a", "-m", "b").returncode == 0
        assert mosquitto_pub(port, "-t", "a", "-m", "b", host="::1").returncode == 0
        proc.wait_for_log("local only mode")
    finally:
        assert proc.stop() == 0


def test_unix_socket_listener(tmp_path):
    path = tmp_path / "mqtt.sock"
    port = free_port()
    proc = start_midge(f"listener {port} 127.0.0.1\nlistener 0 {path}\nallow_anonymous true\n", tmp_path, port)
    try:
        exe = require_peer("mosquitto_pub")
        r = subprocess.run([exe, "--unix", str(path), "-t", "u", "-m", "x"], capture_output=True, text=True, timeout=10)
        assert r.returncode == 0, r.stderr
    finally:
        proc.stop()


def test_max_connections(tmp_path):
    port = free_port()
    proc = start_midge(f"listener {port} 127.0.0.1\nmax_connections 1\nallow_anonymous true\n", tmp_path, port)
    try:
        first = PahoClient(port, version=4)
        r = mosquitto_pub(port, "-t", "x", "-m", "y")
        assert r.returncode != 0
        first.disconnect()
    finally:
        proc.stop()


def test_anonymous_refused_once_a_listener_is_defined(tmp_path):
    port = free_port()
    proc = start_midge(f"listener {port} 127.0.0.1\n", tmp_path, port)
    try:
        r = mosquitto_pub(port, "-t", "x", "-m", "y")
        assert r.returncode != 0
        assert "not authori" in (r.stderr + r.stdout).lower()
    finally:
        proc.stop()


def test_v5_publish_over_message_size_limit_acked_so_paho_can_read_it(tmp_path):
    # Issue 15 item 7, kept difference: Mosquitto answers 0x95, which MQTT 5 does not
    # allow in a PUBACK; paho-mqtt then reports a malformed packet, reconnects and sends
    # the message again. midge's 0x83 ends the flow for paho.
    port = free_port()
    proc = start_midge(f"listener {port} 127.0.0.1\nallow_anonymous true\nmessage_size_limit 10\n",
                       tmp_path, port)
    try:
        client = PahoClient(port, "big", version=5)
        client.client.publish("big", b"x" * 11, qos=1)
        kind, mid, reason, props = client.wait_event("publish")
        assert reason == 0x83
        client.client.publish("small", b"x" * 10, qos=1)
        assert client.wait_event("publish")[2] == 0x10   # no subscribers: the same connection
        assert client.events.empty(), list(client.events.queue)   # no disconnect, no reconnect
        client.disconnect()
    finally:
        proc.stop()
