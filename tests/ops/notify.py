"""The service manager's end of sd_notify: a datagram socket that records what arrives.

Like systemd it asks the kernel for each sender's credentials (SO_PASSCRED), so a test
can check that messages come from the main PID (`NotifyAccess=main`).
"""

from __future__ import annotations

import os
import select
import socket
import struct
import time

from tests.brokerproc import TIMEOUT_SCALE


class NotifySocket:
    def __init__(self, path):
        self.path = str(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)

    def receive(self, timeout: float = 10.0) -> tuple[dict[str, str], int]:
        """The next message as {KEY: value} and the sender's PID."""
        deadline = time.monotonic() + timeout * TIMEOUT_SCALE
        remaining = deadline - time.monotonic()
        ready, _, _ = select.select([self.sock], [], [], max(remaining, 0))
        if not ready:
            raise TimeoutError("no sd_notify message")
        data, ancillary, _, _ = self.sock.recvmsg(4096, socket.CMSG_SPACE(12))
        pid = -1
        for level, kind, payload in ancillary:
            if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                pid, _uid, _gid = struct.unpack("3i", payload[:12])
        fields = {}
        for line in data.decode().split("\n"):
            key, _, value = line.partition("=")
            fields[key] = value
        return fields, pid

    def wait_for(self, key: str, timeout: float = 10.0) -> tuple[dict[str, str], int]:
        """Skip messages until one has `key` (e.g. "READY")."""
        deadline = time.monotonic() + timeout * TIMEOUT_SCALE
        while True:
            fields, pid = self.receive(max(deadline - time.monotonic(), 0) / TIMEOUT_SCALE)
            if key in fields:
                return fields, pid

    def close(self) -> None:
        self.sock.close()
        try:
            os.unlink(self.path)
        except OSError:
            pass
