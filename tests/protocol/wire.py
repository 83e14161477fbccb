"""A blocking MQTT connection made of midge's codec and a socket, for tests against real peers."""

from __future__ import annotations

import socket
import time

from midge.protocol.codec import Decoder, encode
from tests.brokerproc import TIMEOUT_SCALE


class WireClient:
    """Encode packets onto a socket; decode what comes back with a Decoder."""

    def __init__(self, sock: socket.socket, decoder: Decoder, version: int):
        self.sock = sock
        self.decoder = decoder
        self.version = version
        self.pending: list = []
        self.closed = False
        sock.settimeout(5 * TIMEOUT_SCALE)

    @classmethod
    def connect(cls, port: int, version: int) -> WireClient:
        sock = socket.create_connection(("127.0.0.1", port), timeout=5 * TIMEOUT_SCALE)
        return cls(sock, Decoder(version=version, role="client"), version)

    def send(self, *packets) -> None:
        self.sock.sendall(b"".join(encode(p, self.version) for p in packets))

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def receive(self, count: int = 1) -> list:
        """Exactly `count` packets (waits for them; fails on timeout, close or decode error)."""
        deadline = time.monotonic() + 5 * TIMEOUT_SCALE
        while len(self.pending) < count:
            assert time.monotonic() < deadline, f"timed out, got {self.pending}"
            data = self.sock.recv(65536)
            assert data, f"peer closed the connection, got {self.pending}"
            self.pending += self.decoder.feed(data)
            assert self.decoder.error is None, self.decoder.error
        packets, self.pending = self.pending[:count], self.pending[count:]
        return packets

    def receive_until_closed(self) -> list:
        """Everything the peer sends until it closes the connection."""
        return self.receive_until(lambda packet: False)

    def receive_until(self, done) -> list:
        """Packets until one satisfies `done` (included) or the peer closes the connection."""
        while not any(done(packet) for packet in self.pending):
            try:
                data = self.sock.recv(65536)
            except ConnectionResetError:
                data = b""
            if not data:
                self.closed = True
                return self.pending
            self.pending += self.decoder.feed(data)
        return self.pending

    def close(self) -> None:
        self.sock.close()
