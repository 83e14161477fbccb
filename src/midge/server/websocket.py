"""MQTT over WebSocket (`protocol websockets`): a transport stage over websockets' sans-I/O core.

The stage has the same shape as the TLS stage (`feed`, `data_to_send`, `send`,
`handshake_complete`, `failure`, `close`), so `listener 8080` + `protocol websockets`
+ `certfile` is TCP -> TLS -> WebSocket -> MQTT with no special case.

MQTT packets travel in binary frames and may span frames (MQTT 5.0 section 6), so the
stage simply concatenates binary payloads; the MQTT decoder reassembles packets.
Subprotocols `mqtt` and `mqttv3.1` are accepted, as Mosquitto does. A plain HTTP GET
(no Upgrade) is served from `http_dir` when that is set, else refused with 404 / 426.
"""

from __future__ import annotations

import logging
import mimetypes
import os

from websockets.frames import Opcode
from websockets.http11 import Request
from websockets.protocol import State
from websockets.server import ServerProtocol
from websockets.typing import Subprotocol

SUBPROTOCOLS = [Subprotocol("mqtt"), Subprotocol("mqttv3.1")]

# websockets logs protocol events through the stdlib `logging` module; midge has its own
# log, so keep this one quiet unless a developer turns it on.
_ws_logger = logging.getLogger("midge.websockets")
_ws_logger.addHandler(logging.NullHandler())
_ws_logger.propagate = False


def _select_subprotocol(protocol, offered):
    for name in offered:
        if name in SUBPROTOCOLS:
            return name
    # MQTT.js and paho always offer "mqtt"; a client offering nothing still gets served.
    return None


def _not_http(data: bytes) -> str | None:
    """Name the mistake when a client speaks something other than HTTP to this port."""
    if data[0] == 0x16:
        return "a TLS handshake was sent to a WebSocket listener without TLS (certfile/keyfile)"
    if data[0] == 0x10:
        return "plain MQTT was sent to a WebSocket listener; use a 'protocol mqtt' listener"
    if not data[:1].isalpha():
        return "the client did not send an HTTP request (WebSocket listener)"
    return None


class WebSocketStage:
    """Server side WebSocket framing for one connection."""

    def __init__(self, peer: str, http_dir: str | None = None, max_size: int | None = None):
        self.peer = peer
        self.http_dir = http_dir
        self.protocol = ServerProtocol(
            subprotocols=SUBPROTOCOLS,
            select_subprotocol=_select_subprotocol,
            max_size=max_size,
            logger=_ws_logger,
        )
        self.handshake_complete = False
        self.failure: str | None = None
        self.request_path: str | None = None
        self.closed_by_peer = False
        self.first_read = True

    def feed(self, data: bytes) -> bytes:
        protocol = self.protocol
        if self.first_read and data:
            self.first_read = False
            reason = _not_http(data)
            if reason:
                self.failure = reason
                return b""
        protocol.receive_data(data)
        chunks: list[bytes] = []
        for event in protocol.events_received():
            if isinstance(event, Request):
                self._handle_request(event)
            elif event.opcode in (Opcode.BINARY, Opcode.CONT):
                chunks.append(event.data)
            elif event.opcode is Opcode.TEXT:
                # MQTT 5.0 6.0: text frames are a protocol error; close the connection.
                self.failure = "WebSocket text frame received (MQTT requires binary frames)"
                protocol.fail(1003, "MQTT needs binary frames")
        if protocol.handshake_exc is not None and self.failure is None:
            self.failure = f"WebSocket handshake failed: {protocol.handshake_exc}"
        elif protocol.state is not State.OPEN and self.handshake_complete and protocol.close_expected():
            # The client sent a Close frame: websockets queued our Close reply (RFC 6455
            # 5.5.1); the server then closes TCP (7.1.1). Connection writes the reply first.
            self.closed_by_peer = True
        return b"".join(chunks)

    def _handle_request(self, request: Request) -> None:
        self.request_path = request.path
        upgrade = request.headers.get("Upgrade", "")
        if upgrade.lower() != "websocket":
            response = self._http_response(request)
            self.protocol.send_response(response)
            self.failure = f"plain HTTP request for {request.path} (not a WebSocket upgrade)"
            return
        response = self.protocol.accept(request)
        self.protocol.send_response(response)
        if response.status_code == 101:
            self.handshake_complete = True
        else:
            self.failure = f"WebSocket handshake refused ({response.status_code}): {self.protocol.handshake_exc}"

    def _http_response(self, request: Request):
        """Serve a static file from http_dir (GET only), never outside it."""
        if not self.http_dir:
            return self.protocol.reject(426, "This is an MQTT over WebSocket endpoint.\n")
        path = request.path.split("?", 1)[0]
        if path.endswith("/"):
            path += "index.html"
        root = os.path.realpath(self.http_dir)
        full = os.path.realpath(os.path.join(root, path.lstrip("/")))
        if not full.startswith(root + os.sep) or not os.path.isfile(full):
            return self.protocol.reject(404, "Not found\n")
        with open(full, "rb") as f:
            body = f.read()
        response = self.protocol.reject(200, "")
        response.body = body
        response.headers["Content-Type"] = mimetypes.guess_type(full)[0] or "application/octet-stream"
        response.headers["Content-Length"] = str(len(body))
        return response

    def data_to_send(self) -> bytes:
        return b"".join(self.protocol.data_to_send())

    def send(self, data: bytes) -> None:
        if data:
            self.protocol.send_binary(data)

    def close(self) -> None:
        try:
            self.protocol.send_close(1000)
        except Exception:
            pass

    @property
    def info(self):
        return None
