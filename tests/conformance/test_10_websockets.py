"""10-websockets: MQTT over WebSocket (MQTT-6.0.0-x): binary frames, subprotocol, packets
split across frames or several in one frame; traffic crosses to plain TCP clients."""

import contextlib
import time

import pytest

from tests.conformance import packets as p
from tests.conformance.wire import TIMEOUT, connect, expect_publish, subscribe
from tests.peers import require_module

EXTRA_LISTENERS = {"ws": "protocol websockets\n"}
CLOSE_TIMEOUT = 2.0


class WsConn:
    """An MQTT client over a WebSocket: whole packets out, whole packets in."""

    def __init__(self, stack: contextlib.ExitStack, port: int, subprotocol: str = "mqtt"):
        client = require_module("websockets.sync.client")
        self.ws = stack.enter_context(client.connect(
            f"ws://127.0.0.1:{port}/", subprotocols=[subprotocol], open_timeout=TIMEOUT,
            close_timeout=CLOSE_TIMEOUT))
        self.buffer = b""

    def send_frames(self, *frames: bytes) -> None:
        for frame in frames:
            self.ws.send(frame)

    def read_packet(self) -> bytes:
        while True:
            try:
                _, length, header = p.split_fixed_header(self.buffer)
                if len(self.buffer) >= header + length:
                    data, self.buffer = self.buffer[:header + length], self.buffer[header + length:]
                    return data
            except IndexError:
                pass
            message = self.ws.recv(timeout=TIMEOUT)
            assert isinstance(message, bytes), f"MQTT-6.0.0-1: got a text frame {message!r}"
            self.buffer += message



@pytest.fixture
def ws(broker):
    with contextlib.ExitStack() as stack:
        yield lambda subprotocol="mqtt": WsConn(stack, broker.ports["ws"], subprotocol)


# MQTT-6.0.0-1/4: the server selects the "mqtt" subprotocol; CONNECT and CONNACK travel as binary frames.
@pytest.mark.parametrize("ver", [4, 5])
def test_ws_connect(broker, ws, cid, ver):
    conn = ws()
    assert conn.ws.subprotocol == "mqtt"
    conn.send_frames(p.gen_connect(cid(), proto_ver=ver))
    got = p.decode(conn.read_packet(), ver)
    assert got["type"] == "CONNACK" and got["rc"] == 0, got
    conn.send_frames(p.gen_pingreq())
    assert conn.read_packet() == p.gen_pingresp()


# Mosquitto also serves the legacy "mqttv3.1" subprotocol name.
def test_ws_legacy_subprotocol(broker, ws, cid):
    conn = ws("mqttv3.1")
    assert conn.ws.subprotocol == "mqttv3.1"
    conn.send_frames(p.gen_connect(cid(), proto_ver=3))
    assert conn.read_packet() == p.gen_connack(0)


# MQTT-6.0.0-2: one MQTT packet may span several WebSocket frames.
def test_ws_packet_split_across_frames(broker, ws, cid):
    conn = ws()
    data = p.gen_connect(cid()) + p.gen_pingreq()
    conn.send_frames(data[:3], data[3:9], data[9:])
    assert conn.read_packet() == p.gen_connack(0)
    assert conn.read_packet() == p.gen_pingresp()


# MQTT-6.0.0-3: several MQTT packets may share one WebSocket frame.
def test_ws_packets_in_one_frame(broker, ws, cid):
    conn = ws()
    conn.send_frames(p.gen_connect(cid()) + p.gen_subscribe(1, "ws/one", 0) + p.gen_pingreq())
    assert conn.read_packet() == p.gen_connack(0)
    assert conn.read_packet() == p.gen_suback(1, [0])
    assert conn.read_packet() == p.gen_pingresp()


# WebSocket and TCP clients share one broker: messages cross in both directions.
def test_ws_and_tcp_interoperate(broker, ws, cid):
    conn = ws()
    conn.send_frames(p.gen_connect(cid("w")), p.gen_subscribe(1, "ws/in", 1))
    assert conn.read_packet() == p.gen_connack(0)
    assert conn.read_packet() == p.gen_suback(1, [1])
    tcp = connect(broker.port, cid("t"))
    subscribe(tcp, "ws/out", 0)
    tcp.send(p.gen_publish("ws/in", 1, b"to-ws", mid=1))
    tcp.expect(p.gen_puback(1))
    got = p.decode(conn.read_packet())
    assert (got["topic"], got["payload"], got["qos"]) == (b"ws/in", b"to-ws", 1), got
    conn.send_frames(p.gen_puback(got["mid"]), p.gen_publish("ws/out", 0, b"to-tcp"))
    expect_publish(tcp, "ws/out", b"to-tcp")


# RFC 6455 5.5.1 (MQTT-6.0.0 runs over it): a client's Close frame is answered with a Close frame.
def test_ws_close_handshake(broker, ws, cid):
    conn = ws()
    conn.send_frames(p.gen_connect(cid()))
    assert conn.read_packet() == p.gen_connack(0)
    started = time.monotonic()
    conn.ws.close()
    assert conn.ws.protocol.close_rcvd is not None, "no Close frame from the server"
    assert time.monotonic() - started < CLOSE_TIMEOUT


# MQTT-3.14.4-1 over WebSocket: after DISCONNECT the server closes the connection (Mosquitto closes TCP
# without a WebSocket Close frame, which RFC 6455 7.1.7 tolerates, so the frame is not required).
def test_ws_disconnect_closes(broker, ws, cid):
    conn = ws()
    conn.send_frames(p.gen_connect(cid()))
    assert conn.read_packet() == p.gen_connack(0)
    conn.send_frames(p.gen_disconnect())
    closed = require_module("websockets.exceptions").ConnectionClosed
    with pytest.raises(closed):
        conn.ws.recv(timeout=TIMEOUT)
