"""Broker processes under measurement: start one, read its CPU time and memory, stop it.

Both brokers read the same mosquitto.conf text. CPU is utime+stime of the broker
process itself from /proc/<pid>/stat, so load generators sharing the machine do not
count; memory is VmRSS / VmHWM from /proc/<pid>/status.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def mosquitto_exe() -> str | None:
    return shutil.which("mosquitto") or (
        "/usr/sbin/mosquitto" if os.access("/usr/sbin/mosquitto", os.X_OK) else None)


# How to start each broker on a config file. Adding a broker is one line here.
BROKERS = {
    "midge": lambda conf: [sys.executable, "-m", "midge", "broker", "-c", str(conf)],
    "mosquitto": lambda conf: [mosquitto_exe() or "mosquitto", "-c", str(conf)],
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_profiler(pid: int, output: Path) -> subprocess.Popen:
    """py-spy sampling `pid` (a Python broker) into `output` (collapsed stacks)."""
    exe = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    return subprocess.Popen([exe, "record", "--pid", str(pid), "--format", "raw",
                             "--rate", "1000", "-o", str(output)],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


class BrokerFailed(RuntimeError):
    """The broker exited or never listened; the message holds the end of its log."""


class Broker:
    """One broker process with its log in `workdir/<name>.log`."""

    def __init__(self, name: str, config_text: str, workdir: Path, port: int,
                 start_timeout: float = 15.0, profile_to: Path | None = None):
        self.name = name
        self.workdir = workdir
        conf = workdir / f"{name}.conf"
        conf.write_text(config_text)
        self.log_path = workdir / f"{name}.log"
        self._log = open(self.log_path, "wb")
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(BROKERS[name](conf), cwd=workdir, env=env,
                                     stdin=subprocess.DEVNULL, stdout=self._log,
                                     stderr=subprocess.STDOUT)
        self.pid = self.proc.pid
        self._profiler = None
        try:
            self._wait_listening(port, start_timeout)
        except Exception:
            self.stop()
            raise
        if profile_to is not None:
            self._profiler = start_profiler(self.pid, profile_to)

    def _wait_listening(self, port: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise BrokerFailed(f"{self.name} exited with {self.proc.returncode}: "
                                   + self.log_tail())
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    return
            except OSError:
                if time.monotonic() > deadline:
                    raise BrokerFailed(f"{self.name} not listening on {port} after "
                                       f"{timeout}s: " + self.log_tail())
                time.sleep(0.02)  # readiness probe interval

    def log_tail(self, lines: int = 8) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return " | ".join(text[-lines:])

    def alive(self) -> bool:
        return self.proc.poll() is None

    def cpu_seconds(self) -> float:
        """utime + stime of the broker process (all its threads), in seconds."""
        with open(f"/proc/{self.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS

    def memory_kib(self) -> dict[str, int]:
        """VmRSS and VmHWM (peak RSS) in KiB."""
        out = {}
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key in ("VmRSS", "VmHWM"):
                    out[key] = int(value.split()[0])
        return out

    def stop(self, timeout: float = 10.0) -> None:
        if self._profiler is not None:
            # py-spy writes its report on SIGINT; the broker keeps running meanwhile.
            self._profiler.send_signal(signal.SIGINT)
            try:
                self._profiler.wait(30)
            except subprocess.TimeoutExpired:
                self._profiler.kill()
                self._profiler.wait()
            self._profiler = None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
