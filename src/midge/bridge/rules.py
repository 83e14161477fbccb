"""What a bridge decides from its configuration alone: no clock, no socket, no loop.

- topic remapping between local and remote names (`remap_outgoing`, `remap_incoming`)
  and the properties that describe one hop only (`relayed_properties`);
- the restart back-off (`Backoff`) and when to go back to the primary address
  (`probes_primary`);
- the packets a bridge starts with: the remote CONNECT (`remote_connect`), the remote
  subscriptions (`remote_requests`), the local CONNECT and subscriptions
  (`local_connect`, `local_subscriptions`);
- the notification topic, the outgoing packet-size limit, the wording of a refusal and
  the client TLS settings.

`server/bridge.py` runs these against real connections and timers; the tests call
them directly.
"""

from __future__ import annotations

import random

from midge.broker.session import NEVER
from midge.client.options import TlsOptions
from midge.client.reasons import connack_string, reason_string
from midge.protocol.constants import ConnackCode, Property, ReasonCode
from midge.protocol.packets import Connect, Subscription, Will
from midge.protocol.topics import topic_matches

PROTOCOL_VERSIONS = {"mqttv31": 3, "mqttv311": 4, "mqttv50": 5}
# Properties that describe one hop; never relayed to the next one.
HOP_PROPERTIES = (Property.TOPIC_ALIAS, Property.SUBSCRIPTION_IDENTIFIER)


def protocol_version(config) -> int:
    """`bridge_protocol_version` as a protocol level (default MQTT 3.1.1)."""
    return PROTOCOL_VERSIONS.get(config.bridge_protocol_version, 4)


def notification_topic(config) -> str:
    """Where the bridge publishes its retained state `1`/`0`."""
    return config.notification_topic or f"$SYS/broker/connection/{config.remote_clientid}/state"


def notifies_remote(config) -> bool:
    """Whether the remote broker hears the state too (Will and explicit publishes)."""
    return bool(config.notifications) and not config.notifications_local_only


# -- Topics --------------------------------------------------------------------------------

def remap_outgoing(topics, topic: str) -> str:
    """Local topic -> remote topic, by the first `out`/`both` line that matches."""
    for entry in topics:
        if entry.direction == "in" or not (entry.local_prefix or entry.remote_prefix):
            continue
        if topic_matches(entry.local_topic, topic):
            if entry.local_prefix and topic.startswith(entry.local_prefix):
                topic = topic[len(entry.local_prefix):]
            return entry.remote_prefix + topic
    return topic


def remap_incoming(topics, topic: str) -> str:
    """Remote topic -> local topic, by the first `in`/`both` line that matches."""
    for entry in topics:
        if entry.direction == "out" or not (entry.local_prefix or entry.remote_prefix):
            continue
        if topic_matches(entry.remote_topic, topic):
            if entry.remote_prefix and topic.startswith(entry.remote_prefix):
                topic = topic[len(entry.remote_prefix):]
            return entry.local_prefix + topic
    return topic


def relayed_properties(properties: dict) -> dict:
    """A message's properties without those that belong to the hop it came over."""
    if not properties:
        return {}
    return {k: v for k, v in properties.items() if k not in HOP_PROPERTIES}


# -- Retrying ------------------------------------------------------------------------------

class Backoff:
    """restart_timeout: a fixed delay, or Mosquitto's "decorrelated jitter" between base and cap."""

    def __init__(self, restart_timeout, rng=random):
        self.base, self.cap = restart_timeout
        self.delay = self.base
        self.rng = rng

    def next(self) -> float:
        """A failed attempt: the next, longer delay (the fixed one when there is no cap)."""
        if self.cap is None:
            return self.base
        upper = max(self.base + 1, self.delay * 3)
        self.delay = min(self.cap, self.rng.randint(self.base, upper))
        return self.delay

    def reset(self) -> None:
        """A connection succeeded: the next loss waits only the base delay."""
        self.delay = self.base


def probes_primary(config, address_index: int) -> bool:
    """`round_robin false` on a backup address: keep checking the first one."""
    return not config.round_robin and address_index != 0


# -- Packets -------------------------------------------------------------------------------

