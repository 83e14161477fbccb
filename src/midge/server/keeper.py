"""The keeper: a small root process that reads, for the broker that switched to `user`,
the files its root-owned config names, and nothing else.

Why: midge reads keys as root at start-up (no `chown` of private keys needed, unlike
Mosquitto 2.0), but a SIGHUP reload and the TLS file watcher read them again later,
when the broker runs as `user`. Certbot's `/etc/letsencrypt/live/...` is root-only.

How: `FileKeeper.start()` forks before the switch (before the event loop exists). The
child keeps root, closes every other descriptor, and answers three requests on a Unix
socket pair: read a file, list a directory, stat a path. It serves a path only if the
config, as the child itself parses it (as root, again whenever a path is not yet
known), names it: the config files, listener and bridge TLS files, password/ACL/PSK
files, the cluster's TLS and .creds files, and the entries of capath / crlfile / include_dir directories. So a
compromised broker can read nothing through it that the operator's config did not
already hand to the broker. The child exits when the broker closes its end.

Wire format, both ways: 4-byte big-endian length + JSON. A `read` answer's JSON has
`size`, followed by that many raw bytes.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import struct

MAX_REQUEST = 65536
MAX_FILE = 64 << 20  # no key, certificate or password file is larger
TIMEOUT = 10.0

_LISTENER_FILES = ("certfile", "keyfile", "cafile", "crlfile", "dhparamfile", "keyfile_password_file")
_LISTENER_DIRS = ("capath", "crlfile")
_SECURITY_FILES = ("password_file", "acl_file", "psk_file")
_BRIDGE_FILES = ("bridge_cafile", "bridge_certfile", "bridge_keyfile")
_BRIDGE_DIRS = ("bridge_capath",)
_CLUSTER_FILES = ("cluster_cafile", "cluster_certfile", "cluster_keyfile", "cluster_credentials")


class KeeperError(OSError):
    """The keeper refused or could not answer; errno/strerror as the read would give."""


def named_paths(config) -> tuple[set[str], set[str]]:
    """(files, directories) a config names: what the keeper may serve."""
    files: set[str] = set(getattr(config, "files", ()))
    dirs: set[str] = set(getattr(config, "include_dirs", ()))
    for option in _CLUSTER_FILES:
        if getattr(config, option, None):
            files.add(getattr(config, option))
    securities = [config.security]
    for listener in config.listeners:
        securities.append(listener.security)
        for option in _LISTENER_FILES:
            if getattr(listener, option, None):
                files.add(getattr(listener, option))
        for option in _LISTENER_DIRS:
            if getattr(listener, option, None):
                dirs.add(getattr(listener, option))
    for security in securities:
        for option in _SECURITY_FILES:
            if getattr(security, option, None):
                files.add(getattr(security, option))
    for bridge in config.bridges:
        for option in _BRIDGE_FILES:
            if getattr(bridge, option, None):
                files.add(getattr(bridge, option))
        for option in _BRIDGE_DIRS:
            if getattr(bridge, option, None):
                dirs.add(getattr(bridge, option))
    return {os.path.abspath(f) for f in files}, {os.path.abspath(d) for d in dirs}


def _send(sock: socket.socket, header: dict, payload: bytes = b"") -> None:
    body = json.dumps(header).encode()
    sock.sendall(struct.pack(">I", len(body)) + body + payload)


def _receive_exactly(sock: socket.socket, size: int) -> bytes:
    chunks = []
    while size:
        chunk = sock.recv(min(size, 1 << 20))
        if not chunk:
            raise EOFError
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def _receive(sock: socket.socket, limit: int) -> dict:
    (size,) = struct.unpack(">I", _receive_exactly(sock, 4))
    if size > limit:
        raise EOFError
    return json.loads(_receive_exactly(sock, size))


class FileKeeper:
    """The broker's side: `read`, `listdir`, `stat` (used by midge.files)."""

    def __init__(self, sock: socket.socket, pid: int):
        self.sock = sock
        self.pid = pid

    @classmethod
    def start(cls, config_path: str | None, ports=(), verbose: bool = False) -> "FileKeeper":
        """Fork the keeper (call as root, before the event loop and any thread)."""
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        pid = os.fork()
        if pid == 0:  # the keeper
            code = 0
            try:
                parent.close()
                _serve(child, config_path, list(ports), verbose)
            except BaseException:  # noqa: BLE001 - the keeper never returns into the broker's code
                code = 1
            os._exit(code)
        child.close()
        parent.settimeout(TIMEOUT)
        parent.set_inheritable(False)
        return cls(parent, pid)

    def _ask(self, op: str, path: str) -> tuple[dict, socket.socket]:
        try:
            _send(self.sock, {"op": op, "path": path})
            answer = _receive(self.sock, MAX_REQUEST)
        except (OSError, EOFError, ValueError) as exc:
            raise KeeperError(5, f"the root keeper process does not answer ({exc!r})") from None
        if "errno" in answer:
            raise KeeperError(answer["errno"], answer.get("strerror", "refused"), path)
        return answer, self.sock

    def read(self, path: str) -> bytes:
        answer, sock = self._ask("read", path)
        try:
            return _receive_exactly(sock, int(answer["size"]))
        except (OSError, EOFError) as exc:
            raise KeeperError(5, f"the root keeper process does not answer ({exc!r})") from None

    def listdir(self, path: str) -> list[str]:
        return list(self._ask("list", path)[0]["names"])

    def stat(self, path: str) -> tuple:
        return tuple(self._ask("stat", path)[0]["signature"])

    def close(self) -> None:
        self.sock.close()
        try:
            os.waitpid(self.pid, 0)
        except ChildProcessError:
            pass


