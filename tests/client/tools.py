"""Run midge's and Mosquitto's command-line clients as subprocesses."""

from __future__ import annotations

import subprocess
import sys

from tests.brokerproc import TIMEOUT_SCALE
from tests.peers import require_peer

MIDGE = [sys.executable, "-m", "midge"]


def midge(tool: str, *args: str) -> list[str]:
    return [*MIDGE, tool, *args]


def mosquitto(tool: str, *args: str) -> list[str]:
    return [require_peer(f"mosquitto_{tool}"), *args]


def run(argv: list[str], input: bytes | None = None, timeout: float = 10, env=None):
    return subprocess.run(argv, input=input, capture_output=True, timeout=timeout * TIMEOUT_SCALE,
                          env=env)


def start(argv: list[str], env=None) -> subprocess.Popen:
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)


def finish(proc: subprocess.Popen, timeout: float = 10) -> tuple[int, bytes, bytes]:
    try:
        out, err = proc.communicate(timeout=timeout * TIMEOUT_SCALE)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(f"{proc.args} did not exit; stdout={out!r} stderr={err!r}")
    return proc.returncode, out, err


def start_subscriber(broker, argv: list[str], client_id: str, env=None) -> subprocess.Popen:
    """Start a subscriber and wait until the broker has acknowledged its SUBSCRIBE."""
    mark = broker.mark()
    proc = start([*argv, "-i", client_id], env=env)
    try:
        broker.wait_for_log(f"Sending SUBACK to {client_id}", start=mark)
    except AssertionError:
        proc.kill()
        raise
    return proc


def distinct_ports(count: int) -> list[int]:
    """`count` different free ports (free_port() alone may hand out the same one twice)."""
    from tests.brokerproc import free_port

    ports: list[int] = []
    while len(ports) < count:
        port = free_port()
        if port not in ports:
            ports.append(port)
    return ports