def remote_connect(config, version: int, try_private: bool) -> Connect:
    """The CONNECT to the remote: its Will says `0` on the notification topic."""
    will = Will(notification_topic(config), b"0", 1, True) if notifies_remote(config) else None
    properties = {}
    if version == 5 and not config.cleansession:
        properties[Property.SESSION_EXPIRY_INTERVAL] = NEVER
    password = config.remote_password.encode() if config.remote_password is not None else None
    return Connect(
        protocol_version=version, client_id=config.remote_clientid,
        clean_start=bool(config.cleansession), keepalive=config.keepalive_interval,
        username=config.remote_username, password=password, will=will, properties=properties,
        protocol_name="MQIsdp" if version == 3 else "MQTT",
        # MQTT 5 has No Local itself; Mosquitto sets the bridge bit for 3.x only.
        bridge=try_private and version != 5)


def remote_requests(config, version: int, max_qos: int) -> list[tuple[str, object]]:
    """In `topic` order (as Mosquitto): ("subscribe", Subscription) for `in`/`both`
    lines, ("unsubscribe", topic) for `out` lines when bridge_attempt_unsubscribe."""
    v5 = version == 5
    requests: list[tuple[str, object]] = []
    for entry in config.topics:
        if entry.direction in ("in", "both"):
            requests.append(("subscribe", Subscription(entry.remote_topic, min(entry.qos, max_qos),
                                                       no_local=v5, retain_as_published=v5)))
        elif config.bridge_attempt_unsubscribe:
            requests.append(("unsubscribe", entry.remote_topic))
    return requests


def local_connect(config) -> Connect:
    """The local side's CONNECT (MQTT 5, midge's own): `local_clientid`, and
    `local_username` as the name it goes by. Nothing checks it, as in Mosquitto, so
    `local_password` is not sent."""
    properties = {}
    if not config.local_cleansession:
        properties[Property.SESSION_EXPIRY_INTERVAL] = NEVER
    return Connect(5, config.local_clientid, bool(config.local_cleansession), 0,
                   config.local_username, None, None, properties, bridge=True)


def local_subscriptions(config) -> list[Subscription]:
    """No Local (no echo of what the bridge publishes) and the retain flag as published."""
    return [Subscription(t.local_topic, t.qos, no_local=True, retain_as_published=True)
            for t in config.topics if t.direction in ("out", "both")]


def packet_limit(remote_limit: int, own_limit: int) -> int:
    """The smaller of the remote's v5 Maximum Packet Size and bridge_max_packet_size (0 = none)."""
    limits = [x for x in (remote_limit, own_limit) if x]
    return min(limits) if limits else 0


# -- Refusals ------------------------------------------------------------------------------

def refuses_try_private(try_private: bool, code: int) -> bool:
    """A remote that does not know Mosquitto's bridge bit refuses the protocol level."""
    return try_private and code in (ConnackCode.UNACCEPTABLE_PROTOCOL_VERSION,
                                    ReasonCode.UNSUPPORTED_PROTOCOL_VERSION)


def refusal_text(version: int, code: int) -> str:
    """Mosquitto's log wording of a refused bridge CONNECT (without the bridge name)."""
    if version == 5:
        return f"Connection Refused: {reason_string(code)} ({code:#x})"
    return connack_string(version, code).removesuffix(".")


# -- TLS -----------------------------------------------------------------------------------

def tls_options(config) -> TlsOptions | None:
    """The client TLS settings of a bridge, or None for plain TCP (Mosquitto's rule:
    TLS needs bridge_cafile, bridge_capath or bridge_psk)."""
    if not config.tls_enabled:
        return None
    if config.bridge_psk:
        return TlsOptions(psk=bytes.fromhex(config.bridge_psk), psk_identity=config.bridge_identity,
                          min_version=config.bridge_tls_version)
    return TlsOptions(cafile=config.bridge_cafile, capath=config.bridge_capath,
                      certfile=config.bridge_certfile, keyfile=config.bridge_keyfile,
                      min_version=config.bridge_tls_version, insecure=bool(config.bridge_insecure),
                      alpn=[config.bridge_alpn] if config.bridge_alpn else [])
