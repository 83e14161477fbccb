"""For the security tests: a log that records, midge's real config types, and the
connection attributes Security reads."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from midge.config.model import Config, ListenerConfig, PluginConfig, SecurityConfig


class RecordingLog:
    def __init__(self):
        self.lines: list[tuple[str, str]] = []

    def _add(self, level, message):
        self.lines.append((level, message))

    def error(self, message):
        self._add("error", message)

    def warning(self, message):
        self._add("warning", message)

    def notice(self, message):
        self._add("notice", message)

    def info(self, message):
        self._add("info", message)

    def text(self) -> str:
        return "\n".join(m for _, m in self.lines)


def PluginSpec(path: str, options: dict | None = None) -> PluginConfig:
    return PluginConfig(path, dict(options or {}))


@dataclass(eq=False)
class Client:
    """What Security reads of a connection (the broker's Client has these and more)."""

    client_id: str = "client"
    username: str | None = None
    listener: ListenerConfig = field(default_factory=ListenerConfig)
    peer: str = "127.0.0.1:5000"
    tls: object = None
    bridge: object = None
    acl_cache: object = None


@pytest.fixture
def log():
    return RecordingLog()
