"""A byte-level network fuzzer for a running broker (issue 14's "keep it so").

Each *session* is one TCP connection: usually a CONNECT (MQTT 3.1, 3.1.1 or 5.0, with
or without will, credentials, properties) and up to 20 more packets (PUBLISH at every
QoS, SUBSCRIBE / UNSUBSCRIBE with wildcards, `$share`, `$SYS`, deep and long topics,
acknowledgements with made-up ids, PINGREQ, DISCONNECT, AUTH), built by
tests/conformance/packets.py (written from the specs, sharing no code with midge's
codec). The byte stream is then damaged (bit flips, interesting bytes, cuts, inserts,
repeats, splices, forged remaining lengths), cut into random pieces and sent; the
connection then reads what comes back for a moment, or drops at once.

Sessions run `parallel` at a time, on a shared pool of topics so that they subscribe,
publish, retain and take over each other's client ids. After every batch the runner
asks `failed()`: the broker must be alive and must not have logged an internal error or
a traceback. The batch that made it fail is returned, to be saved in the corpus and
replayed (`replay`) by every later run.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import deque

from tests.conformance import packets as p

TOPICS = ["a", "a/b", "a/b/c", "t/1", "t/2", "$SYS/broker/x", "/", "//", "a//b", "x" * 300,
          "/".join(["d"] * 200), "/".join(["d"] * 201), "/".join(["d"] * 1200), "/" * 3000, "é/ü",
          "\u00a0"]
FILTERS = TOPICS + ["#", "+", "a/#", "+/b", "+/+/+", "$SYS/#", "$share/g/a/#", "$share/g/#",
                    "$share//a", "$share/g", "a/#/b", "a+", "/".join(["+"] * 201), "/".join(["+"] * 1202) + "/#"]
CLIENT_IDS = ["f1", "f2", "f3", "", "takeover", "x" * 40]
INTERESTING = [0x00, 0x01, 0x02, 0x7F, 0x80, 0xFF, 0x10, 0x30, 0x32, 0x34, 0x82, 0xC0, 0xE0, 0xF0]


class Session:
    """What one connection sends: byte chunks, and whether it lingers to read."""

    def __init__(self, chunks: list[bytes], linger: bool):
        self.chunks = chunks
        self.linger = linger

    def to_json(self) -> dict:
        return {"chunks": [chunk.hex() for chunk in self.chunks], "linger": self.linger}

    @classmethod
    def from_json(cls, data: dict) -> "Session":
        """Chunks are hex strings, or {"fill": hex, "count": n} for a long repeat."""
        chunks = [bytes.fromhex(chunk) if isinstance(chunk, str) else bytes.fromhex(chunk["fill"]) * chunk["count"]
                  for chunk in data["chunks"]]
        return cls(chunks, data.get("linger", True))


def _props(rng: random.Random, version: int, kinds) -> list:
    if version != 5 or rng.random() < 0.6:
        return []
    out = []
    for _ in range(rng.randint(1, 3)):
        ident = rng.choice(kinds)
        if ident in (0x01, 0x17, 0x19):            # byte properties
            out.append((ident, rng.choice([0, 1, 2, 255])))
        elif ident in (0x21, 0x22, 0x23):          # two-byte integers
            out.append((ident, rng.choice([0, 1, 10, 65535])))
        elif ident in (0x02, 0x11, 0x18, 0x27):    # four-byte integers
            out.append((ident, rng.choice([0, 1, 60, 0xFFFFFFFF])))
        elif ident == 0x0B:                        # subscription identifier (varint)
            out.append((ident, rng.choice([0, 1, 268_435_455])))
        elif ident == 0x26:                        # user property
            out.append((ident, (rng.choice(["k", ""]), rng.choice(["v", "x" * 100]))))
        elif ident in (0x09, 0x16):                # binary
            out.append((ident, bytes(rng.randrange(256) for _ in range(rng.randint(0, 8)))))
        else:                                      # strings
            out.append((ident, rng.choice(["r/1", "", "a/#", "text/plain", "x" * 200])))
    return out


PUBLISH_PROPS = [0x01, 0x02, 0x03, 0x08, 0x09, 0x0B, 0x23, 0x26]
CONNECT_PROPS = [0x11, 0x15, 0x16, 0x17, 0x19, 0x21, 0x22, 0x26, 0x27]
WILL_PROPS = [0x01, 0x02, 0x03, 0x08, 0x09, 0x18, 0x26]
SUB_PROPS = [0x0B, 0x26]


def _packet(rng: random.Random, version: int) -> bytes:
    kind = rng.random()
    mid = rng.choice([1, 2, 3, rng.randint(1, 65535), 0])
    if kind < 0.35:
        qos = rng.choice([0, 0, 1, 1, 2, 3])
        payload = rng.choice([b"", b"x", b"p" * rng.randint(0, 2000)])
        return p.gen_publish(rng.choice(TOPICS), qos & 3 if qos < 3 else 2, payload, rng.random() < 0.2,
                             dup=rng.random() < 0.05, mid=mid if qos else None, proto_ver=version,
                             properties=_props(rng, version, PUBLISH_PROPS))
    if kind < 0.55:
        topics = [(rng.choice(FILTERS), rng.randrange(64 if version == 5 else 4)) for _ in range(rng.randint(1, 3))]
        return p.gen_subscribe(mid, topics, proto_ver=version, properties=_props(rng, version, SUB_PROPS))
    if kind < 0.62:
        return p.gen_unsubscribe(mid, [rng.choice(FILTERS) for _ in range(rng.randint(1, 2))], proto_ver=version)
    if kind < 0.82:
        gen = rng.choice([p.gen_puback, p.gen_pubrec, p.gen_pubrel, p.gen_pubcomp])
        code = rng.choice([0, 0, 0x10, 0x80, 0x92]) if version == 5 else 0
        return gen(mid, version, code)
    if kind < 0.9:
        return p.gen_pingreq()
    if kind < 0.96:
        return p.gen_disconnect(rng.choice([0, 4, 0x80]), version)
    return p.gen_auth(rng.choice([0, 0x18, 0x19]))


def _connect(rng: random.Random, version: int) -> bytes:
    will = rng.random() < 0.3
    return p.gen_connect(
        rng.choice(CLIENT_IDS), clean=rng.random() < 0.7, keepalive=rng.choice([0, 1, 5, 60, 65535]),
        username=rng.choice([None, None, "u", ""]), password=rng.choice([None, None, "p"]),
        will_topic=rng.choice(TOPICS) if will else None, will_payload=b"will",
        will_qos=rng.randint(0, 2) if will else 0, will_retain=will and rng.random() < 0.3,
        proto_ver=version, properties=_props(rng, version, CONNECT_PROPS),
        will_properties=_props(rng, version, WILL_PROPS) if will else [])


def damage(rng: random.Random, data: bytes) -> bytes:
    """0-4 byte-level mutations of `data`."""
    buf = bytearray(data)
    for _ in range(rng.choice([0, 0, 1, 1, 2, 3, 4])):
        at = rng.randrange(len(buf)) if buf else 0
        op = rng.randrange(7)
        if op == 0 and buf:
            buf[at] ^= 1 << rng.randrange(8)
        elif op == 1 and buf:
            buf[at] = rng.choice(INTERESTING)
        elif op == 2:
            del buf[at:at + rng.randint(1, 16)]
        elif op == 3:
            buf[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
        elif op == 4 and buf:
            buf[at:at] = buf[at:at + rng.randint(1, 64)] * rng.randint(1, 4)
        elif op == 5:
            buf = buf[:at]
        elif op == 6:                       # a forged remaining length after a first byte
            buf[at:at] = bytes([rng.choice([0x10, 0x30, 0x82, 0xC0])]) + rng.choice(
                [b"\xff\xff\xff\x7f", b"\x80\x80\x80\x80\x01", b"\x00", b"\x7f"])
    return bytes(buf)


def make_session(rng: random.Random) -> Session:
    version = rng.choice([3, 4, 4, 5, 5])
    parts = [_connect(rng, version)] if rng.random() < 0.92 else []
    parts += [_packet(rng, version) for _ in range(rng.randint(0, 20))]
    data = damage(rng, b"".join(parts))
    chunks, start = [], 0
    while start < len(data):
        size = rng.choice([1, 2, 7, 64, 1000, len(data)])
        chunks.append(data[start:start + size])
        start += size
    return Session(chunks or [b""], linger=rng.random() < 0.7)


async def play(port: int, session: Session, linger: float = 0.05) -> None:
    """Send `session` on a new connection; read the answers for a moment if it lingers."""
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return
    try:
        for chunk in session.chunks:
            writer.write(chunk)
            await writer.drain()
        if session.linger:
            deadline = asyncio.get_running_loop().time() + linger
            while True:
                remaining = deadline - asyncio.get_running_loop().time()
                if remaining <= 0:
                    break
                try:
                    if not await asyncio.wait_for(reader.read(65536), remaining):
                        break
                except asyncio.TimeoutError:
                    break
    except (OSError, asyncio.IncompleteReadError):
        pass
    finally:
        writer.transport.abort()


async def run_batch(port: int, sessions: list[Session]) -> None:
    await asyncio.gather(*(play(port, session) for session in sessions))


KEPT_BATCHES = 20   # batches saved with a failure: the broker state it needed came from them


def fuzz(port: int, seconds: float, failed, seed: int | None = None, parallel: int = 8):
    """Play random batches for `seconds`; after each, `failed()` (a reason or None).
    Returns (sessions played, None) or (sessions played, (reason, batches, seed)): the
    failing batch and up to KEPT_BATCHES - 1 before it, in order."""
    seed = random.randrange(2**32) if seed is None else seed
    rng = random.Random(seed)
    played = 0
    recent: deque = deque(maxlen=KEPT_BATCHES)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        batch = [make_session(rng) for _ in range(parallel)]
        recent.append(batch)
        asyncio.run(run_batch(port, batch))
        played += len(batch)
        reason = failed()
        if reason is not None:
            return played, (reason, list(recent), seed)
    return played, None


def replay(port: int, batches: list[list[Session]], failed) -> str | None:
    """Play each batch of a corpus file; the first failure's reason, or None."""
    for batch in batches:
        asyncio.run(run_batch(port, batch))
        reason = failed()
        if reason is not None:
            return reason
    return None
