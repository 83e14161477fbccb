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
    (tmp / "www" / "app.js").write_text("console.log('midge');\n")
    (tmp / "www" / "style.css").write_text("body { color: black; }\n")
    (tmp / "www" / "data.json").write_text('{"a": 1}\n')
    (tmp / "www" / "blob.bin").write_bytes(b"\x00\x01")
    (tmp / "www" / "sub").mkdir()
    (tmp / "www" / "sub" / "index.html").write_text("<p>sub</p>\n")
    (tmp / "www" / "empty").mkdir()
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


def http(port: int, path: str, method: str = "GET") -> tuple[str, list[tuple[str, str]], bytes]:
    """One raw HTTP/1.1 request; returns (status line, header list, body)."""
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(f"{method} {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        s.settimeout(5)
        data = b""
        while chunk := s.recv(4096):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status, *lines = head.decode("latin-1").split("\r\n")
    headers = [(name.lower(), value.strip()) for name, _, value in (line.partition(":") for line in lines)]
    return status, headers, body


def header(headers, name: str) -> list[str]:
    return [value for key, value in headers if key == name.lower()]


@pytest.mark.parametrize("path, content_type, body", [
    ("/", "text/html; charset=utf-8", b"<h1>midge</h1>\n"),
    ("/index.html", "text/html; charset=utf-8", b"<h1>midge</h1>\n"),
    ("/app.js", "text/javascript; charset=utf-8", b"console.log('midge');\n"),
    ("/style.css?v=2", "text/css; charset=utf-8", b"body { color: black; }\n"),
    ("/data.json", "application/json", b'{"a": 1}\n'),
    ("/blob.bin", "application/octet-stream", b"\x00\x01"),
    ("/sub/", "text/html; charset=utf-8", b"<p>sub</p>\n"),
    ("/%73tyle.css", "text/css; charset=utf-8", b"body { color: black; }\n"),
])
def test_http_dir_serves_each_file_with_one_length_and_type(ws_broker, path, content_type, body):
    """Issue 12: one Content-Length and one Content-Type (Chromium refuses duplicates)."""
    status, headers, received = http(ws_broker.ws_port, path)
    assert status == "HTTP/1.1 200 OK"
    assert header(headers, "Content-Type") == [content_type]
    assert header(headers, "Content-Length") == [str(len(body))]
    assert received == body
    assert len({key for key, _ in headers}) == len(headers), headers  # no header twice


def test_http_dir_head_has_the_headers_without_the_body(ws_broker):
    status, headers, body = http(ws_broker.ws_port, "/app.js", "HEAD")
    assert status == "HTTP/1.1 200 OK"
    assert header(headers, "Content-Length") == [str(len("console.log('midge');\n"))]
    assert header(headers, "Content-Type") == ["text/javascript; charset=utf-8"]
    assert body == b""


@pytest.mark.parametrize("method, path, status", [
    ("GET", "/../midge.conf", "404 Not Found"),
    ("GET", "/%2e%2e/midge.conf", "404 Not Found"),
    ("GET", "/missing.html", "404 Not Found"),
    ("GET", "/%00", "404 Not Found"),
    ("GET", "/empty/", "404 Not Found"),
    ("GET", "/empty", "403 Forbidden"),
    ("HEAD", "/missing.html", "404 Not Found"),
    ("POST", "/index.html", "405 Method Not Allowed"),
])
def test_http_dir_refusals_name_no_file(ws_broker, tmp_path_factory, method, path, status):
    got, headers, body = http(ws_broker.ws_port, path, method)
    assert got == f"HTTP/1.1 {status}"
    assert header(headers, "Content-Length") == [str(len(body))] or method == "HEAD"
    assert len(header(headers, "Content-Type")) == 1
    text = body.decode()
    assert "/" not in text and "midge.conf" not in text and "www" not in text
    if method == "HEAD":
        assert body == b""


def test_a_served_file_logs_no_failed_connection(ws_broker):
    mark = ws_broker.mark()
    assert http(ws_broker.ws_port, "/app.js")[0] == "HTTP/1.1 200 OK"
    # A refused request afterwards logs a line: every line of the served one is before it.
    assert http(ws_broker.ws_port, "/nothing-here")[0] == "HTTP/1.1 404 Not Found"
    ws_broker.wait_for_log("/nothing-here answered 404", start=mark)
    served = [line for line in ws_broker.lines[mark:] if "/app.js" in line or
              ("failed" in line and "/nothing-here" not in line)]
    assert served == []


def test_mqtt_bytes_on_websocket_port_are_refused(ws_broker):
    mark = ws_broker.mark()
    with socket.create_connection(("127.0.0.1", ws_broker.ws_port)) as s:
        s.sendall(b"\x10\x0c\x00\x04MQTT\x04\x02\x00\x3c\x00\x00")
        s.settimeout(5)
        while s.recv(4096):
            pass
    ws_broker.wait_for_log("failed", start=mark)
