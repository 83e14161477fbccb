"""A snapshot of the configuration values the broker core reads on its hot path.

Reading `config.max_inflight_messages` through a possibly deep object on every
message costs an attribute chain; the snapshot is a flat slotted object rebuilt
on start and on reload. Every value comes from the real `Config` (whose
attributes start at the option table's defaults): no default is written here.
"""

from __future__ import annotations

from midge.config.model import Config, ListenerConfig, uses_tls_username

UNLIMITED_INFLIGHT = 65535


class Limits:
    __slots__ = (
        "max_inflight_messages", "max_inflight_bytes", "max_queued_messages",
        "max_queued_bytes", "queue_qos0_messages", "upgrade_outgoing_qos",
        "message_size_limit", "max_packet_size", "max_keepalive", "retain_available",
        "persistent_client_expiration", "sys_interval", "connection_messages",
        "allow_duplicate_messages", "clientid_prefixes", "check_retain_source",
    )

    def __init__(self, config: Config):
        inflight = config.max_inflight_messages
        # 0 and 65535 both mean "no limit" in Mosquitto.
        self.max_inflight_messages = UNLIMITED_INFLIGHT if inflight in (0, UNLIMITED_INFLIGHT) else inflight
        self.max_inflight_bytes = config.max_inflight_bytes
        self.max_queued_messages = config.max_queued_messages
        self.max_queued_bytes = config.max_queued_bytes
        self.queue_qos0_messages = config.queue_qos0_messages
        self.upgrade_outgoing_qos = config.upgrade_outgoing_qos
        self.message_size_limit = config.message_size_limit
        self.max_packet_size = config.max_packet_size
        self.max_keepalive = config.max_keepalive
        self.retain_available = config.retain_available
        expiration = config.persistent_client_expiration
        self.persistent_client_expiration = float(expiration) if expiration else None
        self.sys_interval = config.sys_interval
        self.connection_messages = config.connection_messages
        self.allow_duplicate_messages = config.allow_duplicate_messages
        self.clientid_prefixes = config.clientid_prefixes or None
        self.check_retain_source = config.check_retain_source


class ListenerLimits:
    """What CONNECT and a new Client read from their listener, looked up once per
    listener instead of with several attribute chains on every connect
    (`Broker.listener_limits`). The security options are the listener's own with
    `per_listener_settings true`, else the global ones (the parser shares them)."""

    __slots__ = ("tls_username", "cert_identity_as_clientid", "use_username_as_clientid",
                 "mount_point", "max_qos", "max_topic_alias", "allow_zero_length_clientid",
                 "auto_id_prefix")

    def __init__(self, listener: ListenerConfig):
        self.tls_username = uses_tls_username(listener)
        self.cert_identity_as_clientid = bool(listener.cert_identity_as_clientid)
        self.use_username_as_clientid = listener.use_username_as_clientid
        self.mount_point = listener.mount_point or ""
        self.max_qos = listener.max_qos
        self.max_topic_alias = listener.max_topic_alias
        self.allow_zero_length_clientid = listener.security.allow_zero_length_clientid
        self.auto_id_prefix = listener.security.auto_id_prefix
