"""`midge pub`: mosquitto_pub's flags and behaviour.

`-l` doubles as a load generator: lines are read from stdin in large chunks,
published without waiting per message (QoS 0 is pipelined, QoS 1/2 keep up to
`-M` messages in flight) and written with one `writelines()` per chunk.
"""

from __future__ import annotations

import asyncio
import os
import stat
import sys
import threading

from midge.cli.clientargs import parse_or_exit
from midge.cli.clientconfig import ClientConfig
from midge.client.reasons import reason_string
from midge.client.tool import Tool, run
from midge.protocol.constants import PacketType

CHUNK = 1 << 16


class Publisher(Tool):
    def __init__(self, cfg: ClientConfig):
        super().__init__(cfg)
        self.topic = cfg.topics[0]
        self.properties = dict(cfg.properties["publish"]) if cfg.protocol_version == 5 else {}
        self.room = asyncio.Event()  # set when fewer than -M messages are in flight

    def publish(self, payload: bytes) -> None:
        cfg = self.cfg
        self.session.publish(self.topic, payload, cfg.qos, cfg.retain, self.properties)

    async def wait_for_room(self) -> None:
        while self.session.inflight_count >= self.cfg.max_inflight and not self.finished.done():
            self.room.clear()
            await self.room.wait()

    async def connected(self) -> None:
        asyncio.ensure_future(self.send_all())

    async def send_all(self) -> None:
        try:
            if self.cfg.message_mode == "l":
                await self.send_lines()
            else:
                payload = self.cfg.message
                for index in range(self.cfg.repeat):
                    if index and self.cfg.repeat_delay:
                        await asyncio.sleep(self.cfg.repeat_delay)
                    await self.wait_for_room()
                    self.publish(payload)
                    self.connection.flush()
            await self.wait_for_all_acks()
            self.finish(0)
        except Exception as exc:  # noqa: BLE001 - report, don't hang
            self.error(f"Error: {exc}")
            self.finish(1)

    async def send_lines(self) -> None:
        reader = StdinReader()
        pending = b""
        qos = self.cfg.qos
        while True:
            chunk = await reader.read()
            if not chunk:
                break
            lines = (pending + chunk).split(b"\n")
            pending = lines.pop()
            if qos == 0:
                self.session.publish_batch(self.topic, lines, self.cfg.retain, self.properties)
            else:
                for line in lines:
                    await self.wait_for_room()
                    self.publish(line)
                    self.connection.flush()
            self.connection.flush()
            await self.connection.drain()
            if self.finished.done():
                return
        if pending:
            await self.wait_for_room()
            self.publish(pending)
            self.connection.flush()

    async def wait_for_all_acks(self) -> None:
        while self.session.inflight_count and not self.finished.done():
            self.room.clear()
            await self.room.wait()

    def refused(self, reason_code: int) -> None:
        # mosquitto_pub's main loop adds its own line after the CONNACK message.
        if self.cfg.protocol_version == 5:
            self.error("Error: A network protocol error occurred when communicating with the broker.")
        else:
            self.error("Error: The connection was refused.")

    def on_packet(self, packet) -> None:
        kind = packet.type
        if kind in (PacketType.PUBACK, PacketType.PUBREC, PacketType.PUBCOMP):
            if packet.reason_code >= 0x80:
                self.error(f"Warning: Publish {packet.packet_id} failed: {reason_string(packet.reason_code)}.")
            self.room.set()


class StdinReader:
    """Chunks of stdin without blocking the event loop.

    A regular file is read directly (it never blocks). A pipe or terminal is read
    by a daemon thread, so Ctrl-C can end the program while a read is pending
    (asyncio's default executor would wait for that read at exit).
    """

    def __init__(self, stream=None):
        self.stream = stream or sys.stdin.buffer
        self.regular = stat.S_ISREG(os.fstat(self.stream.fileno()).st_mode)
        self.queue: asyncio.Queue | None = None

    async def read(self) -> bytes:
        if self.regular:
            return self.stream.read(CHUNK)
        if self.queue is None:
            self.queue = asyncio.Queue(maxsize=8)  # backpressure on the reading thread
            loop = asyncio.get_running_loop()
            threading.Thread(target=self._pump, args=(loop,), daemon=True).start()
        return await self.queue.get()

    def _pump(self, loop: asyncio.AbstractEventLoop) -> None:
        # os.read, not the buffered stream: at exit Python closes sys.stdin, which
        # would wait for the buffer's lock held by a pending read.
        fd = self.stream.fileno()
        while True:
            try:
                chunk = os.read(fd, CHUNK)
            except (OSError, ValueError):
                chunk = b""
            try:
                asyncio.run_coroutine_threadsafe(self.queue.put(chunk), loop).result()
            except RuntimeError:  # the loop is gone
                return
            if not chunk:
                return


def load_message(cfg: ClientConfig) -> bool:
    """Read -f / -s / -n into cfg.message before connecting, as mosquitto_pub does."""
    if cfg.message_mode == "n":
        cfg.message = b""
    elif cfg.message_mode == "s":
        cfg.message = sys.stdin.buffer.read()
    elif cfg.message_mode == "f":
        try:
            with open(cfg.file, "rb") as handle:
                cfg.message = handle.read()
        except OSError:
            if not cfg.quiet:
                sys.stderr.write(f'Error: Unable to open file "{cfg.file}".\n'
                                 f'Error loading input file "{cfg.file}".\n')
            return False
    return True


def main(argv: list[str]) -> int:
    cfg = parse_or_exit("pub", argv)
    if isinstance(cfg, int):
        return cfg
    if not load_message(cfg):
        return 1
    return run(Publisher(cfg))
