"""A midge Server on this process's event loop, for tests that look inside it while
real sockets talk to it (memory, the auth worker pool, flow control)."""

from __future__ import annotations

import asyncio
import contextlib

from midge.config import load_config_string
from midge.log import MemoryLog
from midge.server.server import Server


@contextlib.asynccontextmanager
async def running_server(config_text: str):
    """Start a Server from `config_text` (mosquitto.conf lines); yield it; shut it down."""
    config = load_config_string(config_text)
    server = Server(config, MemoryLog())
    await server.start()
    try:
        yield server
    finally:
        await server.shutdown()


def run(coroutine):
    """Run `coroutine` on uvloop (what the broker runs on) when installed."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coroutine)
    return asyncio.run(coroutine, loop_factory=uvloop.new_event_loop)


async def wait_until(predicate, timeout: float = 10.0, what: str = "condition") -> None:
    """Yield to the loop until `predicate()` holds (the broker runs between checks)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.005)  # a polling interval on the same loop, not a synchronisation sleep
