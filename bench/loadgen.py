"""Python load generator for what the C clients cannot do: connection storms, idle
connections, TLS handshakes and many retained topics.

run.py starts several of these processes (one per core, so the generator is not the
bottleneck) and drives them over stdin/stdout:

    worker -> "armed"            (imports done, certificates loaded)
    run.py -> "go"
    worker -> "done {json}"      (its share of the work is finished)
    run.py closes stdin          (idle connections are released, the worker exits)

MQTT is encoded here in a few lines (v3.1.1 CONNECT, PUBLISH, PINGREQ, DISCONNECT) so
the generator depends on nothing in midge and loads both brokers identically.
"""

from __future__ import annotations

import argparse
import json
import socket
import ssl
import sys
import time

CONNACK_ACCEPTED = b"\x20\x02\x00\x00"
PINGREQ = b"\xc0\x00"
PINGRESP = b"\xd0\x00"
DISCONNECT = b"\xe0\x00"


def _remaining_length(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _string(s: str) -> bytes:
    b = s.encode()
    return len(b).to_bytes(2, "big") + b


def connect_packet(client_id: str, keepalive: int = 0) -> bytes:
    """MQTT 3.1.1 CONNECT, clean session."""
    body = _string("MQTT") + b"\x04\x02" + keepalive.to_bytes(2, "big") + _string(client_id)
    return b"\x10" + _remaining_length(len(body)) + body


def publish_packet(topic: str, payload: bytes, retain: bool = False) -> bytes:
    """QoS 0 PUBLISH."""
    body = _string(topic) + payload
    return bytes([0x30 | retain]) + _remaining_length(len(body)) + body


def _recv_exactly(sock, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError(f"broker closed the connection after {data!r}")
        data += chunk
    return data


def _expect_connack(sock) -> None:
    reply = _recv_exactly(sock, 4)
    if reply != CONNACK_ACCEPTED:
        raise ConnectionError(f"CONNACK refused: {reply.hex()}")


def _client_context(args) -> ssl.SSLContext | None:
    if not args.cafile:
        return None
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3 if args.tls13 else ssl.TLSVersion.TLSv1_2
    ctx.load_verify_locations(args.cafile)
    if args.cert:
        ctx.load_cert_chain(args.cert, args.key)
    return ctx


def _open(args, ctx, session=None):
    sock = socket.create_connection((args.host, args.port), timeout=args.timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if ctx is not None:
        sock = ctx.wrap_socket(sock, server_hostname=args.host, session=session)
    return sock


def run_idle(args, ctx) -> dict:
    """Open `count` connections, CONNECT each, keep them open until stdin closes.

    Plain TCP connections are opened in batches (connect + CONNECT on the whole batch,
    then read the CONNACKs) so the broker, not the round trip, sets the pace. Batches
    stay small because all workers' pending connects must fit the broker's listen
    backlog (100 in Mosquitto): an overflow costs a 1 s SYN retransmit.
    """
    held = []
    start = time.perf_counter()
    batch = 1 if ctx is not None else 16
    for first in range(0, args.count, batch):
        group = []
        for i in range(first, min(first + batch, args.count)):
            sock = _open(args, ctx)
            sock.sendall(connect_packet(f"{args.prefix}{i}"))
            group.append(sock)
        for sock in group:
            _expect_connack(sock)
        held.extend(group)
    elapsed = time.perf_counter() - start
    return {"connections": len(held), "elapsed": elapsed, "_held": held}


def run_handshakes(args, ctx) -> dict:
    """TLS handshake + CONNECT/CONNACK + DISCONNECT, `count` times in a row."""
    session = None
    reused = 0
    start = time.perf_counter()
    for i in range(args.count):
        sock = _open(args, ctx, session if args.resume else None)
        sock.sendall(connect_packet(f"{args.prefix}{i}"))
        _expect_connack(sock)
        if sock.session_reused:
            reused += 1
        if args.resume:
            # The TLS 1.3 ticket arrives after the handshake; it has been read by now.
            session = sock.session
        sock.sendall(DISCONNECT)
        sock.close()
    elapsed = time.perf_counter() - start
    return {"handshakes": args.count, "reused": reused, "elapsed": elapsed}


def run_retain(args, ctx) -> dict:
    """Publish `count` retained messages on distinct topics, then PINGREQ as a barrier.

    The broker handles one connection's packets in order, so the PINGRESP proves that
    every retained message before it has been stored.
    """
    sock = _open(args, ctx)
    sock.sendall(connect_packet(f"{args.prefix}retain"))
    _expect_connack(sock)
    payload = b"r" * args.size
    start = time.perf_counter()
    chunk = []
    for i in range(args.count):
        chunk.append(publish_packet(f"bench/r/{args.prefix}{i // 1000}/{i}", payload, retain=True))
        if len(chunk) == 1000:
            sock.sendall(b"".join(chunk))
            chunk.clear()
    sock.sendall(b"".join(chunk) + PINGREQ)
    reply = _recv_exactly(sock, 2)
    if reply != PINGRESP:
        raise ConnectionError(f"expected PINGRESP, got {reply.hex()}")
    elapsed = time.perf_counter() - start
    sock.sendall(DISCONNECT)
    sock.close()
    return {"retained": args.count, "elapsed": elapsed}


MODES = {"idle": run_idle, "handshake": run_handshakes, "retain": run_retain}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=sorted(MODES))
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--size", type=int, default=64, help="payload bytes (retain)")
    parser.add_argument("--prefix", default="w0-", help="client id / topic prefix")
    parser.add_argument("--cafile")
    parser.add_argument("--cert")
    parser.add_argument("--key")
    parser.add_argument("--tls13", action="store_true", help="TLS 1.3 only")
    parser.add_argument("--resume", action="store_true", help="reuse the TLS session")
    parser.add_argument("--timeout", type=float, default=30.0)
    args = parser.parse_args(argv)

    ctx = _client_context(args)
    print("armed", flush=True)
    if sys.stdin.readline().strip() != "go":
        return 1
    try:
        result = MODES[args.mode](args, ctx)
    except (OSError, ConnectionError) as exc:
        print("done " + json.dumps({"error": f"{type(exc).__name__}: {exc}"}), flush=True)
        return 1
    held = result.pop("_held", [])
    print("done " + json.dumps(result), flush=True)
    sys.stdin.read()  # hold idle connections until run.py closes our stdin
    for sock in held:
        sock.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
