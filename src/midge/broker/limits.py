"""A snapshot of the configuration values the broker core reads on its hot path.

Reading `config.max_inflight_messages` through a possibly deep object on every
message costs an attribute chain; the snapshot is a flat slotted object rebuilt
on start and on reload. `getattr` defaults keep the core usable with a partial
config object (tests, early integration).
"""

from __future__ import annotations

from midge.config.model import uses_tls_username

UNLIMITED_INFLIGHT = 65535


def _get(config, name, default):
    value = getattr(config, name, default)
    return default if value is None else value


class Limits:
    __slots__ = (
        "max_inflight_messages", "max_inflight_bytes", "max_queued_messages",
        "max_queued_bytes", "queue_qos0_messages", "upgrade_outgoing_qos",
        "message_size_limit", "max_packet_size", "max_keepalive", "retain_available",
        "persistent_client_expiration", "sys_interval", "connection_messages",
        "allow_duplicate_messages", "clientid_prefixes", "check_retain_source",
    )

    def __init__(self, config):
        inflight = int(_get(config, "max_inflight_messages", 20))
        # 0 and 65535 both mean "no limit" in Mosquitto.
        self.max_inflight_messages = UNLIMITED_INFLIGHT if inflight in (0, UNLIMITED_INFLIGHT) else inflight
        self.max_inflight_bytes = int(_get(config, "max_inflight_bytes", 0))
        self.max_queued_messages = int(_get(config, "max_queued_messages", 1000))
        self.max_queued_bytes = int(_get(config, "max_queued_bytes", 0))
        self.queue_qos0_messages = bool(_get(config, "queue_qos0_messages", False))
        self.upgrade_outgoing_qos = bool(_get(config, "upgrade_outgoing_qos", False))
        self.message_size_limit = int(_get(config, "message_size_limit", 0))
        self.max_packet_size = int(_get(config, "max_packet_size", 0))
        self.max_keepalive = int(_get(config, "max_keepalive", 0))
        self.retain_available = bool(_get(config, "retain_available", True))
        expiration = getattr(config, "persistent_client_expiration", None)
        self.persistent_client_expiration = float(expiration) if expiration else None
        self.sys_interval = int(_get(config, "sys_interval", 10))
        self.connection_messages = bool(_get(config, "connection_messages", True))
        self.allow_duplicate_messages = bool(_get(config, "allow_duplicate_messages", False))
        self.clientid_prefixes = getattr(config, "clientid_prefixes", None) or None
        self.check_retain_source = bool(_get(config, "check_retain_source", False))


def listener_value(listener, name, default):
    """A listener option, or its default when there is no listener object (tests)."""
    if listener is None:
        return default
    value = getattr(listener, name, default)
    return default if value is None else value


def security_value(listener, config, name, default):
    """A per-listener-settings security option: the listener's, else the global one."""
    security = getattr(listener, "security", None) if listener is not None else None
    if security is None:
        security = getattr(config, "security", None)
    if security is None:
        return default
    value = getattr(security, name, default)
    return default if value is None else value


class ListenerLimits:
    """What CONNECT and a new Client read from their listener, looked up once per
    listener instead of with several getattr chains on every connect
    (`Broker.listener_limits`)."""

    __slots__ = ("tls_username", "cert_identity_as_clientid", "use_username_as_clientid",
                 "mount_point", "max_qos", "max_topic_alias")

    def __init__(self, listener):
        self.tls_username = uses_tls_username(listener)
        self.cert_identity_as_clientid = bool(listener_value(listener, "cert_identity_as_clientid", None))
        self.use_username_as_clientid = bool(listener_value(listener, "use_username_as_clientid", False))
        self.mount_point = listener_value(listener, "mount_point", "")
        self.max_qos = listener_value(listener, "max_qos", 2)
        self.max_topic_alias = listener_value(listener, "max_topic_alias", 10)
