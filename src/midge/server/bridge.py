"""Bridges (`connection NAME`): midge connects to another broker and relays topics.

A bridge has two sides:

- the **remote** side is an ordinary MQTT client connection (`midge.client`), with
  the bridge's client id, credentials, TLS or PSK and a Will that publishes the
  retained notification `0` when the link dies;
- the **local** side is a client of midge's own sans-I/O broker, created with
  `broker.new_client(...)` and fed encoded MQTT packets. `LocalLink` is its `io`: the
  server's `drain()` calls `LocalLink.flush()`, which decodes what the broker sent to
  the bridge and forwards it to the remote.

The local side is connected while the remote side is (Mosquitto's bridge context has
no socket while the bridge is down): when the link drops, the local session keeps
QoS 1/2 messages for `out` topics (with `local_cleansession false`, the default) and
the broker resends them, unacknowledged ones with DUP, when the bridge is back. A
local message is acknowledged to midge only once the remote broker has acknowledged
it, so nothing with QoS > 0 is lost while the link flaps.

Loop prevention is Mosquitto's: local subscriptions are No Local (the bridge never
gets back what it published locally), remote subscriptions are No Local in MQTT 5,
and with MQTT 3.x `try_private` marks the CONNECT as a bridge (protocol level | 0x80)
so a Mosquitto-compatible remote applies the same rule.
"""

from __future__ import annotations

import asyncio
import random

from midge.broker.message import Message
from midge.client.connection import ConnectError, open_connection
from midge.client.options import ClientOptions, TlsOptions
from midge.client.session import ClientSession
from midge.client.tls import TlsSetupError, make_context
from midge.client.tool import reason_string
from midge.log import LogType
from midge.protocol.codec import Decoder, encode
from midge.protocol.constants import ConnackCode, PacketType, Property, ReasonCode
from midge.protocol.packets import (
    Connect, Pingreq, Puback, Pubcomp, Publish, Pubrec, Pubrel, Subscribe, Subscription, Will,
)
from midge.protocol.topics import topic_matches

PROTOCOL_VERSIONS = {"mqttv31": 3, "mqttv311": 4, "mqttv50": 5}
SESSION_NEVER_EXPIRES = 0xFFFFFFFF
LAZY_CHECK_SECONDS = 1  # how often a lazy bridge looks at its queue and idle time
PRIMARY_RETRY_SECONDS = 5  # Mosquitto: a bridge on a backup address checks the primary this often
# Properties that describe one hop; never relayed to the next one.
_HOP_PROPERTIES = (Property.TOPIC_ALIAS, Property.SUBSCRIPTION_IDENTIFIER)

_V3_REFUSALS = {
    ConnackCode.UNACCEPTABLE_PROTOCOL_VERSION: "Connection Refused: unacceptable protocol version",
    ConnackCode.IDENTIFIER_REJECTED: "Connection Refused: identifier rejected",
    ConnackCode.SERVER_UNAVAILABLE: "Connection Refused: broker unavailable",
    ConnackCode.BAD_USERNAME_OR_PASSWORD: "Connection Refused: bad user name or password",
    ConnackCode.NOT_AUTHORIZED: "Connection Refused: not authorised",
}


class BridgeSetupError(Exception):
    """A bridge cannot be started (bad TLS files, ...); the message names the bridge."""


def notification_topic(config) -> str:
    """Where the bridge publishes its retained state `1`/`0`."""
    return config.notification_topic or f"$SYS/broker/connection/{config.remote_clientid}/state"


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


def tls_options(config) -> TlsOptions | None:
    """The client TLS settings of a bridge, or None for plain TCP (Mosquitto's rule:
    TLS needs bridge_cafile, bridge_capath or bridge_psk)."""
    if not config.tls_enabled:
        return None
    if config.bridge_psk:
        return TlsOptions(psk=bytes.fromhex(config.bridge_psk), psk_identity=config.bridge_identity,
                          min_version=config.bridge_tls_version, names="bridge")
    return TlsOptions(cafile=config.bridge_cafile, capath=config.bridge_capath,
                      certfile=config.bridge_certfile, keyfile=config.bridge_keyfile,
                      min_version=config.bridge_tls_version, insecure=bool(config.bridge_insecure),
                      alpn=[config.bridge_alpn] if config.bridge_alpn else [], names="bridge")


