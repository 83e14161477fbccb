"""In-process cost of the TLS stage per record, the per-message path of `qos0-mtls`.

    .venv/bin/python bench/tls_stage.py [--records N] [--repeat R]

One mutual TLS 1.3 connection in memory (no sockets): a client `ssl.SSLObject` encrypts
64-byte-payload PUBLISH packets, one record each, and the server's `TlsStage` decrypts
them with `feed()`: one record per call (a quiet connection) and 16 records per call (a
busy one, several records per socket read); then `send()` + `data_to_send()` of one
packet (a delivery). Prints the best of R repetitions in ns of process CPU time per
record, so that two revisions can be compared in the same conditions on a busy machine.
"""

from __future__ import annotations

import argparse
import ssl
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # tests.certs, tests.tls.memory

from midge.server.tls_context import TlsListenerContext  # noqa: E402
from tests.certs import make_pki  # noqa: E402
from tests.tls.memory import Pair, client_context, listener  # noqa: E402

PACKET = b"\x30\x4a\x00\x08bench/q0" + b"p" * 64  # a v3 QoS 0 PUBLISH, 64-byte payload


def connected_pair(pki) -> Pair:
    context = TlsListenerContext.from_listener(listener(pki, require_certificate=True), None, None)
    pair = Pair(context.new_stage("127.0.0.1:50000"),
                client_context(pki, pki.client("bench", key_type="ec"), ssl.TLSVersion.TLSv1_3))
    if not pair.handshake():
        raise SystemExit(f"handshake failed: {pair.client_error or pair.stage.failure}")
    return pair


def records(pair: Pair, count: int) -> list[bytes]:
    out = []
    for _ in range(count):
        pair.client.write(PACKET)
        out.append(pair.cout.read())
    return out


def _batches(items: list, size: int):
    return (items[i:i + size] for i in range(0, len(items), size))


def per_record_ns(run, count: int, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.process_time_ns()
        run()
        best = min(best, (time.process_time_ns() - start) / count)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        pki = make_pki(Path(directory))
        pair = connected_pair(pki)
    stage, count = pair.stage, args.records

    def feed_each(inputs):
        for data in inputs:
            stage.feed(data)

    def send():
        for _ in range(count):
            stage.send(PACKET)
            stage.data_to_send()

    # Records must reach the stage in the order they were encrypted (sequence numbers),
    # so each repetition encrypts fresh ones, untimed, then feeds them all.
    variants = {
        "feed, 1 record per call": lambda: records(pair, count),
        "feed, 16 records per call": lambda: [b"".join(batch) for batch in
                                              _batches(records(pair, count), 16)],
    }
    results = {}
    for name, make_inputs in variants.items():
        best = float("inf")
        for _ in range(args.repeat):
            inputs = make_inputs()
            best = min(best, per_record_ns(lambda: feed_each(inputs), count, 1))
        results[name] = best
    results["send + data_to_send"] = per_record_ns(send, count, args.repeat)
    assert stage.failure is None and not stage.closed, stage.failure
    for name, ns in results.items():
        print(f"{name:28} {ns:8.0f} ns per record")


if __name__ == "__main__":
    main()
