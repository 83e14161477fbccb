"""Measure the server-side memory of idle TLS connections (run by hand, not a test):

    .venv/bin/python -m tests.tls.memory_probe [N]

Starts a TLS echo server in this process twice — once with midge's TlsStage (MemoryBIO),
once with asyncio's SSL transport — opens N idle TLS 1.3 connections to each from a
child process, and prints the server's RSS growth per connection in KiB.
"""

from __future__ import annotations

import asyncio
import gc
import os
import subprocess
import sys
import tempfile
import textwrap

from midge.server.tls_context import TlsListenerContext
from tests.certs import make_pki
from tests.tls.memory import listener


def rss_kib() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


CLIENT = textwrap.dedent("""
    import asyncio, ssl, sys
    async def main(port, n, cafile):
        ctx = ssl.create_default_context(cafile=cafile)
        conns = []
        for i in range(n):
            conns.append(await asyncio.open_connection("127.0.0.1", port, ssl=ctx, server_hostname="localhost"))
        for reader, writer in conns:  # one MQTT-sized exchange each, then idle
            writer.write(b"x" * 64)
        for reader, writer in conns:
            await reader.readexactly(64)
        print("ready", flush=True)
        sys.stdin.readline()
    asyncio.run(main(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]))
""")


class StageEcho(asyncio.Protocol):
    def __init__(self, context, keep):
        self.context, self.keep = context, keep

    def connection_made(self, transport):
        self.transport = transport
        self.stage = self.context.new_stage("peer")
        self.keep.append(self)

    def data_received(self, data):
        plain = self.stage.feed(data)
        if plain:
            self.stage.send(plain)
        out = self.stage.data_to_send()
        if out:
            self.transport.write(out)


class PlainEcho(asyncio.Protocol):
    def __init__(self, keep):
        self.keep = keep

    def connection_made(self, transport):
        self.transport = transport
        self.keep.append(self)

    def data_received(self, data):
        self.transport.write(data)


async def measure(kind: str, n: int, pki) -> float:
    context = TlsListenerContext.from_listener(listener(pki), None, None)
    keep: list = []
    loop = asyncio.get_running_loop()
    if kind == "midge":
        server = await loop.create_server(lambda: StageEcho(context, keep), "127.0.0.1", 0)
    else:
        server = await loop.create_server(lambda: PlainEcho(keep), "127.0.0.1", 0, ssl=context.ssl_context)
    port = server.sockets[0].getsockname()[1]
    gc.collect()
    before = rss_kib()
    child = await asyncio.create_subprocess_exec(sys.executable, "-c", CLIENT, str(port), str(n), str(pki.ca_cert),
                                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    await child.stdout.readline()
    gc.collect()
    after = rss_kib()
    child.stdin.write(b"\n")
    await child.wait()
    server.close()
    return (after - before) / n


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    pki = make_pki(tempfile.mkdtemp())
    for kind in ("midge", "asyncio"):
        per = asyncio.run(measure(kind, n, pki))
        print(f"{kind:8} {per:7.1f} KiB per idle TLS 1.3 connection ({n} connections, pid {os.getpid()})")


if __name__ == "__main__":
    main()
