"""Run a real broker process (midge or Debian's mosquitto) for black-box tests.

Readiness is observed, never slept for: we poll until the listener accepts a TCP
connection (or the Unix socket exists), with a deadline.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from tests.peers import require_peer

TIMEOUT_SCALE = float(os.environ.get("MIDGE_TEST_TIMEOUT_SCALE", "1"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, host: str = "127.0.0.1", timeout: float = 10.0, proc=None) -> None:
    deadline = time.monotonic() + timeout * TIMEOUT_SCALE
    while True:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"broker exited with {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing listening on {host}:{port} after {timeout}s")
            time.sleep(0.02)  # polling interval of a readiness probe, not synchronisation


class BrokerProcess:
    """A broker subprocess whose combined output is captured line by line."""

    def __init__(self, argv: list[str], cwd: str | Path | None = None, env: dict | None = None):
        self.argv = argv
        self.proc = subprocess.Popen(
            argv,
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
        )
        self.lines: list[str] = []
        self._cond = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._cond:
                self.lines.append(line.rstrip("\n"))
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    @property
    def output(self) -> str:
        with self._cond:
            return "\n".join(self.lines)

    def wait_for_log(self, needle: str, timeout: float = 10.0, start: int = 0) -> str:
        """Block until a log line containing `needle` appears; return that line."""
        deadline = time.monotonic() + timeout * TIMEOUT_SCALE
        with self._cond:
            index = start
            while True:
                while index < len(self.lines):
                    if needle in self.lines[index]:
                        return self.lines[index]
                    index += 1
                remaining = deadline - time.monotonic()
                if remaining <= 0 or (self.proc.poll() is not None and not self._reader.is_alive()):
                    raise AssertionError(
                        f"log line containing {needle!r} not seen; output was:\n" + "\n".join(self.lines)
                    )
                self._cond.wait(remaining)

    def mark(self) -> int:
        """Index to pass as `start` to wait_for_log, to only see lines after now."""
        with self._cond:
            return len(self.lines)

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def stop(self, timeout: float = 10.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout * TIMEOUT_SCALE)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._reader.join(5)
        return self.proc.returncode


def as_root_user(config_text: str) -> str:
    """`user root` for a test run as root whose config names no user.

    Started as root, midge (like mosquitto) switches to `user`, default mosquitto, who
    cannot write the persistence or log files of a test in root's tmp_path. Appended,
    not prepended, so the config's line numbers stay those the test wrote.
    """
    if os.geteuid() != 0 or any(line.split(" ", 1)[0] == "user" for line in config_text.splitlines()):
        return ""
    return ("" if config_text.endswith("\n") or not config_text else "\n") + "user root\n"


def start_midge(config_text: str | None, tmp_path: Path, port: int | None = None,
                extra_args: list[str] = (), wait: bool = True) -> BrokerProcess:
    """Start `python -m midge broker` with `config_text` written to tmp_path/midge.conf.

    `port` is the TCP port to wait for (the caller puts it in the config).
    """
    argv = [sys.executable, "-m", "midge", "broker"]
    if config_text is not None:
        conf = tmp_path / "midge.conf"
        conf.write_text(config_text + as_root_user(config_text))
        argv += ["-c", str(conf)]
    argv += list(extra_args)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    broker = BrokerProcess(argv, cwd=tmp_path, env=env)
    if wait and port is not None:
        try:
            wait_for_port(port, proc=broker.proc)
        except Exception:
            broker.stop()
            raise RuntimeError("midge did not start:\n" + broker.output)
    return broker


def start_mosquitto(config_text: str, tmp_path: Path, port: int, wait: bool = True) -> BrokerProcess:
    """Start Debian's mosquitto broker (the reference peer) with `config_text`."""
    exe = require_peer("mosquitto")
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(config_text)
    broker = BrokerProcess([exe, "-c", str(conf)], cwd=tmp_path)
    if wait:
        try:
            wait_for_port(port, proc=broker.proc)
        except Exception:
            broker.stop()
            raise RuntimeError("mosquitto did not start:\n" + broker.output)
    return broker
