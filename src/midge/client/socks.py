"""SOCKS5 proxy connections for `--proxy socks5h://[user[:pass]@]host[:port]`.

Like libmosquitto, the broker's host name is sent to the proxy unresolved
("socks5h"), and only "no authentication" and "username/password" are offered.
The result is a connected socket that the driver then wraps in TLS or WebSocket.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import unquote

DEFAULT_PORT = 1080
REPLIES = {
    1: "general SOCKS server failure",
    2: "connection not allowed by ruleset",
    3: "network unreachable",
    4: "host unreachable",
    5: "connection refused",
    6: "TTL expired",
    7: "command not supported",
    8: "address type not supported",
}


class ProxyError(Exception):
    """The proxy could not be used; `str()` says why."""


@dataclass(slots=True)
class Proxy:
    host: str
    port: int = DEFAULT_PORT
    username: str | None = None
    password: str | None = None


def parse_proxy_url(url: str) -> Proxy:
    """socks5h://[user[:password]@]host[:port]; ProxyError words problems as libmosquitto."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() != "socks5h":
        raise ProxyError(f"Unsupported proxy protocol: {url}")
    rest = rest.rstrip("/")
    username = password = None
    if "@" in rest:
        credentials, _, rest = rest.rpartition("@")
        username, colon, password = credentials.partition(":")
        username = unquote(username)
        password = unquote(password) if colon else None
    if rest.startswith("["):  # midge accepts [v6]:port; mosquitto cannot
        host, _, port_text = rest[1:].partition("]")
        port_text = port_text.lstrip(":")
    else:
        host, _, port_text = rest.partition(":")
    if not host:
        raise ProxyError("Invalid proxy.")
    port = DEFAULT_PORT
    if port_text:
        port = int(port_text) if port_text.isdigit() else 0
        if not 0 < port < 65536:
            raise ProxyError(f"Invalid proxy port {port_text}")
    return Proxy(host, port, username, password)


async def open_through_proxy(proxy: Proxy, host: str, port: int) -> socket.socket:
    """A non-blocking socket connected to host:port through the SOCKS5 proxy."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(proxy.host, proxy.port, type=socket.SOCK_STREAM)
    sock = socket.socket(infos[0][0], socket.SOCK_STREAM)
    sock.setblocking(False)
    try:
        await loop.sock_connect(sock, infos[0][4])
        await _negotiate(loop, sock, proxy, host, port)
    except BaseException:
        sock.close()
        raise
    return sock


async def _negotiate(loop, sock: socket.socket, proxy: Proxy, host: str, port: int) -> None:
    methods = b"\x00\x02" if proxy.username is not None else b"\x00"
    await loop.sock_sendall(sock, bytes((5, len(methods))) + methods)
    version, method = await _recv_exactly(loop, sock, 2)
    if version != 5 or method == 0xFF:
        raise ProxyError("the SOCKS5 proxy accepted none of our authentication methods")
    if method == 2:
        user = (proxy.username or "").encode()
        password = (proxy.password or "").encode()
        await loop.sock_sendall(sock, bytes((1, len(user))) + user + bytes((len(password),)) + password)
        _, status = await _recv_exactly(loop, sock, 2)
        if status != 0:
            raise ProxyError("the SOCKS5 proxy rejected the user name or password")
    elif method != 0:
        raise ProxyError(f"the SOCKS5 proxy chose an unsupported method {method}")
    try:
        address = ipaddress.ip_address(host)
        target = (b"\x01" if address.version == 4 else b"\x04") + address.packed
    except ValueError:
        name = host.encode("idna")
        target = b"\x03" + bytes((len(name),)) + name
    await loop.sock_sendall(sock, b"\x05\x01\x00" + target + port.to_bytes(2, "big"))
    version, reply, _, address_type = await _recv_exactly(loop, sock, 4)
    if reply != 0:
        raise ProxyError(f"the SOCKS5 proxy could not connect to {host}:{port}: "
                         f"{REPLIES.get(reply, f'error {reply}')}")
    length = {1: 4, 4: 16}.get(address_type)
    if length is None:
        length = (await _recv_exactly(loop, sock, 1))[0]
    await _recv_exactly(loop, sock, length + 2)  # bound address and port: unused


async def _recv_exactly(loop, sock: socket.socket, count: int) -> bytes:
    data = b""
    while len(data) < count:
        chunk = await loop.sock_recv(sock, count - len(data))
        if not chunk:
            raise ProxyError("the SOCKS5 proxy closed the connection")
        data += chunk
    return data
