"""A raw MQTT client socket for black-box tests: send bytes, expect bytes.

Every wait has an upper bound; nothing sleeps. `expect_nothing` is the one place that
waits for silence, with a short bound, for the few "must not be delivered" checks.
"""

from __future__ import annotations

import socket
import time

from tests.brokerproc import TIMEOUT_SCALE
from tests.conformance import packets as p

TIMEOUT = 5.0 * TIMEOUT_SCALE
SILENCE = 0.3 * TIMEOUT_SCALE


class Closed(Exception):
    """The broker closed the connection."""


def describe(data: bytes, proto_ver: int) -> str:
    try:
        return f"{p.decode(data, proto_ver)} raw={data.hex(' ')}"
    except Exception as exc:  # a broken packet is still worth showing
        return f"<undecodable {exc}> raw={data.hex(' ')}"


class Conn:
    """One TCP connection to the broker under test."""

    def __init__(self, port: int, proto_ver: int = 4, host: str = "127.0.0.1"):
        self.proto_ver = proto_ver
        self.sock = socket.create_connection((host, port), timeout=TIMEOUT)
        self.buffer = b""
        self.eof = False

    # -- raw I/O -------------------------------------------------------------------

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self, deadline: float) -> None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError
        self.sock.settimeout(remaining)
        try:
            chunk = self.sock.recv(65536)
        except socket.timeout:
            raise TimeoutError from None
        except (ConnectionResetError, BrokenPipeError):
            chunk = b""
        if not chunk:
            self.eof = True
            raise Closed
        self.buffer += chunk

    def read_packet(self, timeout: float = TIMEOUT) -> bytes:
        """The next whole packet; raises Closed on EOF, TimeoutError on silence."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                _, length, header = p.split_fixed_header(self.buffer)
                if len(self.buffer) >= header + length:
                    data, self.buffer = self.buffer[:header + length], self.buffer[header + length:]
                    return data
            except IndexError:
                pass
            if self.eof:
                raise Closed
            self._fill(deadline)

    # -- expectations --------------------------------------------------------------

    def expect(self, expected: bytes, what: str = "", timeout: float = TIMEOUT) -> bytes:
        """Read one packet and require it to equal `expected` (byte-equal, or equal
        once optional v5 parts are normalised)."""
        label = what or describe(expected, self.proto_ver)
        try:
            got = self.read_packet(timeout)
        except Closed:
            raise AssertionError(f"expected {label}, but the broker closed the connection") from None
        except TimeoutError:
            raise AssertionError(f"expected {label}, got nothing within {timeout:.1f}s") from None
        if got != expected and not self._equivalent(got, expected):
            raise AssertionError(
                f"expected {describe(expected, self.proto_ver)}\n"
                f"     got {describe(got, self.proto_ver)}")
        return got

    def _equivalent(self, got: bytes, expected: bytes) -> bool:
        try:
            return p.strip(p.decode(got, self.proto_ver)) == p.strip(p.decode(expected, self.proto_ver))
        except Exception:
            return False

    def receive(self, timeout: float = TIMEOUT, ordered: bool = False) -> dict:
        """Read and decode one packet (for checks on parts of it)."""
        try:
            return p.decode(self.read_packet(timeout), self.proto_ver, ordered)
        except Closed:
            raise AssertionError("expected a packet, but the broker closed the connection") from None
        except TimeoutError:
            raise AssertionError(f"expected a packet, got nothing within {timeout:.1f}s") from None

    def probe(self) -> None:
        """Send a PINGREQ after a packet the broker must reject: a broker that wrongly
        keeps the connection answers PINGRESP at once, so the check fails fast
        instead of waiting for the timeout. (Never use it where keepalive matters.)"""
        try:
            self.send(p.gen_pingreq())
        except OSError:  # already closed: exactly what is expected
            pass

    def expect_closed(self, timeout: float = TIMEOUT, probe: bool = False) -> None:
        """The broker must close the connection without sending another packet."""
        if probe:
            self.probe()
        try:
            got = self.read_packet(timeout)
        except Closed:
            return
        except TimeoutError:
            raise AssertionError(f"connection still open after {timeout:.1f}s") from None
        raise AssertionError(f"expected the connection to close, got {describe(got, self.proto_ver)}")

    def expect_disconnect(self, reason_code: int, timeout: float = TIMEOUT) -> None:
        """v5: a DISCONNECT with `reason_code`, then the connection closes."""
        self.expect(p.gen_disconnect(reason_code, 5), timeout=timeout)
        self.expect_closed(timeout)

    def expect_nothing(self, wait: float = SILENCE) -> None:
        """Nothing arrives within a short wait and the connection stays open."""
        try:
            got = self.read_packet(wait)
        except TimeoutError:
            return
        except Closed:
            raise AssertionError("expected silence, but the broker closed the connection") from None
        raise AssertionError(f"expected nothing, got {describe(got, self.proto_ver)}")

    def ping(self) -> None:
        """Round trip a PINGREQ: everything the broker sent before it has arrived."""
        self.send(p.gen_pingreq())
        self.expect(p.gen_pingresp())

    def close(self) -> None:
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def connect(port: int, client_id: str = "", proto_ver: int = 4, connack: bytes | None = None,
            **connect_args) -> Conn:
    """Open a connection, send CONNECT, check the CONNACK.

    With `connack` the CONNACK must equal it; without, it must be a success (v5
    properties not checked) and is kept as `conn.connack` (decoded).
    """
    conn = Conn(port, proto_ver)
    conn.send(p.gen_connect(client_id, proto_ver=proto_ver, **connect_args))
    if connack is not None:
        conn.connack = p.decode(conn.expect(connack), proto_ver)
    else:
        conn.connack = conn.receive()
        assert conn.connack["type"] == "CONNACK" and conn.connack["rc"] == 0, conn.connack
    return conn


def expect_publish(conn: Conn, topic: str, payload: bytes | str, qos: int = 0,
                   retain: bool = False, dup: bool = False, properties=(),
                   timeout: float = TIMEOUT) -> int | None:
    """Read one PUBLISH and check everything but the broker-chosen packet id (which
    must be non-zero for QoS > 0); return that packet id."""
    if isinstance(payload, str):
        payload = payload.encode()
    got = conn.receive(timeout)
    want = {"type": "PUBLISH", "dup": dup, "qos": qos, "retain": retain,
            "topic": topic.encode(), "mid": got.get("mid"),
            "props": sorted(properties, key=repr), "payload": payload}
    assert got == want, f"\nexpected {want}\n     got {got}"
    if qos:
        assert got["mid"], "QoS > 0 PUBLISH with packet id 0 [MQTT-2.3.1-1]"
    return got["mid"]


def expect_protocol_close(conn: Conn, codes=(0x81, 0x82), timeout: float = TIMEOUT) -> None:
    """The broker ends the connection for a peer error: a plain close, or (v5 only) a
    DISCONNECT with one of `codes` first. MQTT 5.0 section 4.13 lets the server choose
    whether to send the DISCONNECT; 3.1.1 has no such packet (section 4.8)."""
    conn.probe()
    try:
        data = conn.read_packet(timeout)
    except Closed:
        return
    except TimeoutError:
        raise AssertionError(f"connection still open after {timeout:.1f}s") from None
    got = p.decode(data, conn.proto_ver)
    allowed = conn.proto_ver == 5 and got["type"] == "DISCONNECT" and got["rc"] in codes
    assert allowed, f"expected a close (or DISCONNECT {[hex(c) for c in codes]}), got {describe(data, conn.proto_ver)}"
    conn.expect_closed(timeout)


def expect_connect_refused(conn: Conn, codes=(0x81, 0x82), timeout: float = TIMEOUT) -> None:
    """A CONNECT the server must refuse without accepting: a plain close, or (v5 only)
    a CONNACK with one of `codes` then a close [MQTT-3.1.4-1, MQTT-3.2.2-7]."""
    try:
        data = conn.read_packet(timeout)
    except Closed:
        return
    except TimeoutError:
        raise AssertionError(f"connection still open after {timeout:.1f}s") from None
    got = p.decode(data, conn.proto_ver)
    allowed = conn.proto_ver == 5 and got["type"] == "CONNACK" and got["rc"] in codes
    assert allowed, f"expected a close (or CONNACK {[hex(c) for c in codes]}), got {describe(data, conn.proto_ver)}"
    conn.expect_closed(timeout)


def subscribe(conn: Conn, topic, qos: int = 0, mid: int = 1, granted=None, properties=()) -> None:
    """SUBSCRIBE and require the SUBACK (granted defaults to the requested QoS)."""
    conn.send(p.gen_subscribe(mid, topic, qos, conn.proto_ver, properties))
    if granted is None:
        granted = [qos & 3] if isinstance(topic, (str, bytes)) else [o & 3 for _, o in topic]
    conn.expect(p.gen_suback(mid, granted, conn.proto_ver))