# -- The keeper process ---------------------------------------------------------------

class _Allowed:
    """What the config names, re-read (as root) when asked for a path it lacks."""

    def __init__(self, config_path, ports, verbose):
        self.config_path = os.path.abspath(config_path) if config_path else None
        self.ports = ports
        self.verbose = verbose
        self.files: set[str] = set()
        self.dirs: set[str] = set()
        self.refresh()

    def refresh(self) -> None:
        if self.config_path is None:
            return
        from midge.config import read_config

        config = read_config(self.config_path, ports=self.ports, verbose=self.verbose).config
        files, dirs = named_paths(config)
        self.files = files | {self.config_path}
        self.dirs = dirs

    def _covers(self, path: str, listing: bool) -> bool:
        if listing:
            return path in self.dirs
        return path in self.files or path in self.dirs or os.path.dirname(path) in self.dirs

    def allows(self, path: str, listing: bool = False) -> bool:
        if self._covers(path, listing):
            return True
        self.refresh()
        return self._covers(path, listing)


def _serve(sock: socket.socket, config_path, ports, verbose) -> None:
    for number in (signal.SIGINT, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2):
        signal.signal(number, signal.SIG_IGN)  # the broker handles these; a terminal's ^C too
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    keep = sock.fileno()
    os.closerange(3, keep)  # listening sockets, log file: the keeper holds none of them
    os.closerange(keep + 1, os.sysconf("SC_OPEN_MAX") if hasattr(os, "sysconf") else 65536)
    allowed = _Allowed(config_path, ports, verbose)
    while True:
        try:
            request = _receive(sock, MAX_REQUEST)
        except (EOFError, OSError, ValueError):
            return  # the broker exited (or spoke nonsense): so does the keeper
        if not isinstance(request, dict) or not isinstance(request.get("path"), str):
            return
        _answer(sock, allowed, request.get("op"), os.path.abspath(request["path"]))


def _answer(sock, allowed: _Allowed, op, path: str) -> None:
    if op not in ("read", "list", "stat") or not allowed.allows(path, listing=op == "list"):
        _send(sock, {"errno": 13, "strerror": "Permission denied (not a file the config names, "
                                              "so midge's root keeper does not read it)"})
        return
    try:
        if op == "read":
            with open(path, "rb") as f:
                data = f.read(MAX_FILE + 1)
            if len(data) > MAX_FILE:
                raise OSError(27, "File too large")
            _send(sock, {"size": len(data)}, data)
        elif op == "list":
            _send(sock, {"names": os.listdir(path)})
        else:
            st = os.stat(path)
            _send(sock, {"signature": [st.st_mtime_ns, st.st_size, st.st_ino, os.path.isdir(path)]})
    except OSError as exc:
        _send(sock, {"errno": exc.errno or 5, "strerror": exc.strerror or str(exc)})
