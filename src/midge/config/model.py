"""The typed result of reading a mosquitto.conf: Config, ListenerConfig, SecurityConfig,
BridgeConfig, PluginConfig.

Attribute names are the option names of `options.OPTIONS` (`ciphers_tls1.3` becomes
`ciphers_tls1_3`) and start at the option's default, so every option of a scope is
always present. `origins` maps an option name to the (file, line) that set it, for
messages that point at the config.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from midge.config import options as opts


class _Scoped:
    """An object whose attributes start at the defaults of one option scope."""

    _scope = ""

    def __init__(self):
        for attr, default in opts.defaults(self._scope).items():
            setattr(self, attr, default)
        self.origins: dict[str, tuple[str, int]] = {}

    def _apply(self, values: dict) -> None:
        for attr, value in values.items():
            setattr(self, attr, value)

    def origin(self, option: str) -> str:
        """`file:line` where `option` was set, or "" if it kept its default."""
        where = self.origins.get(option)
        return f"{where[0]}:{where[1]}" if where else ""

    def __repr__(self) -> str:
        defaults = opts.defaults(self._scope)
        fields = ", ".join(f"{k}={v!r}" for k, v in vars(self).items()
                           if k not in ("origins", "warnings", "security") and v is not None
                           and (k not in defaults or defaults[k] != v) and v != [])
        return f"{type(self).__name__}({fields})"


@dataclass(slots=True)
class PluginConfig:
    """One `plugin` line with the `plugin_opt_*` lines that follow it."""

    path: str
    options: dict[str, str] = field(default_factory=dict)
    deny_special_chars: bool = True
    origin: tuple[str, int] = ("", 0)


class SecurityConfig(_Scoped):
    """Options that `per_listener_settings true` moves into each listener.

    `allow_anonymous` is resolved after the whole config is read (Mosquitto's rule):
    true in local-only mode, else false unless set.
    """

    _scope = opts.SECURITY

    def __init__(self, **values):
        super().__init__()
        self.plugins: list[PluginConfig] = []
        self.auth_plugin_deny_special_chars = True
        self._apply(values)


def uses_tls_username(listener: ListenerConfig) -> bool:
    """True when the listener takes usernames from TLS (the CONNECT username is ignored).

    Here rather than in security/identity.py, which imports `cryptography`: a broker
    without TLS asks this on every CONNECT and must not load it (~10 MiB)."""
    return bool(listener.use_identity_as_username or listener.use_subject_as_username
                or listener.cert_identity_as_username)


class ListenerConfig(_Scoped):
    """One listener: its socket, TLS and limit options, and the security that applies."""

    _scope = opts.LISTENER

    def __init__(self, **values):
        super().__init__()
        self.port = 1883
        self.bind_address: str | None = None
        self.path: str | None = None          # Unix socket path (port 0)
        self.origin: tuple[str, int] = ("", 0)  # the `listener` line
        self.security: SecurityConfig = SecurityConfig()  # the parser shares the global one
        self._apply(values)

    @property
    def tls_enabled(self) -> bool:
        """TLS is on with certfile and keyfile, or with psk_hint (Mosquitto's rule)."""
        return bool((self.certfile and self.keyfile) or self.psk_hint)

    @property
    def key(self) -> tuple:
        """What identifies a listener across reloads: port, address, Unix socket path."""
        return (self.port, self.bind_address, self.path)

    @property
    def name(self) -> str:
        """How log lines name the listener: "1883", "8883 on 127.0.0.1", "0 on /run/m.sock"."""
        if self.path:
            return f"{self.port} on {self.path}"
        if self.bind_address:
            return f"{self.port} on {self.bind_address}"
        return str(self.port)


@dataclass(slots=True, frozen=True)
class BridgeTopic:
    """A parsed bridge `topic` line."""

    pattern: str
    direction: str = "out"          # "out" | "in" | "both"
    qos: int = 0
    local_prefix: str = ""
    remote_prefix: str = ""

    @property
    def local_topic(self) -> str:
        return self.local_prefix + self.pattern

    @property
    def remote_topic(self) -> str:
        return self.remote_prefix + self.pattern


class BridgeConfig(_Scoped):
    """One `connection` and its bridge options."""

    _scope = opts.BRIDGE

    def __init__(self, **values):
        super().__init__()
        self.name = ""
        self.address: list[tuple[str, int]] = []
        self.topic: list[BridgeTopic] = []
        self.restart_timeout: tuple[int, int | None] = (5, 30)  # (base, cap); cap None = fixed
        self.origin: tuple[str, int] = ("", 0)
        self._apply(values)

    @property
    def topics(self) -> list[BridgeTopic]:
        return self.topic

    @property
    def addresses(self) -> list[tuple[str, int]]:
        return self.address

    @property
    def tls_enabled(self) -> bool:
        return bool(self.bridge_cafile or self.bridge_capath or self.bridge_psk)


class Config(_Scoped):
    """The whole configuration: global options, listeners, bridges, global security."""

    _scope = opts.GLOBAL

    def __init__(self, **values):
        super().__init__()
        self.listeners: list[ListenerConfig] = []
        self.bridges: list[BridgeConfig] = []
        self.local_only = True
        self.security = SecurityConfig()
        self.files: list[str] = []
        self.log_dest: set[str] = {"stderr"}
        self.log_type: set[str] = set(opts.DEFAULT_LOG_TYPES)
        self.log_file: str | None = None       # the path of `log_dest file PATH`
        self.persistent_client_expiration: int | None = None  # seconds
        self.cluster_url: list[str] = []         # `cluster_url` lines, in order
        self.cluster_name = "midge"
        self.cluster_node_id: str | None = None
        self.warnings: list[str] = []           # non-fatal findings, `file:line: option: ...`
        self._apply(values)
