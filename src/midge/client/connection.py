"""asyncio driver for a `ClientSession`: sockets, TLS, WebSocket, keepalive timer.

    connection = await open_connection(options, session, on_event)
    connack = await connection.connack          # after CONNECT was written
    session.publish("t", b"x"); connection.flush()
    await connection.closed                     # None, or the exception that closed it

`on_event(event)` is called synchronously for every session event, from
`data_received`, so a subscriber prints as bytes arrive. Writes are batched: the
session queues encoded packets and `flush()` hands them to one `writelines()`.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from typing import Callable

from midge.client.options import ClientOptions
from midge.client.session import ClientSession, ProtocolViolation
from midge.client.socks import ProxyError, open_through_proxy, parse_proxy_url
from midge.client.tls import OPTION_NAMES, explain, make_context
from midge.protocol.constants import PacketType


class ConnectError(Exception):
    """The connection could not be opened; `str()` is the message to print."""


class ClientConnection(asyncio.Protocol):
    """One connection: feeds received bytes to the session, writes what it queues."""

    def __init__(self, session: ClientSession, on_event: Callable, loop: asyncio.AbstractEventLoop,
                 options: ClientOptions | None = None):
        self.session = session
        self.on_event = on_event
        self.loop = loop
        self.options = options or ClientOptions()
        self.transport = None
        self.connack: asyncio.Future = loop.create_future()
        self.closed: asyncio.Future = loop.create_future()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._writable = asyncio.Event()
        self._writable.set()

    # -- application interface ------------------------------------------

    def flush(self) -> None:
        """Write everything the session has queued, in one call."""
        data = self.session.data_to_send(self.loop.time())
        if data and self.transport is not None and not self.transport.is_closing():
            self.transport.writelines(data)
        self._arm_timer()

    async def drain(self) -> None:
        """Wait while the transport's write buffer is above its high-water mark."""
        if not self._writable.is_set():
            await self._writable.wait()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    # -- Protocol interface ---------------------------------------------

    def connection_made(self, transport) -> None:
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            # asyncio turns Nagle off; libmosquitto leaves it on unless --nodelay.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, int(self.options.nodelay))

    def data_received(self, data: bytes) -> None:
        session = self.session
        session.feed(data, self.loop.time())
        while (event := session.next_event()) is not None:
            if isinstance(event, ProtocolViolation):
                if session.version == 5 and session.connected:
                    session.disconnect(event.reason_code)
                    self.flush()
                self.transport.close()
                if not self.closed.done():
                    self.closed.set_result(event.error)
                return
            if event.type == PacketType.CONNACK and not self.connack.done():
                self.connack.set_result(event)
            self.on_event(event)
        self.flush()

    def eof_received(self):
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._writable.set()
        if not self.connack.done():
            self.connack.set_exception(ConnectError(self._early_close_message(exc)))
        if not self.closed.done():
            self.closed.set_result(exc)

    def _early_close_message(self, exc: Exception | None) -> str:
        """Why the server hung up before CONNACK, as precisely as we can tell."""
        tls = self.options.tls
        if isinstance(exc, ssl.SSLError):
            return explain(exc, self.options.host, names=tls.names if tls is not None else "client")
        text = "Error: the server closed the connection before CONNACK"
        if exc is not None:
            text = f"Error: {getattr(exc, 'strerror', None) or exc} before CONNACK"
        if tls is not None and tls.psk is None and tls.certfile is None:
            # TLS 1.3 lets the handshake finish before the server checks our certificate.
            text += (" (TLS: the server may require a client certificate, see "
                     f"{OPTION_NAMES[tls.names]['cert']})")
        return text

    def pause_writing(self) -> None:
        self._writable.clear()

    def resume_writing(self) -> None:
        self._writable.set()

    # -- keepalive --------------------------------------------------------

    def _arm_timer(self) -> None:
        deadline = self.session.next_deadline()
        if deadline == self._timer_at:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = deadline
        self._timer = None if deadline is None else self.loop.call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = self._timer_at = None
        if not self.session.handle_timer(self.loop.time()):
            self.close()  # no PINGRESP within a keepalive period
            return
        self.flush()


