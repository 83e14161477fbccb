"""Listening sockets for each `listener` of the config, made the way Mosquitto makes them.

A listener without a bind address opens one socket per address family (IPv4 and IPv6,
each IPv6 socket v6-only), restricted by `socket_domain`; `listener 0 PATH` is a Unix
socket; local-only mode (no listener in the config) binds 127.0.0.1 and ::1 only.
`listener auto` (the embedding API's port 0) binds a free TCP port, the same one on
every address family, and writes it into the listener's `port`.
Sockets are created and bound here, synchronously, so an error names the listener before
the event loop starts. They do not listen yet: the server listens (asyncio's
create_server, with BACKLOG) only when it is ready to serve, after the switch to `user`,
the persistence file and the cluster, as Mosquitto listens only after restoring its
database. Until then a connection is refused rather than left waiting in the backlog of
a broker that is not ready, so "the port answers" means "the broker serves".
"""

from __future__ import annotations

import errno
import os
import socket
import stat
from dataclasses import dataclass

# Mosquitto listens with a backlog of 100; a connection storm on a Python broker needs
# more room in the accept queue while the loop is busy, and the kernel caps it anyway.
BACKLOG = 1024
# `listener auto` on several address families: the port the first family got may be taken
# on the next one; try again with a new port this many times.
AUTO_PORT_ATTEMPTS = 20


class ListenerError(Exception):
    """A listener could not be opened; the message names the listener and the cause."""


@dataclass(slots=True)
class BoundSocket:
    sock: socket.socket
    description: str  # "ipv4 listen socket on port 1883", for the startup log
    family: int


def _bind_tcp(host: str | None, port: int, family: int, interface: str | None) -> socket.socket:
    infos = socket.getaddrinfo(host, port, family, socket.SOCK_STREAM, 0, socket.AI_PASSIVE)
    last_error: OSError | None = None
    for fam, type_, proto, _canon, addr in infos:
        sock = socket.socket(fam, type_, proto)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if os.environ.get("MIDGE_WORKER"):
                # `workers N`: every worker binds the same ports; the kernel spreads connections.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if fam == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            if interface:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, interface.encode() + b"\0")
            sock.bind(addr)
            sock.setblocking(False)
            return sock
        except OSError as exc:
            sock.close()
            last_error = exc
    raise last_error or OSError(f"no address for {host!r}")


def open_listener(listener, local_only: bool = False) -> list[BoundSocket]:
    """Open every socket of one listener; raise ListenerError naming it on failure."""
    if listener.path:  # `listener 0 PATH` (port 0 without a path is `listener auto`)
        return [_open_unix(listener)]
    if local_only:
        hosts = [("127.0.0.1", socket.AF_INET), ("::1", socket.AF_INET6)]
    else:
        domain = listener.socket_domain
        families = {"ipv4": [socket.AF_INET], "ipv6": [socket.AF_INET6]}.get(
            domain, [socket.AF_INET, socket.AF_INET6]
        )
        host = listener.bind_address
        if host:
            families = [f for f in families if _resolves(host, listener.port, f)] or families[:1]
        hosts = [(host, f) for f in families]
    if listener.auto_port and listener.port == 0:
        return _open_auto(listener, hosts)
    bound, errors = _bind_all(listener, hosts, listener.port)
    if not bound:
        raise _no_socket(listener, errors)
    return bound


def _bind_all(listener, hosts, port: int) -> tuple[list[BoundSocket], list[tuple[str, OSError]]]:
    """Bind `port` on each (host, family); a family that fails is left out (Mosquitto's rule)."""
    bound: list[BoundSocket] = []
    errors: list[tuple[str, OSError]] = []
    for host, family in hosts:
        name = "ipv4" if family == socket.AF_INET else "ipv6"
        try:
            sock = _bind_tcp(host, port, family, listener.bind_interface)
        except OSError as exc:
            errors.append((f"{name} {host or '*'}", exc))
            continue
        if port == 0:
            port = sock.getsockname()[1]  # `listener auto`: the next families take the same port
        bound.append(BoundSocket(sock, f"{name} listen socket on port {port}", family))
    return bound, errors


def _open_auto(listener, hosts) -> list[BoundSocket]:
    """`listener auto`: one free port for every family; the listener takes that port."""
    for _attempt in range(AUTO_PORT_ATTEMPTS):
        bound, errors = _bind_all(listener, hosts, 0)
        if bound and any(exc.errno == errno.EADDRINUSE for _, exc in errors):
            for b in bound:  # the port was free on one family only: pick another one
                b.sock.close()
            continue
        if not bound:
            raise _no_socket(listener, errors)
        listener.port = bound[0].sock.getsockname()[1]
        return bound
    raise _no_socket(listener, errors)


def _no_socket(listener, errors) -> ListenerError:
    port = "auto" if listener.auto_port and listener.port == 0 else listener.port
    where = f" {listener.bind_address}" if listener.bind_address else ""
    causes = "; ".join(f"{name}: {exc.strerror or exc}" for name, exc in errors)
    return ListenerError(f"listener {port}{where}: could not open any socket ({causes})")


def _resolves(host: str, port: int, family: int) -> bool:
    try:
        return bool(socket.getaddrinfo(host, port, family, socket.SOCK_STREAM))
    except OSError:
        return False


def _open_unix(listener) -> BoundSocket:
    path = listener.path
    try:
        if os.path.exists(path) and stat.S_ISSOCK(os.stat(path).st_mode):
            os.unlink(path)  # a stale socket from a previous run, as Mosquitto does
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(path)
        sock.setblocking(False)
    except OSError as exc:
        raise ListenerError(f"listener 0 {path}: could not open Unix socket ({exc.strerror or exc})") from exc
    return BoundSocket(sock, f"unix socket on path {path}", socket.AF_UNIX)
