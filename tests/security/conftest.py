"""Fakes for the security tests: a log that records, config and client stand-ins."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest


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


@dataclass
class PluginSpec:
    path: str
    options: dict = field(default_factory=dict)


@dataclass
class SecurityConfig:
    allow_anonymous: bool = False
    password_file: str | None = None
    acl_file: str | None = None
    psk_file: str | None = None
    allow_zero_length_clientid: bool = True
    auto_id_prefix: str = "auto-"
    plugins: list = field(default_factory=list)


@dataclass(eq=False)
class ListenerConfig:
    port: int = 1883
    bind_address: str | None = None
    path: str | None = None
    security: SecurityConfig = field(default_factory=SecurityConfig)


@dataclass(eq=False)
class Config:
    security: SecurityConfig = field(default_factory=SecurityConfig)
    listeners: list = field(default_factory=list)
    per_listener_settings: bool = False
    auth_fail_delay: float = 0.5
    auth_fail_delay_max: float = 8.0


@dataclass(eq=False)
class Client:
    client_id: str = "client"
    username: str | None = None
    listener: object = None
    peer: str = "127.0.0.1:5000"
    tls: object = None
    bridge: object = None
    acl_cache: object = None


@pytest.fixture
def log():
    return RecordingLog()