class Backoff:
    """restart_timeout: a fixed delay, or Mosquitto's "decorrelated jitter" between base and cap."""

    def __init__(self, restart_timeout, rng=random):
        self.base, self.cap = restart_timeout
        self.delay = self.base
        self.rng = rng

    def next(self) -> float:
        if self.cap is None:
            return self.base
        upper = max(self.base + 1, self.delay * 3)
        self.delay = min(self.cap, self.rng.randint(self.base, upper))
        return self.delay

    def reset(self) -> None:
        self.delay = self.base


class LocalLink:
    """The bridge's connection to midge's own broker: the `io` of a broker Client.

    `flush()` is called by the server's drain with the broker's output for the bridge;
    `send(packet)` feeds a packet to the broker as if it had arrived on a socket.
    """

    def __init__(self, bridge: "Bridge"):
        self.bridge = bridge
        self.decoder = Decoder(version=5, role="client")
        self.client = None
        self.closed = False
        self.next_id = 0
        self.ping_timer: asyncio.TimerHandle | None = None

    def open(self, now: float) -> None:
        bridge = self.bridge
        config = bridge.config
        broker = bridge.server.broker
        self.client = broker.new_client(None, f"bridge:{config.name}", None, self, now)
        # Security and the broker treat a client with `bridge` set as midge's own
        # (no ACL checks, kept across reloads), as Mosquitto does its bridge context.
        self.client.bridge = config
        properties = {}
        if not config.local_cleansession:
            properties[Property.SESSION_EXPIRY_INTERVAL] = SESSION_NEVER_EXPIRES
        password = config.local_password.encode() if config.local_password is not None else None
        self.send(Connect(5, config.local_clientid, bool(config.local_cleansession), 0,
                          config.local_username, password, None, properties, bridge=True))
        subscriptions = [Subscription(t.local_topic, t.qos, no_local=True, retain_as_published=True)
                         for t in config.topics if t.direction in ("out", "both")]
        if subscriptions:
            self.send(Subscribe(self._new_id(), subscriptions))
        bridge.schedule_drain()

    def close(self, now: float) -> None:
        """End the local side (the remote is down): its session keeps what QoS > 0 waits."""
        if self.ping_timer is not None:
            self.ping_timer.cancel()
            self.ping_timer = None
        client = self.client
        if client is not None and not self.closed:
            self.closed = True
            client.close(now, "shutdown", send_will=False)
            self.bridge.schedule_drain()

    def send(self, packet) -> None:
        client = self.client
        if client is None or self.closed:
            return
        client.receive_data(encode(packet, 5), self.bridge.loop.time())

    def publish(self, topic: str, payload: bytes, qos: int, retain: bool, properties: dict) -> None:
        packet_id = self._new_id() if qos else None
        self.send(Publish(topic, payload, qos, retain, False, packet_id, properties))

    def _new_id(self) -> int:
        self.next_id = self.next_id % 65535 + 1
        return self.next_id

    # -- Called by Server.drain ------------------------------------------------------

    def flush(self) -> None:
        client = self.client
        if client is None:
            return
        output = client.output
        data = b"".join(output) if output else b""
        output.clear()
        bridge = self.bridge
        fed = False
        for packet in self.decoder.feed(data) if data else ():
            kind = packet.type
            if kind == PacketType.PUBLISH:
                bridge.forward_to_remote(packet)
            elif kind == PacketType.PUBREC:  # our QoS 2 publish arrived
                self.send(Pubrel(packet.packet_id))
                fed = True
            elif kind == PacketType.PUBREL:  # a QoS 2 message we acknowledged with PUBREC
                self.send(Pubcomp(packet.packet_id))
                fed = True
            elif kind == PacketType.CONNACK:
                self._connack(packet)
            elif kind == PacketType.SUBACK:
                failed = [c for c in packet.reason_codes if c >= 0x80]
                if failed:
                    bridge.log.warning(f"Bridge {bridge.config.name}: the local broker refused "
                                       f"{len(failed)} of the bridge's local subscriptions.")
        if client.closing and not self.closed:
            self.closed = True  # the broker closed us (shutdown, takeover, refusal)
            bridge.local_closed()
        if fed:
            bridge.schedule_drain()
        bridge.flush_remote()

    def _connack(self, packet) -> None:
        bridge = self.bridge
        if packet.reason_code:
            bridge.log.error(
                f"Bridge {bridge.config.name}: the local broker refused the bridge's local "
                f"connection as {bridge.config.local_clientid} (reason {packet.reason_code:#x}); "
                "check local_username/local_password")
            return
        keepalive = packet.properties.get(Property.SERVER_KEEP_ALIVE)
        if keepalive:  # max_keepalive forced one on us: keep the local session alive
            self._ping_every(keepalive / 2)

    def _ping_every(self, interval: float) -> None:
        def ping():
            if self.closed:
                return
            self.send(Pingreq())
            self.bridge.schedule_drain()
            self.ping_timer = self.bridge.loop.call_later(interval, ping)

        self.ping_timer = self.bridge.loop.call_later(interval, ping)


