"""systemd's notify protocol (sd_notify(3)): tell the service manager how the broker is.

`READY=1` once every listener accepts connections, `RELOADING=1` (with
`MONOTONIC_USEC`, which `Type=notify-reload` requires) then `READY=1` around a SIGHUP
reload, `STOPPING=1` when shutdown starts, and a one-line `STATUS=` with each. The
protocol is one datagram per message on the Unix socket named by `$NOTIFY_SOCKET`
(a path, or `@name` for an abstract socket); without that variable every call does
nothing, so the same code runs under systemd, another supervisor or a terminal.

The socket is connected when the object is made, before the broker switches user:
a path that only root can reach (systemd's is world-writable, a test's need not be)
still works after the switch.
"""

from __future__ import annotations

import os
import socket
import time


class SdNotify:
    """Sends notify messages; every method is a no-op when there is no socket."""

    def __init__(self, sock: socket.socket | None = None, address: str = ""):
        self._sock = sock
        self.address = address
        self.failed: OSError | None = None  # the last send error, for a log line

    @classmethod
    def from_environment(cls, environ=None) -> "SdNotify":
        """Read and unset `$NOTIFY_SOCKET` (children must not notify on our behalf)."""
        environ = os.environ if environ is None else environ
        address = environ.pop("NOTIFY_SOCKET", "")
        if not address or address[0] not in "/@":
            return cls()  # unset, or a vsock address (not used by midge's units)
        target = "\0" + address[1:] if address[0] == "@" else address
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        try:
            sock.connect(target)
        except OSError as exc:
            sock.close()
            notifier = cls(None, address)
            notifier.failed = exc
            return notifier
        return cls(sock, address)

    @property
    def enabled(self) -> bool:
        return self._sock is not None

    def send(self, *fields: str) -> bool:
        """Send `KEY=value` lines as one message; False if it could not be sent."""
        if self._sock is None:
            return False
        try:
            self._sock.send("\n".join(fields).encode("utf-8", "replace"))
        except OSError as exc:
            self.failed = exc
            return False
        return True

    def ready(self, status: str = "") -> bool:
        return self.send("READY=1", *_status(status))

    def reloading(self, status: str = "Reloading configuration") -> bool:
        # MONOTONIC_USEC: CLOCK_MONOTONIC when the reload started; systemd uses it to tell
        # this reload's READY=1 from an earlier one (required for Type=notify-reload).
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        return self.send("RELOADING=1", f"MONOTONIC_USEC={usec}", *_status(status))

    def stopping(self, status: str = "Shutting down") -> bool:
        return self.send("STOPPING=1", *_status(status))

    def status(self, status: str) -> bool:
        return self.send(*_status(status))

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def _status(text: str) -> tuple[str, ...]:
    line = " ".join(text.split())  # one line: STATUS ends at the newline
    return (f"STATUS={line}",) if line else ()


#: The notifier of a server that was not started by the command line (embedding, tests).
DISABLED = SdNotify()
