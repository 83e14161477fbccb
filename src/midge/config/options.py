"""The one table of every option midge reads from mosquitto.conf.

The parser, `midge check` and `docs/configuration.md` are all driven by `OPTIONS`, so
the three cannot drift apart (Mosquitto keeps its parser in conf.c and its manual in a
separate XML file, and the two disagree in places; see the DOC≠CODE notes in `help`).

Each `Option` says where the value goes (`scope`), how it is parsed (`kind`), its
default (Mosquitto 2.0's code default), whether SIGHUP applies it (`reload`), and
whether midge implements it yet. `NOT_IMPLEMENTED` and `NOT_IMPLEMENTED_VALUES` are the
single place to flip when a feature lands.
"""

from __future__ import annotations

from dataclasses import dataclass

# Scopes: where the value of an option is stored.
GLOBAL = "global"        # Config
LISTENER = "listener"    # the current listener (or the default listener)
SECURITY = "security"    # global, or the current listener's with per_listener_settings true
PLUGIN = "plugin"        # the most recent `plugin` of the current security scope
BRIDGE = "bridge"        # the current `connection`

# Kinds: how the value is parsed. "special" options have their own handler in parser.py.
BOOL, INT, FLOAT, STRING, PATH, CHOICE, SPECIAL = "bool", "int", "float", "string", "path", "choice", "special"

# Reload behaviour, for the docs and for whoever implements SIGHUP.
RELOAD_YES = "yes"        # SIGHUP applies the new value
RELOAD_NO = "no"          # read at start only (restart to change)
RELOAD_FILES = "files"    # SIGHUP re-reads the file it names (and a new path applies)


@dataclass(frozen=True, slots=True)
class Option:
    name: str
    kind: str
    scope: str
    default: object = None
    help: str = ""
    aliases: tuple[str, ...] = ()
    choices: tuple[str, ...] = ()
    minimum: float | None = None
    maximum: float | None = None
    reload: str = RELOAD_NO
    midge: bool = False          # a midge extension, not a Mosquitto option
    differs: str = ""            # a Mosquitto option midge reads differently: how (midge check)
    repeatable: bool = False     # may appear several times in one scope
    value_hint: str = ""         # for the docs: what the value looks like

    @property
    def attr(self) -> str:
        """The Python attribute name (`ciphers_tls1.3` -> `ciphers_tls1_3`)."""
        return attr_name(self.name)

    @property
    def implemented(self) -> bool:
        return self.name not in NOT_IMPLEMENTED


def attr_name(name: str) -> str:
    return name.replace(".", "_")


# Options of features midge has not built yet: loading a config that uses one fails with
# "OPTION: not supported yet by midge" (never silently ignored). Remove a name when the
# feature lands.
NOT_IMPLEMENTED: dict[str, str] = {
    "memory_limit": "not supported yet by midge (Python has no per-allocation memory accounting)",
    "tls_engine": "not supported by midge: Python's ssl module cannot use OpenSSL ENGINEs",
    "tls_engine_kpass_sha1": "not supported by midge: Python's ssl module cannot use OpenSSL ENGINEs",
}

# Values of Mosquitto options that only midge accepts (Mosquitto 2.0 refuses the line):
# (option, value) -> why. `midge check` marks such lines; `plugin` is handled in
# `portability()` (every Python plugin is midge-only).
MIDGE_ONLY_VALUES: dict[tuple[str, str], str] = {
    ("protocol", "metrics"): "protocol metrics is midge's Prometheus listener; Mosquitto knows "
                             "only mqtt and websockets",
}

# Values that select a feature midge has not built: (option, value) -> message.
NOT_IMPLEMENTED_VALUES: dict[tuple[str, str], str] = {
    ("bridge_require_ocsp", "true"): "true: not supported yet by midge (Python's ssl module cannot "
                                     "request a stapled OCSP response from the remote broker)",
    ("log_dest", "dlt"): "dlt: not supported by midge (no DLT library)",
    ("tls_keyform", "engine"): "engine: not supported by midge: Python's ssl module cannot use "
                               "OpenSSL ENGINEs; use a PEM key",
    ("plugin", ".so"): "C plugins (.so) are not supported by midge: give a Python module name "
                       "or a .py file",
}

