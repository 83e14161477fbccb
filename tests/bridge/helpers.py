"""Shared by the bridge tests that run real brokers (midge and Debian's mosquitto)."""

from __future__ import annotations

import os

from tests.clients import PahoClient

STATE = "$SYS/broker/connection/{}/state"


def expect(client: PahoClient, topic: str, payload: bytes | None = None, timeout: float = 10.0):
    """The next message on `topic` (others are skipped), optionally checking its payload."""
    while True:
        message = client.message(timeout)
        if message.topic == topic and (payload is None or message.payload == payload):
            return message


# mosquitto started as root drops to user `mosquitto`, who cannot read tmp_path.
USER = "user root\n" if os.geteuid() == 0 else ""


def mosquitto_conf(port: int, extra: str = "") -> str:
    return f"{USER}listener {port} 127.0.0.1\nallow_anonymous true\n{extra}"


def bridge_conf(local_port: int, name: str, remote_port: int, topics: list[str], extra: str = "",
                host: str = "127.0.0.1") -> str:
    lines = [f"listener {local_port} 127.0.0.1", "allow_anonymous true", f"connection {name}",
             f"address {host}:{remote_port}", f"remote_clientid {name}-remote", "restart_timeout 1"]
    lines += [f"topic {t}" for t in topics]
    return "\n".join(lines) + "\n" + extra
