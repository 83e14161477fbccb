"""Start and stop a nats-server process: `workers N` without `cluster_url`, and the tests.

nats-server comes from PATH (Debian's `nats-server` package). It listens on 127.0.0.1
only; port -1 lets it pick a free port, which we read from its log. Its limits are
raised so that every MQTT topic fits a subject (a topic of 65535 bytes can become a
subject of ~200 KB: `max_control_line`) and large messages cross (`max_payload` 64 MB,
NATS's ceiling; MQTT allows 256 MB, docs/cluster.md says what happens above).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import threading
import time

_LISTENING = re.compile(r"Listening for client connections on ([0-9.]+):(\d+)")
_READY = "Server is ready"


class NatsServerError(Exception):
    """nats-server is missing or did not start; the message says why."""


def find_nats_server() -> str:
    path = shutil.which("nats-server") or ("/usr/sbin/nats-server" if os.path.exists("/usr/sbin/nats-server")
                                           else None)
    if path is None:
        raise NatsServerError("nats-server is not installed (Debian: apt-get install nats-server); "
                              "it is needed for workers above 1 without cluster_url")
    return path


class NatsServer:
    """One nats-server child process with JetStream; `url` once `start()` returned."""

    def __init__(self, store_dir: str, port: int = -1, name: str = "midge", extra_config: str = ""):
        self.store_dir = store_dir
        self.port = port
        self.name = name
        self.extra_config = extra_config
        self.proc: subprocess.Popen | None = None
        self.url = ""
        self.lines: list[str] = []
        self._cond = threading.Condition()

    def start(self, timeout: float = 15.0) -> str:
        exe = find_nats_server()
        os.makedirs(self.store_dir, exist_ok=True)
        conf = os.path.join(self.store_dir, "nats-server.conf")
        with open(conf, "w") as f:
            f.write(f'server_name: "{self.name}"\nlisten: "127.0.0.1:{self.port}"\n'
                    f"max_control_line: 262144\nmax_payload: 67108864\nmax_pending: 268435456\n"
                    f'jetstream {{ store_dir: "{self.store_dir}" }}\n{self.extra_config}\n')
        self.proc = subprocess.Popen([exe, "-c", conf], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     text=True, bufsize=1, start_new_session=True)
        threading.Thread(target=self._read, daemon=True).start()
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                port = next((m.group(2) for m in map(_LISTENING.search, self.lines) if m), None)
                if port is not None and any(_READY in line for line in self.lines):
                    self.port = int(port)
                    self.url = f"nats://127.0.0.1:{port}"
                    return self.url
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise NatsServerError("nats-server did not start:\n" + "\n".join(self.lines[-15:]))
                self._cond.wait(0.2)

    def _read(self) -> None:
        for line in self.proc.stderr:
            with self._cond:
                self.lines.append(line.rstrip("\n"))
                if len(self.lines) > 2000:
                    del self.lines[:1000]
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL (tests: NATS lost mid-stream)."""
        if self.running():
            self.proc.kill()
            self.proc.wait()

    def stop(self, timeout: float = 10.0) -> None:
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
