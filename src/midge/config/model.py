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

    # Typed attributes of the option table (tests/config/test_model_types.py checks that
    # they match it; `_Scoped.__init__` sets them to the table's defaults).
    allow_anonymous: bool | None
    password_file: str | None
    acl_file: str | None
    psk_file: str | None
    allow_zero_length_clientid: bool
    auto_id_prefix: str

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

    # Typed attributes of the option table (tests/config/test_model_types.py checks that
    # they match it; `_Scoped.__init__` sets them to the table's defaults).
    bind_address: str | None
    bind_interface: str | None
    protocol: str
    socket_domain: str | None
    mount_point: str | None
    max_connections: int
    max_qos: int
    max_topic_alias: int
    use_username_as_clientid: bool
    http_dir: str | None
    certfile: str | None
    keyfile: str | None
    cafile: str | None
    capath: str | None
    require_certificate: bool
    crlfile: str | None
    dhparamfile: str | None
    ciphers: str | None
    ciphers_tls1_3: str | None
    tls_version: str | None
    tls_keyform: str
    tls_engine: str | None
    tls_engine_kpass_sha1: str | None
    use_identity_as_username: bool
    use_subject_as_username: bool
    psk_hint: str | None
    cert_identity_as_username: str | None
    cert_identity_as_clientid: str | None
    crl_check: str
    require_ocsp: bool
    ocsp_responder: str | None
    ocsp_timeout: float
    ocsp_cache_seconds: int
    ocsp_soft_fail: bool
    disconnect_on_revocation: bool
    psk_tls13: bool
    keyfile_password_file: str | None
    tls_handshake_timeout: float

    def __init__(self, **values):
        super().__init__()
        self.port = 1883
        self.bind_address: str | None = None
        self.path: str | None = None          # Unix socket path (port 0)
        self.auto_port = False                # `listener auto` (midge.Broker only): port 0 until bound
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

    # Typed attributes of the option table (tests/config/test_model_types.py checks that
    # they match it; `_Scoped.__init__` sets them to the table's defaults).
    bridge_attempt_unsubscribe: bool
    bridge_bind_address: str | None
    bridge_max_packet_size: int
    bridge_outgoing_retain: bool
    bridge_protocol_version: str
    cleansession: bool
    local_cleansession: bool | None
    keepalive_interval: int
    idle_timeout: int
    threshold: int
    start_type: str
    round_robin: bool
    try_private: bool
    notifications: bool
    notifications_local_only: bool
    notification_topic: str | None
    remote_clientid: str | None
    local_clientid: str | None
    remote_username: str | None
    remote_password: str | None
    local_username: str | None
    local_password: str | None
    bridge_cafile: str | None
    bridge_capath: str | None
    bridge_certfile: str | None
    bridge_keyfile: str | None
    bridge_tls_version: str | None
    bridge_insecure: bool
    bridge_alpn: str | None
    bridge_require_ocsp: bool
    bridge_identity: str | None
    bridge_psk: str | None

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

    # Typed attributes of the option table (tests/config/test_model_types.py checks that
    # they match it; `_Scoped.__init__` sets them to the table's defaults).
    allow_duplicate_messages: bool
    autosave_interval: int
    autosave_on_changes: bool
    check_retain_source: bool
    clientid_prefixes: str | None
    connection_messages: bool
    per_listener_settings: bool
    pid_file: str | None
    sys_interval: int
    upgrade_outgoing_qos: bool
    user: str
    set_tcp_nodelay: bool
    retain_available: bool
    queue_qos0_messages: bool
    persistence: bool
    persistence_file: str
    persistence_location: str | None
    log_facility: int | None
    log_timestamp: bool
    log_timestamp_format: str | None
    websockets_log_level: int
    websockets_headers_size: int
    max_inflight_messages: int
    max_inflight_bytes: int
    max_queued_messages: int
    max_queued_bytes: int
    message_size_limit: int
    max_packet_size: int
    max_keepalive: int
    memory_limit: int
    tls_watch_interval: float
    auth_fail_delay: float
    auth_fail_delay_max: float
    cluster_cafile: str | None
    cluster_certfile: str | None
    cluster_keyfile: str | None
    cluster_credentials: str | None
    workers: int

    def __init__(self, **values):
        super().__init__()
        self.listeners: list[ListenerConfig] = []
        self.bridges: list[BridgeConfig] = []
        self.local_only = True
        self.security = SecurityConfig()
        self.files: list[str] = []
        self.include_dirs: list[str] = []        # every include_dir, as written
        self.log_dest: set[str] = {"stderr"}
        self.log_type: set[str] = set(opts.DEFAULT_LOG_TYPES)
        self.log_file: str | None = None       # the path of `log_dest file PATH`
        self.persistent_client_expiration: int | None = None  # seconds
        self.cluster_url: list[str] = []         # `cluster_url` lines, in order
        self.cluster_name = "midge"
        self.cluster_node_id: str | None = None
        self.warnings: list[str] = []           # non-fatal findings, `file:line: option: ...`
        self._apply(values)