#: The parts of a client certificate cert_identity_as_* can name (the one list:
#: security/identity.py's TlsInfo.identity implements each).
CERT_IDENTITIES = ("cn", "subject", "san_dns", "san_email", "san_uri", "san_ip", "sha256")
TLS_VERSIONS = ("tlsv1.3", "tlsv1.2", "tlsv1.1")
LOG_DESTS = ("stdout", "stderr", "syslog", "topic", "file", "dlt", "none")
LOG_TYPES = ("debug", "error", "warning", "notice", "information", "subscribe",
             "unsubscribe", "websockets", "internal", "none", "all")
DEFAULT_LOG_TYPES = frozenset({"error", "warning", "notice", "information"})
MQTT_MAX_PAYLOAD = 268435455


def _o(name, kind, scope, default=None, help="", **kw) -> Option:
    return Option(name, kind, scope, default, help, **kw)


OPTIONS: list[Option] = [
    # ---- general / global (reference 1.5.1) ----
    _o("allow_duplicate_messages", BOOL, GLOBAL, False, reload=RELOAD_YES,
       help="Deprecated. When false, a client with overlapping subscriptions gets a message "
            "once (non-v5 clients, non-retained). DOC≠CODE: Mosquitto's man page says the "
            "default is true; its code (and midge) use false."),
    _o("autosave_interval", INT, GLOBAL, 1800, reload=RELOAD_YES, minimum=0,
       help="Seconds between persistence checkpoints (a change count with autosave_on_changes); "
            "0 = only at shutdown and SIGUSR1. midge writes every change as it happens (SQLite "
            "WAL), so unlike Mosquitto this does not bound what a crash loses; it only sets how "
            "often the WAL is folded into the main file. See docs/persistence.md.",
       differs='midge writes every change as it happens (SQLite WAL); this only sets when the WAL is folded into the file, it does not bound what a crash loses'),
    _o("autosave_on_changes", BOOL, GLOBAL, False, reload=RELOAD_YES,
       help="Treat autosave_interval as a number of changes."),
    _o("check_retain_source", BOOL, GLOBAL, False, reload=RELOAD_YES,
       help="Before sending a retained message, check its publisher may still write it. "
            "Counts as a security option for the per_listener_settings ordering rule. "
            "DOC≠CODE: the man page says the default is true; the code uses false."),
    _o("clientid_prefixes", STRING, GLOBAL, None, reload=RELOAD_YES,
       help="Deprecated. Refuse clients whose ID does not start with this prefix "
            "(CONNACK not authorised)."),
    _o("connection_messages", BOOL, GLOBAL, True, reload=RELOAD_YES,
       help="Log client connects and disconnects."),
    _o("include_dir", SPECIAL, GLOBAL, None, reload=RELOAD_YES, value_hint="DIR",
       repeatable=True,
       help="Read every *.conf file of DIR, in sorted order. Only in the main config file."),
    _o("per_listener_settings", BOOL, GLOBAL, False, reload=RELOAD_NO,
       help="When true, the security options (password_file, acl_file, psk_file, "
            "allow_anonymous, allow_zero_length_clientid, auto_id_prefix, plugin) apply to "
            "the listener they follow. Must come before any security option."),
    _o("pid_file", PATH, GLOBAL, None, help="Write the process ID to this file."),
    _o("retry_interval", SPECIAL, GLOBAL, None,
       help="Obsolete; accepted with a warning and ignored (as Mosquitto does)."),
    _o("sys_interval", INT, GLOBAL, 10, reload=RELOAD_YES, minimum=0, maximum=65535,
       help="Seconds between $SYS updates; 0 turns $SYS off."),
    _o("upgrade_outgoing_qos", BOOL, GLOBAL, False, reload=RELOAD_YES,
       help="Non-standard: deliver at the subscription's QoS instead of the message's."),
    _o("user", STRING, GLOBAL, "mosquitto",
       help="Started as root, switch to this user (and its groups) once the listeners are "
            "bound. When mosquitto does not exist: nobody, with a warning; another missing "
            "user is an error; root keeps root, with a warning. Unlike Mosquitto, midge reads "
            "keys and password files as root (a root keeper process re-reads them for SIGHUP "
            "and the TLS file watcher). See docs/operations.md.",
       differs='midge reads keys, certificates and password/ACL/PSK files as root before switching (Mosquitto 2.0 reads them as `user`, so they must be readable by it)'),
    _o("set_tcp_nodelay", BOOL, GLOBAL, False, reload=RELOAD_YES, help="Set TCP_NODELAY on client sockets.",
       differs='SIGHUP applies the new value (Mosquitto 2.0 parses it on reload but keeps the old one)'),
    _o("retain_available", BOOL, GLOBAL, True,
       reload=RELOAD_YES, help="When false, retained PUBLISHes are refused and v5 clients are told so.",
       differs='SIGHUP applies the new value (Mosquitto 2.0 parses it on reload but keeps the old one)'),
    _o("queue_qos0_messages", BOOL, GLOBAL, False, reload=RELOAD_YES,
       help="Queue QoS 0 messages for disconnected persistent sessions."),
    # ---- persistence (1.5.6) ----
    _o("persistence", BOOL, GLOBAL, False, reload=RELOAD_NO, aliases=("retained_persistence",),
       help="Save persistent sessions (subscriptions, queued and in-flight QoS 1/2 messages) and "
            "retained messages to an SQLite file, written as they change. Switching it on or off "
            "needs a restart.",
       differs="midge's persistence file is SQLite: it cannot read a Mosquitto database nor write one Mosquitto can read"),
    _o("persistence_file", PATH, GLOBAL, "mosquitto.db", reload=RELOAD_NO,
       help="Persistence file name. midge's file is SQLite; an existing Mosquitto database "
            "there is refused, never overwritten. Changes need a restart.",
       differs="midge's file is SQLite, not Mosquitto's format; an existing Mosquitto database is refused, never overwritten"),
    _o("persistence_location", PATH, GLOBAL, None, reload=RELOAD_NO,
       help="Directory of the persistence file."),
    _o("persistent_client_expiration", SPECIAL, GLOBAL, None, reload=RELOAD_YES,
       value_hint="N(h|d|w|m|y)",
       help="Expire disconnected persistent sessions after this long (h hours, d days, "
            "w weeks, m months of 30 days, y years of 365 days). Stored in seconds."),
    # ---- logging (1.5.7) ----
    _o("log_dest", SPECIAL, GLOBAL, frozenset({"stderr"}), reload=RELOAD_YES, repeatable=True,
       value_hint="stdout|stderr|syslog|topic|file PATH|none",
       help="Where log lines go. Repeat to add destinations; none clears earlier ones. "
            "Only one file. topic publishes to $SYS/broker/log/..."),
    _o("log_type", SPECIAL, GLOBAL, DEFAULT_LOG_TYPES, reload=RELOAD_YES, repeatable=True,
       value_hint="|".join(LOG_TYPES),
       help="Which messages to log. Repeat to add types; all sets every type, none clears. "
            "-v forces all."),
    _o("log_facility", INT, GLOBAL, None, reload=RELOAD_YES, minimum=0, maximum=7,
       help="Syslog facility local0..local7 (default: daemon)."),
    _o("log_timestamp", BOOL, GLOBAL, True, reload=RELOAD_YES,
       help="Prefix each log line with a timestamp."),
    _o("log_timestamp_format", STRING, GLOBAL, None, reload=RELOAD_YES,
       help="strftime format of the timestamp (default: Unix seconds)."),
    _o("websockets_log_level", INT, GLOBAL, 0, reload=RELOAD_YES,
       help="libwebsockets' log level. midge has no libwebsockets; accepted and ignored "
            "(use log_type websockets).",
       differs='accepted and ignored: midge has no libwebsockets'),
    _o("websockets_headers_size", INT, GLOBAL, 0, minimum=0, maximum=65535,
       help="Largest WebSocket handshake header block; 0 means the default."),
    # ---- limits (1.5.9) ----
    _o("max_inflight_messages", INT, GLOBAL, 20, minimum=0, maximum=65535,
       reload=RELOAD_YES, help="Outgoing QoS 1/2 messages in flight per client; 0 or 65535 means no limit.",
       differs='SIGHUP applies the new value (Mosquitto 2.0 parses it on reload but keeps the old one)'),
    _o("max_inflight_bytes", INT, GLOBAL, 0, minimum=0,
       reload=RELOAD_YES, help="Byte limit on outgoing in-flight messages per client; 0 means no limit.",
       differs='SIGHUP applies the new value (Mosquitto 2.0 parses it on reload but keeps the old one)'),
    _o("max_queued_messages", INT, GLOBAL, 1000, minimum=0,
       reload=RELOAD_YES, help="Messages queued per client beyond those in flight; 0 means no limit.",
       differs='SIGHUP applies the new value (Mosquitto 2.0 parses it on reload but keeps the old one)'),
    _o("max_queued_bytes", INT, GLOBAL, 0, minimum=0,
       reload=RELOAD_YES, help="Byte limit on each client's queue; 0 means no limit.",
       differs='SIGHUP applies the new value (Mosquitto 2.0 parses it on reload but keeps the old one)'),
    _o("message_size_limit", INT, GLOBAL, 0, reload=RELOAD_YES, minimum=0,
       maximum=MQTT_MAX_PAYLOAD,
       help="Largest payload accepted; larger messages are dropped. 0 means no limit."),
    _o("max_packet_size", INT, GLOBAL, 0, minimum=20,
       reload=RELOAD_YES, help="Largest MQTT packet accepted (at least 20); advertised to v5 clients. "
            "Unset means no limit.",
       differs='SIGHUP applies the new value (Mosquitto 2.0 parses it on reload but keeps the old one)'),
    _o("max_keepalive", INT, GLOBAL, 0, minimum=10, maximum=65535,
       reload=RELOAD_YES, help="Largest keepalive a client may ask for, 10 to 65535, or 0 for no limit. "
            "DOC≠CODE: the man page says the default is 65535; Mosquitto 2.0.16+ code (and "
            "midge) use 0. Mosquitto 2.0.11 refuses 0.",
       differs='0 means no limit (as Mosquitto 2.0.16+; 2.0.11 refuses 0); SIGHUP applies a new value'),
    _o("memory_limit", INT, GLOBAL, 0, minimum=0, help="Byte limit on the broker's memory."),
    # ---- midge's own globals ----
    _o("tls_watch_interval", FLOAT, GLOBAL, 5.0, midge=True, reload=RELOAD_YES, minimum=0,
       help="Seconds between checks of every listener's TLS files (certfile, keyfile, "
            "cafile, crlfile); a changed file reloads that listener's TLS context. 0 = off."),
    _o("auth_fail_delay", FLOAT, GLOBAL, 0.5, midge=True, reload=RELOAD_YES, minimum=0,
       help="Seconds to delay the answer after a failed login from an address; doubles on "
            "each further failure (brute-force slow-down)."),
    _o("auth_fail_delay_max", FLOAT, GLOBAL, 8.0, midge=True, reload=RELOAD_YES, minimum=0,
       help="Upper bound of the failed-login delay, in seconds."),
    # ---- midge's cluster (docs/cluster.md) ----
    _o("cluster_url", SPECIAL, GLOBAL, None, midge=True, repeatable=True,
       value_hint="nats://[USER:PASSWORD@]HOST:PORT | tls://HOST:PORT",
       help="A NATS server this node joins its cluster through; repeat for a NATS cluster's "
            "seeds. Every midge node (and worker) on the same NATS with the same cluster_name "
            "acts as one broker. Unset with workers above 1: midge starts its own nats-server "
            "on 127.0.0.1. See docs/cluster.md."),
    _o("cluster_name", SPECIAL, GLOBAL, "midge", midge=True, value_hint="NAME",
       help="Namespace of every NATS subject and JetStream object of this cluster (letters, "
            "digits, - and _), so two midge clusters can share one NATS."),
    _o("cluster_node_id", SPECIAL, GLOBAL, None, midge=True, value_hint="ID",
       help="This node's name in the cluster (letters, digits, . - _). Default: the host "
            "name and a suffix derived from the first listener. Two live nodes with one id: "
            "the second refuses to start."),
    _o("cluster_cafile", PATH, GLOBAL, None, midge=True,
       help="CA certificates trusted for the NATS server's certificate (turns TLS on)."),
    _o("cluster_certfile", PATH, GLOBAL, None, midge=True,
       help="Client certificate presented to NATS (mutual TLS); needs cluster_keyfile."),
    _o("cluster_keyfile", PATH, GLOBAL, None, midge=True,
       help="Private key of cluster_certfile."),
    _o("cluster_credentials", PATH, GLOBAL, None, midge=True,
       help="A NATS .creds file (JWT and NKey seed) to authenticate to NATS."),
    _o("workers", INT, GLOBAL, 1, midge=True, minimum=1, maximum=256,
       help="Worker processes of `midge broker`: they share every listener (SO_REUSEPORT) "
            "and route between each other through NATS; a worker that dies is restarted. "
            "Above 1 without cluster_url, midge runs its own nats-server (127.0.0.1, a free "
            "port). See docs/cluster.md."),

    # ---- listener-scoped (1.5.2) ----
    _o("listener", SPECIAL, LISTENER, None, value_hint="PORT [BIND_ADDRESS|UNIX_PATH]",
       repeatable=True,
       help="Start a listener. Port 1-65535, or 0 with a Unix socket path. The options "
            "after it apply to it. Defining one turns local-only mode off. In config given to "
            "the Python API (midge.Broker), `listener auto [BIND_ADDRESS]` binds a free port "
            "(docs/embedding.md); config files refuse it, as Mosquitto does."),
    _o("port", SPECIAL, LISTENER, 1883,
       help="Deprecated. Port of the default listener; turns local-only mode off."),
    _o("bind_address", STRING, LISTENER, None,
       help="Deprecated. Bind address of the default listener; turns local-only mode off."),
    _o("bind_interface", STRING, LISTENER, None,
       help="Bind to this network interface (SO_BINDTODEVICE, Linux)."),
    _o("protocol", CHOICE, LISTENER, "mqtt", choices=("mqtt", "websockets", "metrics"),
       help="mqtt, websockets (MQTT over WebSocket), or metrics (midge only: Prometheus "
            "`GET /metrics` over HTTP, or HTTPS with the listener's TLS options; see "
            "docs/operations.md)."),
    _o("socket_domain", CHOICE, LISTENER, None, choices=("ipv4", "ipv6"),
       help="Listen on IPv4 only or IPv6 only (default both)."),
    _o("mount_point", STRING, LISTENER, None, reload=RELOAD_YES,
       help="Topic prefix added to every topic of this listener's clients. No wildcards. "
            "Needs a listener line before it."),
    _o("max_connections", INT, LISTENER, -1,
       reload=RELOAD_YES, help="Most clients connected to this listener at once; -1 (any negative) means no limit.",
       differs='kept on SIGHUP (Mosquitto 2.0 resets it to -1)'),
    _o("max_qos", INT, LISTENER, 2, aliases=("maximum_qos",), minimum=0, maximum=2,
       reload=RELOAD_YES, help="Highest QoS clients of this listener may use.",
       differs='kept on SIGHUP (Mosquitto 2.0 resets it to 2)'),
    _o("max_topic_alias", INT, LISTENER, 10, minimum=0, maximum=65535,
       reload=RELOAD_YES, help="Largest v5 topic alias a client may use; 0 disables aliases.",
       differs='kept on SIGHUP (Mosquitto 2.0 resets it to 10)'),
    _o("use_username_as_clientid", BOOL, LISTENER, False, reload=RELOAD_YES,
       help="Replace each client's ID with its username."),
    _o("http_dir", PATH, LISTENER, None, reload=RELOAD_YES,
       help="Serve static files from this directory on a websockets listener."),
    # ---- TLS (1.5.3) ----
    _o("certfile", PATH, LISTENER, None, reload=RELOAD_FILES,
       help="Server certificate chain (PEM). TLS is on when certfile and keyfile are both set.",
       differs='also reloaded when the file changes (tls_watch_interval), not only on SIGHUP'),
    _o("keyfile", PATH, LISTENER, None, reload=RELOAD_FILES, help="Server private key (PEM).",
       differs='also reloaded when the file changes (tls_watch_interval), not only on SIGHUP'),
    _o("cafile", PATH, LISTENER, None, reload=RELOAD_FILES,
       help="CA certificates trusted for client certificates.",
       differs='also reloaded when the file changes (tls_watch_interval), not only on SIGHUP'),
    _o("capath", PATH, LISTENER, None, reload=RELOAD_FILES,
       help="Directory of hashed CA certificates (openssl rehash)."),
    _o("require_certificate", BOOL, LISTENER, False, reload=RELOAD_YES,
       help="Require a valid client certificate. When false the server does not ask for one."),
    _o("crlfile", PATH, LISTENER, None, reload=RELOAD_FILES,
       help="Certificate revocation list(s) (PEM) checked for client certificates.",
       differs='also reloaded when the file changes (tls_watch_interval); may be a directory of CRLs (midge only); an expired CRL is refused at load'),
    _o("dhparamfile", PATH, LISTENER, None, reload=RELOAD_YES, help="DH parameters (PEM)."),
    _o("ciphers", STRING, LISTENER, None, reload=RELOAD_YES,
       help="OpenSSL cipher list for TLS 1.2 and below (and PSK suites)."),
    _o("ciphers_tls1.3", STRING, LISTENER, None, reload=RELOAD_YES, help="TLS 1.3 cipher suites."),
    _o("tls_version", CHOICE, LISTENER, None, reload=RELOAD_YES, choices=TLS_VERSIONS,
       help="Minimum TLS version: tlsv1.3, tlsv1.2 or tlsv1.1 (unset: TLS 1.2 and 1.3)."),
    _o("tls_keyform", CHOICE, LISTENER, "pem", choices=("pem", "engine"),
       help="Key format: pem (engine is not supported by midge)."),
    _o("tls_engine", STRING, LISTENER, None, help="OpenSSL ENGINE for the private key."),
    _o("tls_engine_kpass_sha1", STRING, LISTENER, None,
       help="SHA-1 of the engine key password (40 hex characters)."),
    _o("use_identity_as_username", BOOL, LISTENER, False, reload=RELOAD_YES,
       help="Username = client certificate CN (or PSK identity); skips password checks."),
    _o("use_subject_as_username", BOOL, LISTENER, False, reload=RELOAD_YES,
       help="Username = the client certificate's full subject (RFC 2253)."),
    # ---- TLS-PSK (1.5.4) ----
    _o("psk_hint", STRING, LISTENER, None, reload=RELOAD_YES,
       help="Turn TLS-PSK on for this listener and send this identity hint.",
       differs='midge allows TLS-PSK over TLS 1.3 unless psk_tls13 false (Mosquitto 2.0.12+ turns TLS 1.3 off on PSK listeners)'),
    # ---- midge's own, listener-scoped ----
    _o("cert_identity_as_username", CHOICE, LISTENER, None, reload=RELOAD_YES, choices=CERT_IDENTITIES, midge=True,
       help="Username = this part of the client certificate (cn, subject, san_dns, "
            "san_email, san_uri, san_ip, sha256 fingerprint)."),
    _o("cert_identity_as_clientid", CHOICE, LISTENER, None, reload=RELOAD_YES, choices=CERT_IDENTITIES, midge=True,
       help="Client ID = this part of the client certificate (same values)."),
    _o("crl_check", CHOICE, LISTENER, "leaf", reload=RELOAD_YES, choices=("leaf", "chain"), midge=True,
       help="Check CRLs for the client certificate only (leaf, Mosquitto's behaviour) or "
            "for the whole chain."),
    _o("require_ocsp", BOOL, LISTENER, False, reload=RELOAD_YES, midge=True,
       help="Check each client certificate with its OCSP responder; refuse revoked ones."),
    _o("ocsp_responder", STRING, LISTENER, None, reload=RELOAD_YES, midge=True,
       help="OCSP responder URL (default: the certificate's AIA extension)."),
    _o("ocsp_timeout", FLOAT, LISTENER, 5.0, reload=RELOAD_YES, midge=True, minimum=0,
       help="Seconds to wait for the OCSP responder."),
    _o("ocsp_cache_seconds", INT, LISTENER, 300, reload=RELOAD_YES, midge=True, minimum=0,
       help="How long an OCSP answer is reused."),
    _o("ocsp_soft_fail", BOOL, LISTENER, False, reload=RELOAD_YES, midge=True,
       help="Accept the client when the OCSP responder cannot be reached."),
    _o("disconnect_on_revocation", BOOL, LISTENER, False, reload=RELOAD_YES, midge=True,
       help="Disconnect connected clients whose certificate a reloaded CRL revokes."),
    _o("psk_tls13", BOOL, LISTENER, True, reload=RELOAD_YES, midge=True,
       help="Allow TLS-PSK over TLS 1.3 (false: TLS 1.2 only, Mosquitto 2.0.12+'s behaviour)."),
    _o("keyfile_password_file", PATH, LISTENER, None, midge=True, reload=RELOAD_FILES,
       help="File whose first line is the password of an encrypted keyfile."),
    _o("tls_handshake_timeout", FLOAT, LISTENER, 10.0, reload=RELOAD_YES, midge=True, minimum=0,
       help="Seconds a client has to finish the TLS handshake."),

    # ---- authentication and authorisation (1.5.5), [PLS] ----
    _o("allow_anonymous", BOOL, SECURITY, None, reload=RELOAD_YES,
       help="Let clients connect without a username. Default: false, or true in local-only "
            "mode (no listener configured)."),
    _o("password_file", PATH, SECURITY, None, reload=RELOAD_YES,
       help="Password file (mosquitto_passwd / midge passwd format)."),
    _o("acl_file", PATH, SECURITY, None, reload=RELOAD_YES, help="Access control list file."),
    _o("psk_file", PATH, SECURITY, None, reload=RELOAD_YES,
       help="TLS-PSK keys, one identity:hexkey per line."),
    _o("allow_zero_length_clientid", BOOL, SECURITY, True, reload=RELOAD_YES,
       help="Let clients connect with an empty client ID (the broker makes one up)."),
    _o("auto_id_prefix", STRING, SECURITY, "auto-", reload=RELOAD_YES,
       help="Prefix of generated client IDs."),
    _o("plugin", SPECIAL, SECURITY, None, aliases=("auth_plugin",), repeatable=True,
       value_hint="MODULE|FILE.py",
       help="Load an authentication/authorisation plugin: a Python module name or a .py "
            "file (Mosquitto's C .so plugins are not supported)."),
    _o("plugin_opt_*", SPECIAL, PLUGIN, None, aliases=("auth_opt_*",), repeatable=True,
       value_hint="VALUE",
       help="plugin_opt_NAME VALUE: an option for the most recent plugin."),
    _o("auth_plugin_deny_special_chars", BOOL, PLUGIN, True,
       help="Deny access when the username or client ID contains + or # (for the most "
            "recent plugin)."),

    # ---- bridges (1.5.10) ----
    _o("connection", SPECIAL, BRIDGE, None, value_hint="NAME", repeatable=True,
       help="Start a bridge named NAME; the bridge options after it apply to it."),
    _o("address", SPECIAL, BRIDGE, None, aliases=("addresses",),
       value_hint="HOST[:PORT] [HOST[:PORT]...]", help="Remote broker address(es), port 1883 by default."),
    _o("topic", SPECIAL, BRIDGE, None, repeatable=True,
       value_hint="PATTERN [[[out|in|both] QOS] LOCAL_PREFIX REMOTE_PREFIX]",
       help="A topic to bridge. Repeatable; at least one is required."),
    _o("bridge_attempt_unsubscribe", BOOL, BRIDGE, True,
       help="Unsubscribe on the remote from out-only topics."),
    _o("bridge_bind_address", STRING, BRIDGE, None, help="Local address for the bridge socket."),
    _o("bridge_max_packet_size", INT, BRIDGE, 0, minimum=0,
       help="Largest packet sent to the remote; 0 means no limit."),
    _o("bridge_outgoing_retain", BOOL, BRIDGE, True,
       help="When false, clear the retain flag on outgoing messages."),
    _o("bridge_protocol_version", CHOICE, BRIDGE, "mqttv311",
       choices=("mqttv31", "mqttv311", "mqttv50"), help="MQTT version to the remote."),
    _o("cleansession", BOOL, BRIDGE, False, help="Clean session toward the remote."),
    _o("local_cleansession", BOOL, BRIDGE, None,
       help="Clean session of the local side (default: cleansession)."),
    _o("keepalive_interval", INT, BRIDGE, 60, minimum=5, help="Keepalive toward the remote."),
    _o("idle_timeout", INT, BRIDGE, 60, minimum=1, help="Idle seconds before a lazy bridge stops."),
    _o("threshold", INT, BRIDGE, 10, minimum=1, help="Queued messages that start a lazy bridge."),
    _o("start_type", CHOICE, BRIDGE, "automatic", choices=("automatic", "lazy", "once"),
       help="When the bridge connects."),
    _o("restart_timeout", SPECIAL, BRIDGE, (5, 30), value_hint="SECONDS | BASE CAP",
       help="One number: fixed reconnect delay. Two: jittered backoff from BASE up to CAP."),
    _o("round_robin", BOOL, BRIDGE, False,
       help="Treat all addresses equally instead of preferring the first."),
    _o("try_private", BOOL, BRIDGE, True, help="Tell the remote this is a bridge."),
    _o("notifications", BOOL, BRIDGE, True, help="Publish the bridge's state (1/0)."),
    _o("notifications_local_only", BOOL, BRIDGE, False,
       help="Publish notifications on the local broker only."),
    _o("notification_topic", STRING, BRIDGE, None, help="Topic for notifications."),
    _o("remote_clientid", STRING, BRIDGE, None, aliases=("clientid",),
       help="Client ID on the remote (default HOSTNAME.NAME). DOC≠CODE: the man page "
            "says NAME.HOSTNAME; the code uses HOSTNAME.NAME."),
    _o("local_clientid", STRING, BRIDGE, None,
       help="Client ID of the bridge on the local broker (default local.REMOTE_CLIENTID)."),
    _o("remote_username", STRING, BRIDGE, None, aliases=("username",),
       help="Username on the remote broker."),
    _o("remote_password", STRING, BRIDGE, None, aliases=("password",),
       help="Password on the remote broker."),
    _o("local_username", STRING, BRIDGE, None,
       help="Name of the bridge's local end (log lines, plugins); never checked, as in Mosquitto."),
    _o("local_password", STRING, BRIDGE, None,
       help="Accepted, never checked (as in Mosquitto): the local end is midge's own."),
    # ---- bridge TLS (1.5.11) ----
    _o("bridge_cafile", PATH, BRIDGE, None, help="CA certificates for the remote; turns TLS on."),
    _o("bridge_capath", PATH, BRIDGE, None, help="Directory of CA certificates; turns TLS on."),
    _o("bridge_certfile", PATH, BRIDGE, None, help="Client certificate for the remote."),
    _o("bridge_keyfile", PATH, BRIDGE, None, help="Client key for the remote."),
    _o("bridge_tls_version", CHOICE, BRIDGE, None, choices=TLS_VERSIONS,
       help="Minimum TLS version to the remote (unset: 1.2)."),
    _o("bridge_insecure", BOOL, BRIDGE, False,
       help="Do not check the remote's host name (the chain is still verified)."),
    _o("bridge_alpn", STRING, BRIDGE, None, help="ALPN protocol to offer."),
    _o("bridge_require_ocsp", BOOL, BRIDGE, False,
       help="Require a stapled OCSP response from the remote."),
    _o("bridge_identity", STRING, BRIDGE, None, help="TLS-PSK identity (with bridge_psk)."),
    _o("bridge_psk", STRING, BRIDGE, None, help="TLS-PSK key in hex (with bridge_identity)."),
]

