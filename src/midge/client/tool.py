"""The run loop shared by `midge pub`, `midge sub` and `midge rr`.

Connects with the parsed flags, reports a refused connection the way mosquitto's
clients do (message, exit code = CONNACK code), runs the tool's logic, honours
`-W` (exit 27, "Timed out") and disconnects cleanly.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys

from midge.client.connection import ClientConnection, ConnectError, open_connection
from midge.client.reasons import connack_string, reason_string
from midge.client.session import ClientSession
from midge.client.tls import TlsSetupError
from midge.protocol.constants import PacketType

EXIT_TIMEOUT = 27  # MOSQ_ERR_TIMEOUT
RECONNECT_DELAY = 1.0  # libmosquitto's default reconnect delay


class Tool:
    """Base of the three commands; subclasses implement `connected()` and `on_packet()`.

    `reconnects`: after a lost connection, connect again and call `connected()`
    again (mosquitto_sub does; a one-shot publisher does not).
    """

    reconnects = False

    def __init__(self, cfg):
        self.cfg = cfg
        self.session: ClientSession | None = None
        self.connection: ClientConnection | None = None
        self.exit_code = 0
        self.finished: asyncio.Future | None = None
        self.out = sys.stdout.buffer
        self._flush_scheduled = False

    # -- output -------------------------------------------------------------

    def write(self, data: bytes) -> None:
        """stdout, flushed once per received batch rather than per message."""
        if not data:
            return
        try:
            self.out.write(data)
        except BrokenPipeError:
            self._stdout_closed()
            return
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush_stdout)

    def _flush_stdout(self) -> None:
        self._flush_scheduled = False
        try:
            self.out.flush()
        except BrokenPipeError:
            self._stdout_closed()

    def _stdout_closed(self) -> None:
        """`midge sub | head -1`: end quietly, with the status a SIGPIPE death gives
        mosquitto_sub (SIGPIPE itself stays ignored: sockets must get EPIPE)."""
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, self.out.fileno())  # nothing left to flush at exit
        os.close(devnull)
        self.finish(128 + signal.SIGPIPE)

    def trace(self, line: str) -> None:
        try:
            self.out.write(line.encode() + b"\n")
            self.out.flush()
        except BrokenPipeError:
            self._stdout_closed()

    def error(self, message: str) -> None:
        if not self.cfg.quiet:
            self.out.flush()
            sys.stderr.write(message + "\n")
            sys.stderr.flush()

    # -- lifecycle ----------------------------------------------------------

    async def run(self) -> int:
        cfg = self.cfg
        loop = asyncio.get_running_loop()
        self.finished = loop.create_future()
        code = await self._connect()
        if code is not None:
            return code
        # Ctrl-C / kill: disconnect cleanly (no will), as mosquitto's clients do.
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, self.finish, 0)
        timer = loop.call_later(cfg.timeout, self._timed_out) if cfg.timeout else None
        try:
            while True:
                await self.connected()
                self.connection.flush()
                closed = self.connection.closed
                await asyncio.wait([self.finished, closed], return_when=asyncio.FIRST_COMPLETED)
                if self.finished.done():
                    await self._wait_closed(closed)
                    break
                if not self.reconnects:
                    self.error("Error: The connection was lost.")
                    self.exit_code = 1
                    break
                # Like libmosquitto's loop_forever: retry every second, silently.
                code = await self._reconnect()
                if code is not None:
                    self.exit_code = code
                    break
        finally:
            if timer is not None:
                timer.cancel()
        self._flush_stdout()
        return self.exit_code

    async def _connect(self, quiet: bool = False) -> int | None:
        """Open a connection and wait for CONNACK: None when accepted, else the exit code
        (-1 for a network failure when `quiet`, to try again)."""
        cfg = self.cfg
        previous = self.session
        self.session = ClientSession(cfg.connect_packet(), trace=self.trace if cfg.debug else None)
        if previous is not None:  # libmosquitto keeps numbering messages across reconnects
            self.session.next_id = previous.next_id
        try:
            self.connection = await open_connection(cfg.options, self.session, self._on_event)
            connack = await self.connection.connack
        except (ConnectError, TlsSetupError) as exc:
            if quiet:
                return -1
            message = str(exc)
            self.error(message if message.startswith(("Error", "TLS", "Unable")) else f"Error: {message}")
            return 1
        if connack.reason_code != 0:
            self.error(f"Connection error: {connack_string(cfg.protocol_version, connack.reason_code)}")
            self.refused(connack.reason_code)
            self.connection.close()
            return connack.reason_code
        return None

    async def _reconnect(self) -> int | None:
        while not self.finished.done():
            await asyncio.sleep(RECONNECT_DELAY)
            if self.finished.done():
                return None
            code = await self._connect(quiet=True)
            if code != -1:
                return code
        return None

    async def _wait_closed(self, closed: asyncio.Future) -> None:
        try:
            async with asyncio.timeout(5):
                await closed
        except TimeoutError:
            pass

    def finish(self, code: int = 0) -> None:
        """Disconnect cleanly and end `run()` with exit status `code`."""
        if self.finished.done():
            return
        self.exit_code = code
        if self.session.connected:  # with the -D disconnect properties, as mosquitto's tools
            v5 = self.cfg.protocol_version == 5
            self.session.disconnect(0, dict(self.cfg.properties["disconnect"]) if v5 else None)
        self.connection.flush()
        self.connection.close()
        self.finished.set_result(code)

    def _timed_out(self) -> None:
        self.error("Timed out")
        self.finish(EXIT_TIMEOUT)

    def _on_event(self, packet) -> None:
        if self.finished.done():
            return
        if packet.type == PacketType.DISCONNECT:
            if not self.reconnects:
                self.error(f"Disconnected by the server: {reason_string(packet.reason_code)}")
                self.finish(packet.reason_code or 1)
            return  # the server closes the socket next; run() reconnects
        self.on_packet(packet)

    # -- subclass hooks -------------------------------------------------------

    def refused(self, reason_code: int) -> None:
        """Called after the "Connection error" line of a refused CONNECT."""

    async def connected(self) -> None:
        raise NotImplementedError

    def on_packet(self, packet) -> None:
        raise NotImplementedError


def run(tool: Tool) -> int:
    try:
        return asyncio.run(tool.run())
    except KeyboardInterrupt:
        return 0


__all__ = ["Tool", "run", "EXIT_TIMEOUT"]
