"""MQTT over WebSocket (`protocol websockets`) with paho-mqtt's websocket transport."""

from __future__ import annotations

import socket

import pytest

from tests.brokerproc import free_port, start_midge
from tests.clients import PahoClient, Subscriber, mosquitto_pub
from tests.peers import require_module


@pytest.fixture(scope="module")
def ws_broker(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ws")
    (tmp / "www").mkdir()
    (tmp / "www" / "index.html").write_text("<h1>midge</h1>\n")
    port, ws_port = free_port(), free_port()
    proc = start_midge(
        f"listener {port} 127.0.0.1\nlistener {ws_port} 127.0.0.1\nprotocol websockets\n"
        f"http_dir {tmp / 'www'}\nallow_anonymous true\n",
        tmp, ws_port,
    )
    proc.port, proc.ws_port = port, ws_port
    yield proc
    assert proc.stop() == 0, proc.output


class WsPaho(PahoClient):
    def __init__(self, port, version=4, **kwargs):
        require_module("paho.mqtt.client")
        super().__init__(port, version=version, connect=False, **kwargs)
        # PahoClient built the client for TCP; rebuild it with the websocket transport.
        mqtt = self.mqtt
        proto = {4: mqtt.MQTTv311, 5: mqtt.MQTTv5}[version]
        old = self.client
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=proto, transport="websockets")
        for name in ("on_connect", "on_disconnect", "on_subscribe", "on_unsubscribe", "on_publish", "on_message"):
            setattr(self.client, name, getattr(old, name))
        self.connect()


@pytest.mark.parametrize("version", [4, 5])
def test_websocket_client_talks_to_tcp_client(ws_broker, version):
    ws = WsPaho(ws_broker.ws_port, version=version)
    ws.subscribe("ws/#", qos=1)
    assert mosquitto_pub(ws_broker.port, "-t", "ws/in", "-m", "from-tcp", "-q", "1").returncode == 0
    msg = ws.message()
    assert (msg.topic, msg.payload) == ("ws/in", b"from-tcp")
    with Subscriber(ws_broker.port, "ws/out", "-C", "1") as sub:
        sub.wait_subscribed()
        ws.publish("ws/out", b"x" * 70000, qos=1)  # spans several WebSocket frames/reads
        assert sub.messages(1) == ["x" * 70000]
    ws.disconnect()


def test_http_dir_serves_files_and_refuses_escape(ws_broker):
    def get(path):
        with socket.create_connection(("127.0.0.1", ws_broker.ws_port)) as s:
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            s.settimeout(5)
            data = b""
            while chunk := s.recv(4096):
                data += chunk
            return data

    assert get("/").startswith(b"HTTP/1.1 200") and b"<h1>midge</h1>" in get("/")
    assert get("/../midge.conf").startswith(b"HTTP/1.1 404")


def test_mqtt_bytes_on_websocket_port_are_refused(ws_broker):
    mark = ws_broker.mark()
    with socket.create_connection(("127.0.0.1", ws_broker.ws_port)) as s:
        s.sendall(b"\x10\x0c\x00\x04MQTT\x04\x02\x00\x3c\x00\x00")
        s.settimeout(5)
        while s.recv(4096):
            pass
    ws_broker.wait_for_log("failed", start=mark)