class Bridge:
    """One `connection`: connects, relays, reconnects with backoff until stopped."""

    def __init__(self, server, config):
        self.server = server
        self.config = config
        self.log = server.log
        self.loop: asyncio.AbstractEventLoop = server.loop
        self.version = PROTOCOL_VERSIONS.get(config.bridge_protocol_version, 4)
        self.tls = tls_options(config)
        self.backoff = Backoff(config.restart_timeout)
        self.address_index = 0
        self.try_private = bool(config.try_private)
        self.task: asyncio.Task | None = None
        self.stopping = False
        self.retry_now = False
        self.idled_out = False
        self.last_message = 0.0  # loop time of the last relayed message (lazy idle_timeout)
        # Per remote connection
        self.connection = None
        self.session: ClientSession | None = None
        self.connected = False
        self.max_packet = 0
        self.outgoing: dict[int, tuple[int, int]] = {}  # remote packet id -> (local id, qos)
        self.local: LocalLink | None = None
        self._drain_scheduled = False

    # -- Lifecycle -------------------------------------------------------------------

    def start(self) -> None:
        config = self.config
        if self.tls is not None:
            try:
                make_context(self.tls)
            except TlsSetupError as exc:
                raise BridgeSetupError(f"bridge {config.name}: {exc}") from exc
            if self.tls.insecure:
                self.log.warning(f"Warning: bridge {config.name} has bridge_insecure set: the remote "
                                 "broker's certificate is not checked against its host name.")
        now = self.loop.time()
        if not config.local_cleansession:
            # Create the local session now, so `out` messages queue before the first
            # connection (Mosquitto subscribes its bridge context at start).
            link = LocalLink(self)
            link.open(now)
            link.close(now)
        if config.notifications:
            self._notify_local(b"0")
        self.task = self.loop.create_task(self._run())

    def stop(self) -> None:
        """Shutdown: tell the remote we are going (state 0), disconnect, stop retrying."""
        self.stopping = True
        if self.task is not None:
            self.task.cancel()
        self._disconnect_cleanly()
        if self.local is not None:
            self.local.close(self.loop.time())

    def _disconnect_cleanly(self) -> None:
        """Publish state 0 to the remote (no Will on a clean DISCONNECT), then DISCONNECT."""
        session, connection = self.session, self.connection
        if connection is None or not self.connected:
            return
        config = self.config
        if config.notifications and not config.notifications_local_only:
            session.publish(notification_topic(config), b"0", min(1, session.max_qos), True)
        session.disconnect()
        connection.flush()
        connection.close()

    async def _run(self) -> None:
        config = self.config
        while not self.stopping:
            if config.start_type == "lazy":
                await self._wait_for_threshold()
            host, port = config.addresses[self.address_index]
            up = await self._connect_once(host, port)
            if self.stopping or config.start_type == "once":
                return
            if self.retry_now:  # try_private refused, or the primary is back: at once
                self.retry_now = False
                continue
            if self.idled_out:  # lazy: wait for the next `threshold` messages, not a timer
                self.idled_out = False
                continue
            if not up:
                self.backoff.next()
            self.address_index = (self.address_index + 1) % len(config.addresses)
            await asyncio.sleep(self.backoff.delay)  # restart_timeout between attempts

    async def _wait_for_threshold(self) -> None:
        """start_type lazy: connect once `threshold` messages wait in the local session."""
        config = self.config
        sessions = self.server.broker.sessions
        while True:
            session = sessions.get(config.local_clientid)
            if session is not None and len(session.queue) >= config.threshold:
                return
            await asyncio.sleep(LAZY_CHECK_SECONDS)

    async def _idle_watch(self) -> None:
        """start_type lazy: disconnect after idle_timeout seconds without a message."""
        config = self.config
        while True:
            await asyncio.sleep(LAZY_CHECK_SECONDS)
            if self.connected and self.loop.time() - self.last_message >= config.idle_timeout:
                self.log.notice(f"Bridge {config.name}: idle for {config.idle_timeout} s, disconnecting "
                                "(start_type lazy).")
                self.idled_out = True
                self._disconnect_cleanly()
                return

    async def _connect_once(self, host: str, port: int) -> bool:
        """One connection attempt and its life; True if it reached CONNACK success."""
        config = self.config
        log = self.log
        log.notice(f"Connecting bridge {config.name} ({host}:{port})")
        self.session = ClientSession(self._connect_packet())
        options = ClientOptions(host=host, port=port, tls=self.tls, bind_address=config.bridge_bind_address,
                                connect_timeout=max(config.keepalive_interval, 5))
        try:
            self.connection = await open_connection(options, self.session, self._on_remote_event)
        except (ConnectError, TlsSetupError) as exc:
            text = str(exc).removeprefix("Error: ")
            log.error(f"Error creating bridge {config.name}: {text}.")
            return False
        watchdog = self.loop.call_later(max(config.keepalive_interval, 5), self._connack_timeout)
        helpers = []
        if not config.round_robin and self.address_index != 0:
            helpers.append(self.loop.create_task(self._probe_primary()))
        if config.start_type == "lazy":
            self.last_message = self.loop.time()
            helpers.append(self.loop.create_task(self._idle_watch()))
        try:
            exc = await self.connection.closed
        finally:
            watchdog.cancel()
            for helper in helpers:
                helper.cancel()
        connack = self.connection.connack
        if connack.done() and not connack.cancelled() and connack.exception() is not None:
            log.error(f"Bridge {config.name}: {str(connack.exception()).removeprefix('Error: ')}.")
        was_up = self.connected
        self._remote_down(exc)
        return was_up

    def _connack_timeout(self) -> None:
        if not self.connected and self.connection is not None:
            self.log.error(f"Bridge {self.config.name}: no CONNACK from the remote broker; closing.")
            self.connection.close()

    async def _probe_primary(self) -> None:
        """Not round_robin and on a backup address: go back once the primary answers."""
        host, port = self.config.addresses[0]
        while True:
            await asyncio.sleep(PRIMARY_RETRY_SECONDS)
            try:
                _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 5)
            except (OSError, TimeoutError):
                continue
            writer.close()
            self.log.notice(f"Bridge {self.config.name}: primary address {host}:{port} is back; reconnecting to it.")
            self.retry_now = True
            self.address_index = 0
            self._disconnect_cleanly()
            return

    def _connect_packet(self) -> Connect:
        config = self.config
        will = None
        if config.notifications and not config.notifications_local_only:
            will = Will(notification_topic(config), b"0", 1, True)
        properties = {}
        if self.version == 5 and not config.cleansession:
            properties[Property.SESSION_EXPIRY_INTERVAL] = SESSION_NEVER_EXPIRES
        password = config.remote_password.encode() if config.remote_password is not None else None
        return Connect(
            protocol_version=self.version, client_id=config.remote_clientid,
            clean_start=bool(config.cleansession), keepalive=config.keepalive_interval,
            username=config.remote_username, password=password, will=will, properties=properties,
            protocol_name="MQIsdp" if self.version == 3 else "MQTT",
            # MQTT 5 has No Local itself; Mosquitto sets the bridge bit for 3.x only.
            bridge=self.try_private and self.version != 5)

    # -- Remote side -------------------------------------------------------------------

    def _on_remote_event(self, event) -> None:
        kind = event.type
        if kind == PacketType.PUBLISH:
            self._from_remote(event)
        elif kind in (PacketType.PUBACK, PacketType.PUBCOMP, PacketType.PUBREC):
            self._remote_completed(event)
        elif kind == PacketType.CONNACK:
            self._connack(event)
        elif kind == PacketType.SUBACK:
            if any(code >= 0x80 for code in event.reason_codes):
                self.log.warning(f"Bridge {self.config.name}: the remote broker refused a subscription.")
        elif kind == PacketType.DISCONNECT:
            self.log.notice(f"Bridge {self.config.name}: the remote broker disconnected "
                            f"(reason {event.reason_code:#x}).")
        self.schedule_drain()

    def _connack(self, packet) -> None:
        config = self.config
        code = packet.reason_code
        if code != 0:
            if self.try_private and code in (ConnackCode.UNACCEPTABLE_PROTOCOL_VERSION,
                                             ReasonCode.UNSUPPORTED_PROTOCOL_VERSION):
                # The remote does not know Mosquitto's bridge bit: try again without it.
                self.try_private = False
                self.retry_now = True
                self.log.notice(f"Bridge {config.name}: the remote refused try_private; retrying without it.")
            elif self.version == 5:
                self.log.error(f"Connection Refused: {reason_string(code)} ({code:#x}) (bridge {config.name})")
            else:
                reason = _V3_REFUSALS.get(code, "Connection Refused: unknown reason")
                self.log.error(f"{reason} (bridge {config.name})")
            self.connection.close()
            return
        session = self.session
        self.connected = True
        self.backoff.reset()
        limit = packet.properties.get(Property.MAXIMUM_PACKET_SIZE, 0) if self.version == 5 else 0
        own = config.bridge_max_packet_size or 0
        self.max_packet = min(x for x in (limit, own) if x) if (limit or own) else 0
        host, port = config.addresses[self.address_index]
        self.log.notice(f"Bridge {config.name} connected to {host}:{port} as {config.remote_clientid}.")
        for entry in config.topics:
            if entry.direction in ("in", "both"):
                v5 = self.version == 5
                session.subscribe([Subscription(entry.remote_topic, min(entry.qos, session.max_qos),
                                                no_local=v5, retain_as_published=v5)])
            elif config.bridge_attempt_unsubscribe:
                session.unsubscribe([entry.remote_topic])
        # The local side, whose retained and queued `out` messages now flow to the remote.
        self.local = LocalLink(self)
        self.local.open(self.loop.time())
        if config.notifications:
            if not config.notifications_local_only:
                session.publish(notification_topic(config), b"1", min(1, session.max_qos), True)
            self._notify_local(b"1")

    def _remote_down(self, exc) -> None:
        config = self.config
        if self.connected:
            detail = f": {exc}" if exc else ""
            self.log.notice(f"Bridge {config.name} disconnected{detail}.")
            if config.notifications:
                self._notify_local(b"0")
        self.connected = False
        self.outgoing.clear()
        if self.local is not None:
            self.local.close(self.loop.time())
            self.local = None
        self.connection = None
        self.session = None
        self.schedule_drain()

    def _from_remote(self, packet) -> None:
        """A message from the remote broker: publish it locally (remapped)."""
        local = self.local
        if local is None:
            return
        self.last_message = self.loop.time()
        topic = remap_incoming(self.config.topics, packet.topic)
        properties = packet.properties
        if properties:
            properties = {k: v for k, v in properties.items() if k not in _HOP_PROPERTIES}
        local.publish(topic, packet.payload, packet.qos, packet.retain, properties)

    def _remote_completed(self, packet) -> None:
        """The remote acknowledged a message we relayed: acknowledge it locally."""
        entry = self.outgoing.pop(packet.packet_id, None)
        if entry is None or self.local is None:
            return
        local_id, qos = entry
        self.local.send(Puback(local_id) if qos == 1 else Pubrec(local_id))

    # -- Local side ---------------------------------------------------------------------

    def forward_to_remote(self, packet) -> None:
        """A local message matched an `out` topic: send it to the remote (remapped)."""
        session = self.session
        if not self.connected or session is None:
            return  # QoS 1/2 stay unacknowledged in the local session, resent later
        config = self.config
        self.last_message = self.loop.time()
        topic = remap_outgoing(config.topics, packet.topic)
        retain = packet.retain and bool(config.bridge_outgoing_retain)
        properties = {}
        if self.version == 5 and packet.properties:
            properties = {k: v for k, v in packet.properties.items() if k not in _HOP_PROPERTIES}
        qos = packet.qos
        if self.max_packet:
            size = len(encode(Publish(topic, packet.payload, qos, retain, False, 1 if qos else None,
                                      properties), self.version))
            if size > self.max_packet:
                if self.log.enabled(LogType.DEBUG):
                    self.log.debug(f"Bridge {config.name}: dropped a {size} byte message on {topic} "
                                   f"(over the {self.max_packet} byte limit).")
                if qos and self.local is not None:
                    self.local.send(Puback(packet.packet_id) if qos == 1 else Pubrec(packet.packet_id))
                    self.schedule_drain()
                return
        # A v5 remote may cap QoS (Maximum QoS); the local side is acknowledged by its own QoS.
        remote_id = session.publish(topic, packet.payload, min(qos, session.max_qos), retain, properties)
        if qos and remote_id:
            self.outgoing[remote_id] = (packet.packet_id, qos)
        elif qos and self.local is not None:  # sent at QoS 0: nothing to wait for
            self.local.send(Puback(packet.packet_id) if qos == 1 else Pubrec(packet.packet_id))
            self.schedule_drain()

    def local_closed(self) -> None:
        """The broker closed the bridge's local client (shutdown or a client took its id)."""
        if self.stopping or self.local is None:
            return
        self.log.warning(f"Bridge {self.config.name}: local connection "
                         f"{self.config.local_clientid} closed; restarting the bridge.")
        self.local = None
        if self.connection is not None:
            self.connection.close()

    def flush_remote(self) -> None:
        if self.connection is not None:
            self.connection.flush()

    def _notify_local(self, payload: bytes) -> None:
        broker = self.server.broker
        now = self.loop.time()
        broker.publish(Message(notification_topic(self.config), payload, 1, True, {}), now)
        self.schedule_drain()

    def schedule_drain(self) -> None:
        """Write what the broker queued, once, after the current callback."""
        if not self._drain_scheduled:
            self._drain_scheduled = True
            self.loop.call_soon(self._drain)

    def _drain(self) -> None:
        self._drain_scheduled = False
        self.server.drain()
        self.flush_remote()


def start_bridges(server) -> list[Bridge]:
    """Start every configured bridge; raises BridgeSetupError for unusable TLS files."""
    bridges = []
    for config in server.config.bridges:
        bridge = Bridge(server, config)
        bridge.start()
        bridges.append(bridge)
    return bridges


def stop_bridges(bridges: list[Bridge]) -> None:
    for bridge in bridges:
        bridge.stop()
