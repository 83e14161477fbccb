"""MQTT over WebSocket (`protocol websockets`): a transport stage over websockets' sans-I/O core.

The stage has the same shape as the TLS stage (`feed`, `data_to_send`, `send`,
`handshake_complete`, `failure`, `close`), so `listener 8080` + `protocol websockets`
+ `certfile` is TCP -> TLS -> WebSocket -> MQTT with no special case.

MQTT packets travel in binary frames and may span frames (MQTT 5.0 section 6), so the
stage simply concatenates binary payloads; the MQTT decoder reassembles packets.
Subprotocols `mqtt` and `mqttv3.1` are accepted, as Mosquitto does. A plain HTTP GET
or HEAD (no Upgrade) is served from `http_dir` when that is set (one response, then the
connection closes), else refused with 426. Responses carry one Content-Length and one
Content-Type each (browsers refuse duplicates), and error bodies never name a file.
"""

from __future__ import annotations

import email.utils
import http
import logging
import mimetypes
import os
from urllib.parse import unquote

from websockets.datastructures import Headers
from websockets.frames import Opcode
from websockets.http11 import Request, Response
from websockets.protocol import State
from websockets.server import ServerProtocol
from websockets.typing import Subprotocol

SUBPROTOCOLS = [Subprotocol("mqtt"), Subprotocol("mqttv3.1")]

# Content types of the files a web page is made of, fixed here rather than read from the
# system's mime.types (which varies between machines, e.g. for .js and .mjs).
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".htm": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".map": "application/json",
    ".txt": "text/plain; charset=utf-8",
    ".xml": "application/xml",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
    ".webp": "image/webp",
    ".ico": "image/x-icon",
    ".wasm": "application/wasm",
    ".woff": "font/woff",
    ".woff2": "font/woff2",
}

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
        self.served = False  # an HTTP file response was sent in full
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
            if request.method == "HEAD":
                response.body = b""  # same headers (Content-Length included), no body
            self.protocol.send_response(response)
            if response.status_code < 400:
                self.served = True  # a file went out: the connection closes without a failure line
            else:
                self.failure = (f"plain HTTP {request.method} request for {request.path} "
                                f"answered {response.status_code} {response.reason_phrase}")
            return
        response = self.protocol.accept(request)
        self.protocol.send_response(response)
        if response.status_code == 101:
            self.handshake_complete = True
        else:
            self.failure = f"WebSocket handshake refused ({response.status_code}): {self.protocol.handshake_exc}"

    def _http_response(self, request: Request) -> Response:
        """Serve a static file from http_dir (GET and HEAD), never from outside it."""
        if not self.http_dir:
            return _plain(426, "This is an MQTT over WebSocket endpoint.\n", {"Upgrade": "websocket"})
        if request.method not in ("GET", "HEAD"):
            return _plain(405, "Only GET and HEAD are served here.\n", {"Allow": "GET, HEAD"})
        path = unquote(request.path.split("?", 1)[0].split("#", 1)[0])
        if path.endswith("/"):
            path += "index.html"
        root = os.path.realpath(self.http_dir)
        try:
            full = os.path.realpath(os.path.join(root, path.lstrip("/")))
            if not full.startswith(root + os.sep):
                return _plain(404, "Not found\n")  # outside http_dir: as if it did not exist
            if os.path.isdir(full):
                return _plain(403, "Forbidden\n")  # no directory listings
            with open(full, "rb") as f:
                body = f.read()
        except (FileNotFoundError, NotADirectoryError, ValueError):  # ValueError: a NUL in the path
            return _plain(404, "Not found\n")
        except OSError:  # unreadable (permissions, ...): say no without saying why
            return _plain(403, "Forbidden\n")
        headers = Headers([
            ("Date", email.utils.formatdate(usegmt=True)),
            ("Connection", "close"),
            ("Content-Type", content_type(full)),
            ("Content-Length", str(len(body))),
            ("X-Content-Type-Options", "nosniff"),
            ("Cache-Control", "no-cache"),
        ])
        return Response(200, "OK", headers, b"" if request.method == "HEAD" else body)

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


def content_type(path: str) -> str:
    """The Content-Type of a file served from http_dir."""
    extension = os.path.splitext(path)[1].lower()
    known = CONTENT_TYPES.get(extension)
    if known is not None:
        return known
    guessed = mimetypes.guess_type(path)[0]
    if guessed is None:
        return "application/octet-stream"
    return f"{guessed}; charset=utf-8" if guessed.startswith("text/") else guessed


def _plain(status: int, text: str, extra: dict[str, str] | None = None) -> Response:
    """A short text/plain response that says what went wrong without naming any file."""
    status = http.HTTPStatus(status)
    body = text.encode()
    headers = Headers([
        ("Date", email.utils.formatdate(usegmt=True)),
        ("Connection", "close"),
        ("Content-Type", "text/plain; charset=utf-8"),
        ("Content-Length", str(len(body))),
    ])
    for name, value in (extra or {}).items():
        headers[name] = value
    return Response(status.value, status.phrase, headers, body)
