"""The listening sockets accept only once the broker serves (server.py start order):
bound as root, listening after the switch to `user`, the persistence file and the
cluster. A client (or a readiness probe, or a benchmark) that gets through to the port
is served at once, not parked in the backlog of a broker still starting up."""

from __future__ import annotations

import asyncio
import socket

from midge.config import load_config_string
from midge.log import MemoryLog
from midge.server.server import Server
from tests.brokerproc import free_port
from tests.inprocess import run


def test_port_refuses_until_the_broker_serves_then_answers_a_connect():
    port = free_port()
    seen = {}

    def after_bind(server):
        # Where the privilege switch runs: bound, not yet listening.
        probe = socket.socket()
        seen["refused"] = probe.connect_ex(("127.0.0.1", port))
        probe.close()

    async def main():
        server = Server(load_config_string(f"listener {port} 127.0.0.1\nallow_anonymous true\n"),
                        MemoryLog())
        server.after_bind = after_bind
        await server.start()
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            # CONNECT, MQTT 3.1.1, clean session, client id "r"
            writer.write(bytes([0x10, 13, 0, 4]) + b"MQTT" + bytes([4, 2, 0, 60, 0, 1]) + b"r")
            connack = await asyncio.wait_for(reader.readexactly(4), 10)
            writer.close()
            return connack
        finally:
            await server.shutdown()

    connack = run(main())
    assert seen["refused"] != 0   # ECONNREFUSED: nothing listens during start-up
    assert connack == bytes([0x20, 2, 0, 0])
