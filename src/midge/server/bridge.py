"""Bridges (`connection NAME`): the asyncio runner that connects to the remote broker.

A bridge has two sides:

- the **remote** side is an ordinary MQTT client connection (`midge.client`), with
  the bridge's client id, credentials, TLS or PSK and a Will that publishes the
  retained notification `0` when the link dies;
- the **local** side is `midge.bridge.link.LocalLink`, a client of midge's own
  sans-I/O broker fed encoded MQTT packets; the server's `drain()` calls its
  `flush()`, which hands what the broker sent to the bridge back to this runner.

What the options decide (remapping, back-off, the CONNECT and SUBSCRIBE packets) is
in `midge.bridge.rules`. This module keeps the remote connection and every timer, all
of them loop handles or awaited events (no task sleeps in a loop):

- the next attempt, `restart_timeout` after the last one (`rules.Backoff`), or at once
  after a try_private refusal or to go back to the primary address;
- `start_type lazy`: the `threshold` check (once a second while waiting) and the
  `idle_timeout` deadline, counted from the last relayed message;
- `round_robin false` on a backup address: a probe of the primary every 5 s;
- the CONNACK watchdog and the local keepalive ping.

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

from midge.bridge.link import LocalLink, publish_state
from midge.bridge.rules import (
    Backoff, notification_topic, notifies_remote, packet_limit, probes_primary, protocol_version,
    refusal_text, refuses_try_private, relayed_properties, remap_incoming, remap_outgoing, remote_connect,
    remote_requests, tls_options,
)
from midge.client.connection import ConnectError, open_connection
from midge.client.options import ClientOptions
from midge.client.session import ClientSession
from midge.client.tls import TlsSetupError, make_context
from midge.log import LogType
from midge.protocol.codec import encode
from midge.protocol.constants import PacketType, Property
from midge.protocol.packets import Publish

LAZY_CHECK_SECONDS = 1  # how often a waiting lazy bridge looks at its queue
PRIMARY_RETRY_SECONDS = 5  # Mosquitto: a bridge on a backup address checks the primary this often
PRIMARY_PROBE_TIMEOUT = 5  # seconds a probe of the primary may take


class BridgeSetupError(Exception):
    """A bridge cannot be started (bad TLS files, ...); the message names the bridge."""


def _cancel(handle) -> None:
    if handle is not None:
        handle.cancel()


class Bridge:
    """One `connection`: connects, relays, reconnects with back-off until stopped.

    It is also the owner of its `LocalLink` (`forward`, `local_closed`, `keep_alive`,
    `wake`, `flushed`).
    """

    def __init__(self, server, config):
        self.server = server
        self.broker = server.broker
        self.config = config
        self.log = server.log
        self.loop: asyncio.AbstractEventLoop = server.loop
        self.version = protocol_version(config)
        self.tls = tls_options(config)
        self.backoff = Backoff(config.restart_timeout)
        self.address_index = 0
        self.try_private = bool(config.try_private)
        self.stopping = False
        self.retry_now = False
        self.idled_out = False
        self.last_message = 0.0  # loop time of the last relayed message (lazy idle_timeout)
        # The attempt in progress (connect, then the connection's life), or the timer
        # that starts the next one (restart_timeout, or a lazy bridge's threshold check).
        self.attempt: asyncio.Task | None = None
        self.next_attempt: asyncio.TimerHandle | None = None
        # Per remote connection
        self.connection = None
        self.session: ClientSession | None = None
        self.connected = False
        self.max_packet = 0
        self.outgoing: dict[int, tuple[int, int]] = {}  # remote packet id -> (local id, qos)
        self.local: LocalLink | None = None
        self.connack_timer: asyncio.TimerHandle | None = None
        self.idle_timer: asyncio.TimerHandle | None = None
        self.primary_timer: asyncio.TimerHandle | None = None
        self.primary_probe: asyncio.Task | None = None
        self.ping_timer: asyncio.TimerHandle | None = None
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
        if not config.local_cleansession:
            # Create the local session now, so `out` messages queue before the first
            # connection (Mosquitto subscribes its bridge context at start).
            link = self._new_link()
            link.open()
            link.close()
        if config.notifications:
            self._notify_local(b"0")
        self._schedule_attempt(0)

    def stop(self) -> None:
        """Shutdown: tell the remote we are going (state 0), disconnect, stop retrying."""
        self.stopping = True
        _cancel(self.next_attempt)
        _cancel(self.attempt)
        self._cancel_connection_timers()
        self._disconnect_cleanly()
        if self.local is not None:
            self.local.close()

    def _disconnect_cleanly(self) -> None:
        """Publish state 0 to the remote (no Will on a clean DISCONNECT), then DISCONNECT."""
        session, connection = self.session, self.connection
        if connection is None or not self.connected:
            return
        config = self.config
        if notifies_remote(config):
            session.publish(notification_topic(config), b"0", min(1, session.max_qos), True)
        session.disconnect()
        connection.flush()
        connection.close()

    # -- Attempts --------------------------------------------------------------------

    def _schedule_attempt(self, delay: float) -> None:
        self.next_attempt = self.loop.call_later(delay, self._attempt_due)

    def _attempt_due(self) -> None:
        self.next_attempt = None
        if self.stopping:
            return
        config = self.config
        if (config.start_type == "lazy"
                and self.broker.queued_messages(config.local_clientid) < config.threshold):
            # start_type lazy: connect once `threshold` messages wait in the local session.
            self.next_attempt = self.loop.call_later(LAZY_CHECK_SECONDS, self._attempt_due)
            return
        host, port = config.addresses[self.address_index]
        self.attempt = self.loop.create_task(self._connect_once(host, port))
        self.attempt.add_done_callback(self._attempt_over)

    def _attempt_over(self, task: asyncio.Task) -> None:
        """An attempt ended (refused, lost, idle, or left for the primary): plan the next."""
        self.attempt = None
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:  # a bug in the bridge must not end it for good
            self.log.error(f"Bridge {self.config.name}: internal error: {exc!r}")
        up = exc is None and task.result()
        if self.stopping or self.config.start_type == "once":
            return
        if self.retry_now:  # try_private refused, or the primary is back: at once
            self.retry_now = False
            self._schedule_attempt(0)
            return
        if self.idled_out:  # lazy: wait for the next `threshold` messages, not a timer
            self.idled_out = False
            self._schedule_attempt(0)
            return
        if not up:
            self.backoff.next()
        self.address_index = (self.address_index + 1) % len(self.config.addresses)
        self._schedule_attempt(self.backoff.delay)  # restart_timeout between attempts

    async def _connect_once(self, host: str, port: int) -> bool:
        """One connection attempt and its life; True if it reached CONNACK success."""
        config = self.config
        log = self.log
        log.notice(f"Connecting bridge {config.name} ({host}:{port})")
        self.session = ClientSession(remote_connect(config, self.version, self.try_private))
        options = ClientOptions(host=host, port=port, tls=self.tls, bind_address=config.bridge_bind_address,
                                connect_timeout=max(config.keepalive_interval, 5))
        try:
            self.connection = await open_connection(options, self.session, self._on_remote_event)
        except (ConnectError, TlsSetupError) as exc:
            text = str(exc).removeprefix("Error: ")
            log.error(f"Error creating bridge {config.name}: {text}.")
            return False
        self.connack_timer = self.loop.call_later(max(config.keepalive_interval, 5), self._connack_timeout)
        if probes_primary(config, self.address_index):
            self.primary_timer = self.loop.call_later(PRIMARY_RETRY_SECONDS, self._probe_primary)
        try:
            exc = await self.connection.closed
        finally:
            self._cancel_connection_timers()
        connack = self.connection.connack
        if connack.done() and not connack.cancelled() and connack.exception() is not None:
            log.error(f"Bridge {config.name}: {str(connack.exception()).removeprefix('Error: ')}.")
        was_up = self.connected
        self._remote_down(exc)
        return was_up

    def _cancel_connection_timers(self) -> None:
        _cancel(self.connack_timer)
        _cancel(self.idle_timer)
        _cancel(self.primary_timer)
        _cancel(self.primary_probe)
        self.connack_timer = self.idle_timer = self.primary_timer = self.primary_probe = None

    def _connack_timeout(self) -> None:
        self.connack_timer = None
        if not self.connected and self.connection is not None:
            self.log.error(f"Bridge {self.config.name}: no CONNACK from the remote broker; closing.")
            self.connection.close()

    # -- start_type lazy: idle_timeout -------------------------------------------------

    def _idle_due(self) -> None:
        """The idle deadline passed: leave if no message came since, else wait for the new one."""
        self.idle_timer = None
        timeout = self.config.idle_timeout
        deadline = self.last_message + timeout
        if self.loop.time() < deadline:
            self.idle_timer = self.loop.call_at(deadline, self._idle_due)
            return
        self.log.notice(f"Bridge {self.config.name}: idle for {timeout} s, disconnecting "
                        "(start_type lazy).")
        self.idled_out = True
        self._disconnect_cleanly()

    # -- round_robin false: back to the primary ---------------------------------------------

    def _probe_primary(self) -> None:
        self.primary_timer = None
        host, port = self.config.addresses[0]
        self.primary_probe = self.loop.create_task(self._primary_answers(host, port))
        self.primary_probe.add_done_callback(self._primary_probed)

    @staticmethod
    async def _primary_answers(host: str, port: int) -> bool:
        """Whether the primary address accepts a TCP connection now."""
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), PRIMARY_PROBE_TIMEOUT)
        except (OSError, TimeoutError):
            return False
        writer.close()
        return True

    def _primary_probed(self, task: asyncio.Task) -> None:
        self.primary_probe = None
        if task.cancelled() or self.connection is None:
            return
        if task.exception() is not None or not task.result():
            self.primary_timer = self.loop.call_later(PRIMARY_RETRY_SECONDS, self._probe_primary)
            return
        host, port = self.config.addresses[0]
        self.log.notice(f"Bridge {self.config.name}: primary address {host}:{port} is back; reconnecting to it.")
        self.retry_now = True
        self.address_index = 0
        self._disconnect_cleanly()

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
            if refuses_try_private(self.try_private, code):
                # The remote does not know Mosquitto's bridge bit: try again without it.
                self.try_private = False
                self.retry_now = True
                self.log.notice(f"Bridge {config.name}: the remote refused try_private; retrying without it.")
            else:
                self.log.error(f"{refusal_text(self.version, code)} (bridge {config.name})")
            self.connection.close()
            return
        session = self.session
        self.connected = True
        self.backoff.reset()
        remote_limit = packet.properties.get(Property.MAXIMUM_PACKET_SIZE, 0) if self.version == 5 else 0
        self.max_packet = packet_limit(remote_limit, config.bridge_max_packet_size or 0)
        host, port = config.addresses[self.address_index]
        self.log.notice(f"Bridge {config.name} connected to {host}:{port} as {config.remote_clientid}.")
        for kind, request in remote_requests(config, self.version, session.max_qos):
            if kind == "subscribe":
                session.subscribe([request])
            else:
                session.unsubscribe([request])
        # The local side, whose retained and queued `out` messages now flow to the remote.
        self.local = self._new_link()
        self.local.open()
        if config.notifications:
            if not config.notifications_local_only:
                session.publish(notification_topic(config), b"1", min(1, session.max_qos), True)
            self._notify_local(b"1")
        if config.start_type == "lazy":
            self.last_message = self.loop.time()
            self.idle_timer = self.loop.call_at(self.last_message + config.idle_timeout, self._idle_due)

    def _remote_down(self, exc) -> None:
        config = self.config
        if self.connected:
            detail = f": {exc}" if exc else ""
            self.log.notice(f"Bridge {config.name} disconnected{detail}.")
            if config.notifications:
                self._notify_local(b"0")
        self.connected = False
        self.outgoing.clear()
        _cancel(self.ping_timer)
        self.ping_timer = None
        if self.local is not None:
            self.local.close()
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
        local.publish(topic, packet.payload, packet.qos, packet.retain, relayed_properties(packet.properties))

    def _remote_completed(self, packet) -> None:
        """The remote acknowledged a message we relayed: acknowledge it locally."""
        entry = self.outgoing.pop(packet.packet_id, None)
        if entry is None or self.local is None:
            return
        local_id, qos = entry
        self.local.acknowledge(local_id, qos)

    # -- Local side: the LocalLink's owner ---------------------------------------------------

    def _new_link(self) -> LocalLink:
        return LocalLink(self.broker, self.config, self, self.loop.time)

    def forward(self, packet) -> None:
        """A local message matched an `out` topic: send it to the remote (remapped)."""
        session = self.session
        if not self.connected or session is None:
            return  # QoS 1/2 stay unacknowledged in the local session, resent later
        config = self.config
        self.last_message = self.loop.time()
        topic = remap_outgoing(config.topics, packet.topic)
        retain = packet.retain and bool(config.bridge_outgoing_retain)
        properties = relayed_properties(packet.properties) if self.version == 5 else {}
        qos = packet.qos
        if self.max_packet:
            size = len(encode(Publish(topic, packet.payload, qos, retain, False, 1 if qos else None,
                                      properties), self.version))
            if size > self.max_packet:
                if self.log.enabled(LogType.DEBUG):
                    self.log.debug(f"Bridge {config.name}: dropped a {size} byte message on {topic} "
                                   f"(over the {self.max_packet} byte limit).")
                if qos and self.local is not None:
                    self.local.acknowledge(packet.packet_id, qos)
                return
        # A v5 remote may cap QoS (Maximum QoS); the local side is acknowledged by its own QoS.
        remote_id = session.publish(topic, packet.payload, min(qos, session.max_qos), retain, properties)
        if qos and remote_id:
            self.outgoing[remote_id] = (packet.packet_id, qos)
        elif qos and self.local is not None:  # sent at QoS 0: nothing to wait for
            self.local.acknowledge(packet.packet_id, qos)

    def local_closed(self) -> None:
        """The broker closed the bridge's local client (shutdown or a client took its id)."""
        if self.stopping or self.local is None:
            return
        self.log.warning(f"Bridge {self.config.name}: local connection "
                         f"{self.config.local_clientid} closed; restarting the bridge.")
        self.local = None
        if self.connection is not None:
            self.connection.close()

    def keep_alive(self, interval: float) -> None:
        """max_keepalive forced a keepalive on the local client: ping it that often."""
        if self.local is None:
            return  # the link made at start-up, already closed
        _cancel(self.ping_timer)
        self.ping_timer = self.loop.call_later(interval, self._ping, interval)

    def _ping(self, interval: float) -> None:
        self.ping_timer = None
        local = self.local
        if local is None or local.closed:
            return
        local.ping()
        self.ping_timer = self.loop.call_later(interval, self._ping, interval)

    def wake(self) -> None:
        self.schedule_drain()

    def flushed(self) -> None:
        if self.connection is not None:
            self.connection.flush()

    def _notify_local(self, payload: bytes) -> None:
        publish_state(self.broker, self.config, payload, self.loop.time())
        self.schedule_drain()

    def schedule_drain(self) -> None:
        """Write what the broker queued, once, after the current callback."""
        if not self._drain_scheduled:
            self._drain_scheduled = True
            self.loop.call_soon(self._drain)

    def _drain(self) -> None:
        self._drain_scheduled = False
        self.server.drain()
        self.flushed()


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