BY_NAME: dict[str, Option] = {opt.name: opt for opt in OPTIONS}
ALIASES: dict[str, str] = {alias: opt.name for opt in OPTIONS for alias in opt.aliases}

# Options whose position matters for `per_listener_settings` (Mosquitto's
# conf__set_cur_security_options callers, plus check_retain_source).
SECURITY_ORDERED = frozenset(
    [opt.name for opt in OPTIONS if opt.scope in (SECURITY, PLUGIN)] + ["check_retain_source"]
)

# Listener options that, written before any `listener` line, make Mosquitto create a
# default listener (src/conf.c: config__parse_args).
DEFAULT_LISTENER_TRIGGERS = frozenset(
    opt.name for opt in OPTIONS if opt.scope == LISTENER and opt.name != "listener"
)


C_PLUGIN_SUFFIXES = (".so", ".dll", ".dylib")
MIDGE_ONLY = "midge-only"
DIFFERS = "differs"


def portability(opt: Option, written: str, value: str) -> tuple[str, str] | None:
    """How a config line fares in Mosquitto 2.0: (MIDGE_ONLY, why Mosquitto would refuse
    it), (DIFFERS, how midge reads it differently), or None when both read it alike."""
    refuse = "Mosquitto 2.0 would refuse this line: "
    if written == "keyform":
        return MIDGE_ONLY, refuse + "keyform is a client flag (the broker option is tls_keyform)"
    if opt.midge:
        return MIDGE_ONLY, refuse + "a midge option (Mosquitto: unknown configuration variable)"
    tokens = value.split()
    reason = MIDGE_ONLY_VALUES.get((opt.name, tokens[0] if tokens else ""))
    if reason:
        return MIDGE_ONLY, refuse + reason
    if opt.name == "plugin" and not value.strip().endswith(C_PLUGIN_SUFFIXES):
        return MIDGE_ONLY, refuse + "a Python plugin; Mosquitto loads only C plugins (.so)"
    if opt.differs:
        return DIFFERS, "Mosquitto 2.0 reads this differently: " + opt.differs
    return None


def lookup(name: str) -> Option | None:
    """The option for a name as written in a config file (aliases and prefixes resolved)."""
    name = ALIASES.get(name, name)
    opt = BY_NAME.get(name)
    if opt is not None:
        return opt
    if name.startswith("plugin_opt_") or name.startswith("auth_opt_"):
        return BY_NAME["plugin_opt_*"]
    return None


def known_names() -> list[str]:
    """Every spelling the parser accepts, for "did you mean" suggestions."""
    return sorted(set(BY_NAME) | set(ALIASES) - {"plugin_opt_*", "auth_opt_*"})


def defaults(scope: str) -> dict[str, object]:
    """Attribute name -> default value for every option of a scope (specials excluded)."""
    return {opt.attr: opt.default for opt in OPTIONS if opt.scope == scope and opt.kind != SPECIAL}
