"""What persistence costs per PUBLISH, in-process (the numbers in docs/persistence.md).

    .venv/bin/python -m tests.persist.bench_store

The broker is driven by tests/broker/harness.py with logging off and the subscribers'
output discarded; "on" stores every change before output, as the server does.
"""

from __future__ import annotations

import tempfile
import time

from midge.protocol.codec import encode
from midge.protocol.packets import Publish
from tests.broker.harness import Harness
from tests.persist.test_store import PersistHarness


class _Quiet:
    def enabled(self, log_type):
        return False

    def __getattr__(self, name):
        return lambda *args, **kwargs: None


def _quiet(h):
    h.broker.log = _Quiet()
    h.broker.debug = False
    return h


def fanout(h, qos, count, persistent) -> float:
    """µs per PUBLISH to 10 subscribers; QoS 1 deliveries are acknowledged at once."""
    _quiet(h)
    subs = [h.connect(f"s{i}", clean_start=not persistent) for i in range(10)]
    for sub in subs:
        sub.subscribe("t", qos=qos)
    client = h.connect("pub").client
    h.conns = {}
    packets = [encode(Publish("t", b"x" * 32, qos, False, False, i + 1 if qos else None, {}), 4)
               for i in range(1000)]
    start = time.perf_counter()
    for i in range(count):
        client.receive_data(packets[i % 1000], h.now)
        h.drain()
        if qos:
            for sub in subs:
                session = sub.client.session
                for packet_id in list(session.inflight):
                    h.broker.complete_delivery(session, packet_id, h.now)
    return (time.perf_counter() - start) / count * 1e6


def offline_backlog(backlog, count=200) -> float:
    """µs per QoS 1 PUBLISH into one offline session already holding `backlog` messages."""
    h = _quiet(PersistHarness(tempfile.mktemp(), max_queued_messages=0))
    sub = h.connect("sub", clean_start=False)
    sub.subscribe("t", qos=1)
    sub.lose()
    client = h.connect("pub").client
    h.conns = {}
    packet = encode(Publish("t", b"x" * 32, 1, False, False, 1, {}), 4)
    for _ in range(backlog):
        client.receive_data(packet, h.now)
    h.drain()
    start = time.perf_counter()
    for _ in range(count):
        client.receive_data(packet, h.now)
        h.drain()
    return (time.perf_counter() - start) / count * 1e6


def main() -> None:
    directory = tempfile.mkdtemp()

    def on():
        return PersistHarness(tempfile.mktemp(dir=directory))

    for label, make, qos, persistent, count in [
        ("QoS 0, clean sessions, off", Harness, 0, False, 50000),
        ("QoS 0, clean sessions, on", on, 0, False, 50000),
        ("QoS 0, persistent sessions, off", Harness, 0, True, 50000),
        ("QoS 0, persistent sessions, on", on, 0, True, 50000),
        ("QoS 1, persistent sessions, off", Harness, 1, True, 10000),
        ("QoS 1, persistent sessions, on", on, 1, True, 10000),
    ]:
        best = min(fanout(make(), qos, count, persistent) for _ in range(3))
        print(f"{label:36s} {best:8.2f} µs/publish (10 subscribers)")
    for backlog in (100, 1000, 10000):
        print(f"QoS 1 into offline session, {backlog:>5} queued {offline_backlog(backlog):8.2f} µs/publish")


if __name__ == "__main__":
    main()
