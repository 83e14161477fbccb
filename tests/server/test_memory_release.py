"""Issue 14, defect 2: what a connection held is freed when it closes, without waiting
for Python's cycle collector.

Seen before the fix: eight connections each sending 32 MB of a PUBLISH that declares
268,435,455 bytes, then disconnecting, left RSS at 287 MB, then 545 and 803 MB after two
more rounds: the half-received packet stayed reachable through a Client <-> Session
reference cycle until the collector happened to run. Here the collector is disabled for
the whole test, and nothing calls gc.collect(): memory must come back by reference
counting alone. tracemalloc counts the Python allocations (the decoder's buffered
chunks); weak references show whether the Client objects themselves are gone.
"""

import asyncio
import gc
import tracemalloc
import weakref

import pytest

from tests.brokerproc import free_port
from tests.inprocess import run, running_server, wait_until

DECLARED = 268_435_455            # the largest remaining length MQTT can declare
SENT = 2 * 1024 * 1024            # bytes of it each connection sends before vanishing
CONNECTIONS = 4


def _connect(client_id: str, clean: bool) -> bytes:
    body = b"\x00\x04MQTT\x04" + bytes([0x02 if clean else 0x00]) + b"\x00\x3c"
    body += len(client_id).to_bytes(2, "big") + client_id.encode()
    return bytes([0x10, len(body)]) + body


def _publish_header() -> bytes:
    """A QoS 0 PUBLISH fixed header declaring DECLARED bytes, then its topic."""
    length, varint = DECLARED, bytearray()
    while True:
        byte, length = length % 128, length // 128
        varint.append(byte | (0x80 if length else 0))
        if not length:
            break
    return b"\x30" + bytes(varint) + b"\x00\x01t"


async def _half_sent_publishes(server, port, clean: bool, round_: int) -> list:
    """Open CONNECTIONS clients, each sends SENT bytes of a huge PUBLISH, then drops."""
    writers = []
    for index in range(CONNECTIONS):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(_connect(f"half{round_}-{index}", clean))
        assert await reader.readexactly(4) == b"\x20\x02\x00\x00"
        writer.write(_publish_header())
        chunk = b"\x00" * 65536
        for _ in range(SENT // len(chunk)):
            writer.write(chunk)
        await writer.drain()
        writers.append(writer)
    await wait_until(lambda: sum(len(c.client.decoder._chunks) for c in server.connections
                                 if c.client is not None and c.client.decoder._chunks) >= CONNECTIONS,
                     what="the broker to buffer every half-sent PUBLISH")
    # Buffered: SENT bytes per connection sit in its decoder now.
    await wait_until(lambda: all(c.client.decoder._buffered >= SENT for c in server.connections
                                 if c.client is not None), what="all bytes to arrive")
    clients = [weakref.ref(c.client) for c in server.connections if c.client is not None]
    for writer in writers:
        writer.transport.abort()   # network loss, no DISCONNECT
    await wait_until(lambda: not server.connections, what="the broker to see every connection close")
    return clients


@pytest.mark.parametrize("clean", [True, False], ids=["clean-session", "persistent-session"])
def test_half_sent_packets_are_freed_without_the_cycle_collector(clean):
    port = free_port()

    async def main():
        async with running_server(f"listener {port} 127.0.0.1\nallow_anonymous true\n") as server:
            gc.collect()   # start clean; from here on only reference counting frees memory
            gc.disable()
            tracemalloc.start()
            try:
                baseline = tracemalloc.get_traced_memory()[0]
                for round_ in range(3):
                    clients = await _half_sent_publishes(server, port, clean, round_)
                    held = tracemalloc.get_traced_memory()[0] - baseline
                    assert held < SENT, (
                        f"round {round_}: {held / 2**20:.1f} MiB still allocated after "
                        f"{CONNECTIONS} connections that each buffered {SENT / 2**20:.0f} MiB closed")
                    alive = [ref for ref in clients if ref() is not None]
                    if clean:
                        assert not alive, f"{len(alive)} closed clients kept alive by a reference cycle"
                    else:
                        # A persistent session keeps its last Client (ACL checks while
                        # offline), but not that client's buffers (checked above).
                        assert all(not ref().decoder._chunks for ref in alive)
            finally:
                tracemalloc.stop()
                gc.enable()

    run(main())
