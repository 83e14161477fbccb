"""A minimal SOCKS5 proxy (CONNECT only, optional user/password) for --proxy tests."""

from __future__ import annotations

import asyncio
import threading


class SocksProxy:
    """Runs in its own thread and event loop; `port` is where it listens; `targets`
    records every host:port it was asked to reach."""

    def __init__(self, username: str | None = None, password: str | None = None):
        self.username, self.password = username, password
        self.targets: list[str] = []
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(ready,), daemon=True)
        self.thread.start()
        ready.wait(10)

    def _run(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)
        self.server = self.loop.run_until_complete(asyncio.start_server(self._client, "127.0.0.1", 0))
        self.port = self.server.sockets[0].getsockname()[1]
        ready.set()
        self.loop.run_forever()

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            _, count = await reader.readexactly(2)
            methods = await reader.readexactly(count)
            wanted = 2 if self.username is not None else 0
            if wanted not in methods:
                writer.write(b"\x05\xff")
                return
            writer.write(bytes((5, wanted)))
            if wanted == 2:
                await reader.readexactly(1)
                user = (await reader.readexactly((await reader.readexactly(1))[0])).decode()
                password = (await reader.readexactly((await reader.readexactly(1))[0])).decode()
                ok = (user, password) == (self.username, self.password)
                writer.write(b"\x01\x00" if ok else b"\x01\x01")
                if not ok:
                    return
            _, command, _, kind = await reader.readexactly(4)
            if kind == 3:
                host = (await reader.readexactly((await reader.readexactly(1))[0])).decode()
            else:
                import ipaddress

                host = str(ipaddress.ip_address(await reader.readexactly(4 if kind == 1 else 16)))
            port = int.from_bytes(await reader.readexactly(2), "big")
            self.targets.append(f"{host}:{port}")
            try:
                up_reader, up_writer = await asyncio.open_connection(host, port)
            except OSError:
                writer.write(b"\x05\x05\x00\x01" + bytes(6))
                return
            writer.write(b"\x05\x00\x00\x01" + bytes(6))
            await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    @staticmethod
    async def _pipe(reader, writer) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()
