"""mosquitto.conf -> typed, validated Config (data only; no I/O beyond reading the files).

    load_config(path | None, ports=(), verbose=False) -> Config
    load_config_string(text, name="<string>", ports=(), verbose=False, auto_ports=False) -> Config
    default_config() -> Config          # like `mosquitto` with no -c: local-only mode
    read_config(path, ports, verbose) -> ReadResult(config | None, errors, warnings)

`ConfigError` (str: `FILE:LINE: OPTION: what is wrong, what is expected`) is raised for
the first error; `.errors` holds all of them. Non-fatal findings are in
`Config.warnings` (`Log(config)` logs them). The option table is `midge.config.options`.
"""

from __future__ import annotations

from midge.config.errors import ConfigError
from midge.config.model import (
    BridgeConfig,
    BridgeTopic,
    Config,
    ListenerConfig,
    PluginConfig,
    SecurityConfig,
)
from midge.config.parser import Reader, ReadResult

__all__ = [
    "BridgeConfig", "BridgeTopic", "Config", "ConfigError", "ListenerConfig", "PluginConfig",
    "ReadResult", "SecurityConfig", "default_config", "load_config", "load_config_string",
    "read_config", "read_config_string",
]


def read_config(path: str | None, ports=(), verbose: bool = False, auto_ports: bool = False) -> ReadResult:
    """Read a config file (None: no file, local-only mode) and collect every problem.

    `auto_ports` accepts `listener auto [ADDRESS]` (a free TCP port chosen at bind time);
    only the embedding API sets it."""
    reader = Reader(ports, verbose, auto_ports)
    if path is not None:
        reader.read_path(path)
    return reader.result()


def read_config_string(text: str, name: str = "<string>", ports=(), verbose: bool = False,
                       auto_ports: bool = False) -> ReadResult:
    reader = Reader(ports, verbose, auto_ports)
    reader.read_bytes(text.encode("utf-8", "surrogateescape"), name)
    return reader.result()


def _raise_or_return(result: ReadResult) -> Config:
    if result.errors:
        first = result.errors[0]
        first.errors = list(result.errors)
        first.warnings = list(result.warnings)
        raise first
    return result.config


def load_config(path: str | None, ports=(), verbose: bool = False, auto_ports: bool = False) -> Config:
    """Read `path` like `mosquitto -c path [-p PORT]... [-v]`; ConfigError on any error."""
    return _raise_or_return(read_config(path, ports, verbose, auto_ports))


def load_config_string(text: str, name: str = "<string>", ports=(), verbose: bool = False,
                       auto_ports: bool = False) -> Config:
    """Read config text (tests, midge.Broker); `name` stands in for the file name in messages."""
    return _raise_or_return(read_config_string(text, name, ports, verbose, auto_ports))


def default_config() -> Config:
    """The config of `mosquitto` run without -c: local-only on port 1883, anonymous allowed."""
    return load_config(None)
