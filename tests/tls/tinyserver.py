"""A few-line MQTT responder behind a midge TlsStage, to test TLS with real clients
(mosquitto_sub/pub, openssl s_client) before, and independently of, the broker.

On CONNECT it answers CONNACK 0; on SUBSCRIBE a SUBACK and one PUBLISH on `tls/identity`
whose payload is the client's TLS identity (CN, or PSK identity, or "-").
"""

from __future__ import annotations

import asyncio
import threading

from midge.server.tls_context import TlsListenerContext


class _Connection(asyncio.Protocol):
    def __init__(self, server: "TinyTlsServer"):
        self.server = server
        self.buffer = b""

    def connection_made(self, transport):
        self.transport = transport
        host, port = transport.get_extra_info("peername")[:2]
        self.stage = self.server.context.new_stage(f"{host}:{port}")

    def data_received(self, data):
        stage = self.stage
        was_complete = stage.handshake_complete
        plain = stage.feed(data)
        out = stage.data_to_send()
        if out:
            self.transport.write(out)
        if stage.failure is not None:
            self.server._record("failures", stage.failure)
            self.transport.close()
            return
        if stage.handshake_complete and not was_complete:
            self.server._record("infos", stage.info)
        if plain:
            self.buffer += plain
            self._mqtt()

    def connection_lost(self, exc):
        if not self.stage.handshake_complete and self.stage.failure is None:
            self.server._record("failures", self.stage.abort_failure())

    def _send(self, data: bytes):
        self.stage.send(data)
        self.transport.write(self.stage.data_to_send())

    def _mqtt(self):
        while len(self.buffer) >= 2:
            length, multiplier, index = 0, 1, 1
            while True:
                if index >= len(self.buffer):
                    return
                byte = self.buffer[index]
                length += (byte & 0x7F) * multiplier
                multiplier *= 128
                index += 1
                if not byte & 0x80:
                    break
            if len(self.buffer) < index + length:
                return
            kind, body = self.buffer[0], self.buffer[index:index + length]
            self.buffer = self.buffer[index + length:]
            if kind == 0x10:
                self._send(b"\x20\x02\x00\x00")
            elif kind == 0x82:
                info = self.stage.info
                identity = (info.psk_identity or info.common_name or "-").encode()
                self._send(bytes([0x90, 3]) + body[:2] + b"\x00")
                topic = b"tls/identity"
                payload = len(topic).to_bytes(2, "big") + topic + identity
                self._send(bytes([0x30, len(payload)]) + payload)
            elif kind & 0xF0 == 0x30:
                self.server._record("published", body)
            elif kind == 0xC0:
                self._send(b"\xd0\x00")
            elif kind == 0xE0:
                self.stage.close()
                self.transport.write(self.stage.data_to_send())
                self.transport.close()
                return


class TinyTlsServer:
    """Runs in a background thread; `wait_for("failures")` blocks until one is recorded."""

    def __init__(self, listener, psk_lookup=None, host="127.0.0.1"):
        self.context = TlsListenerContext.from_listener(listener, psk_lookup, None)
        self.host = host
        self.records = {"failures": [], "infos": [], "published": []}
        self._cond = threading.Condition()
        self._loop = asyncio.new_event_loop()
        started = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(started,), daemon=True)
        self._thread.start()
        started.wait(10)

    def _run(self, started):
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(
            self._loop.create_server(lambda: _Connection(self), self.host, 0))
        self.port = server.sockets[0].getsockname()[1]
        self._server = server
        started.set()
        self._loop.run_forever()
        server.close()
        self._loop.run_until_complete(server.wait_closed())

    def _record(self, kind, value):
        with self._cond:
            self.records[kind].append(value)
            self._cond.notify_all()

    def wait_for(self, kind: str, timeout: float = 10.0):
        with self._cond:
            if not self._cond.wait_for(lambda: self.records[kind], timeout):
                raise AssertionError(f"no {kind} recorded; records: {self.records}")
            return self.records[kind][-1]

    def close(self):
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