class WebSocketTransport(asyncio.Transport):
    """Carries MQTT over a `websockets` client connection (binary frames, "mqtt")."""

    def __init__(self, websocket, protocol: ClientConnection):
        super().__init__()
        self.websocket = websocket
        self.protocol = protocol
        self.queue: asyncio.Queue = asyncio.Queue()
        self.closing = False
        self.tasks = [asyncio.ensure_future(self._reader()), asyncio.ensure_future(self._writer())]

    def writelines(self, chunks) -> None:
        self.queue.put_nowait(b"".join(chunks))

    def write(self, data) -> None:
        self.queue.put_nowait(bytes(data))

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        if not self.closing:
            self.closing = True
            self.queue.put_nowait(None)

    def get_extra_info(self, name, default=None):
        return default

    async def _reader(self) -> None:
        exc = None
        try:
            async for message in self.websocket:
                if isinstance(message, str):
                    message = message.encode()
                self.protocol.data_received(message)
        except Exception as error:  # noqa: BLE001 - reported through connection_lost
            exc = error
        self.closing = True
        self.queue.put_nowait(None)
        self.protocol.connection_lost(exc)

    async def _writer(self) -> None:
        while True:
            data = await self.queue.get()
            if data is None:
                break
            try:
                await self.websocket.send(data)
            except Exception:  # noqa: BLE001 - the reader reports the close
                break
        await self.websocket.close()


async def open_connection(options: ClientOptions, session: ClientSession,
                          on_event: Callable) -> ClientConnection:
    """Open the transport, queue and write CONNECT; raise ConnectError on failure."""
    loop = asyncio.get_running_loop()
    protocol = ClientConnection(session, on_event, loop, options)
    host = options.host
    context = server_hostname = None
    if options.tls is not None:
        context = make_context(options.tls)
        if options.tls.psk is None:  # the name to verify and to send as SNI
            server_hostname = options.tls.server_hostname or host
    try:
        async with asyncio.timeout(options.connect_timeout):
            if options.transport == "websockets":
                await _open_websocket(options, protocol, context)
            elif options.proxy is not None:
                sock = await open_through_proxy(parse_proxy_url(options.proxy), host, options.port)
                await loop.create_connection(lambda: protocol, sock=sock, ssl=context,
                                             server_hostname=server_hostname)
            elif options.unix_path is not None:
                await loop.create_unix_connection(lambda: protocol, options.unix_path, ssl=context,
                                                  server_hostname=server_hostname)
            else:
                local = (options.bind_address, 0) if options.bind_address else None
                await loop.create_connection(lambda: protocol, host, options.port, ssl=context,
                                             server_hostname=server_hostname, local_addr=local)
    except ProxyError as exc:
        raise ConnectError(f"Error: {exc}") from None
    except ssl.SSLError as exc:
        # The certificate the server sent in this handshake (client/tls.py keeps it).
        peer = getattr(context, "server_certificate", None)
        raise ConnectError(explain(exc, host, peer, names=options.tls.names)) from None
    except TimeoutError:
        raise ConnectError("Error: Connection timed out") from None
    except ConnectionRefusedError:
        raise ConnectError("Error: Connection refused") from None
    except socket.gaierror as exc:
        # mosquitto's wording, then what the resolver said about which name
        raise ConnectError(f"Unable to connect (Lookup error.). ({host}: {exc.strerror or exc})") from None
    except OSError as exc:
        raise ConnectError(f"Error: {exc.strerror or exc}") from None
    session.start()
    protocol.flush()
    return protocol


async def _open_websocket(options: ClientOptions, protocol: ClientConnection, context) -> None:
    from websockets.asyncio.client import connect, unix_connect

    scheme = "wss" if context is not None else "ws"
    uri = f"{scheme}://{_host_for_uri(options.host)}:{options.port}{options.ws_path}"
    settings = dict(subprotocols=["mqtt"], compression=None, max_size=None, ping_interval=None)
    if context is not None:
        settings["ssl"] = context
    if options.proxy is not None:
        settings["sock"] = await open_through_proxy(parse_proxy_url(options.proxy), options.host, options.port)
        websocket = await connect(uri, **settings)
    elif options.unix_path is not None:
        websocket = await unix_connect(options.unix_path, uri, **settings)
    else:
        websocket = await connect(uri, **settings)
    protocol.connection_made(WebSocketTransport(websocket, protocol))


def _host_for_uri(host: str) -> str:
    return f"[{host}]" if ":" in host else host
