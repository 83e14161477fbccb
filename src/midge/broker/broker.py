"""The broker: sessions, routing and delivery, timers, reload and shutdown.

No I/O and no clock: bytes go to `client.output`, clients with something to
write or to close are collected for `take_pending()`, and time is an argument.

Backpressure and drop policy (a slow subscriber never blocks anyone else):

- QoS 1/2: at most `max_inflight_messages` (and the v5 client's receive maximum,
  and `max_inflight_bytes`) unacknowledged per session; the rest waits in the
  session queue, bounded by `max_queued_messages` / `max_queued_bytes`; beyond
  that new messages are dropped. While the server has paused writing to a client,
  new QoS 1/2 messages wait in the queue and flow again on `writing_resumed`.
- QoS 0 to a connected client is written at once; while writing is paused, at most
  `max_queued_messages` more are accepted until the transport drains, the rest are
  dropped (Mosquitto drops QoS 0 when its per-client packet queue is full).
- Offline sessions queue QoS 1/2 (and QoS 0 with `queue_qos0_messages`) within the
  same limits. Every drop counts in `$SYS/broker/publish/messages/dropped`.
"""

from __future__ import annotations

import time

from midge.broker import keepalive, session_expiry, sys_tree, will_delay
from midge.broker.client import CLOSED, CONNECTED, Client
from midge.broker.database import Database
from midge.broker.handle_connect import handle_connect
from midge.broker.handle_disconnect import handle_auth, handle_disconnect, handle_pingreq, handle_unexpected
from midge.broker.handle_publish import (
    handle_puback, handle_pubcomp, handle_publish, handle_pubrec, handle_pubrel,
)
from midge.broker.handle_subscribe import handle_subscribe, handle_unsubscribe
from midge.broker.limits import Limits, ListenerLimits
from midge.broker.message import WAIT_COMP, Message
from midge.broker.retain import RetainStore
from midge.broker.session import Session
from midge.broker.stats import Stats
from midge.broker.subs import SubscriptionTree
from midge.broker.timers import TimerHeap
from midge.log import LogType
from midge.protocol import packets as p
from midge.protocol.constants import Property, ReasonCode

from midge.security import READ, SUBSCRIBE, WRITE

try:
    from midge.security import UNSUBSCRIBE
except ImportError:  # pragma: no cover
    UNSUBSCRIBE = 8

_CONNECT_KIND = "connect"

# Packet types (high nibble of the first byte) the broker sends after changing a session.
_SESSION_CHANGING_PACKETS = frozenset((2, 5, 6, 7, 9, 11))

_HANDLERS = {
    p.Connect: handle_connect,
    p.Publish: handle_publish,
    p.Puback: handle_puback,
    p.Pubrec: handle_pubrec,
    p.Pubrel: handle_pubrel,
    p.Pubcomp: handle_pubcomp,
    p.Subscribe: handle_subscribe,
    p.Unsubscribe: handle_unsubscribe,
    p.Pingreq: handle_pingreq,
    p.Disconnect: handle_disconnect,
    p.Auth: handle_auth,
    p.Connack: handle_unexpected,
    p.Suback: handle_unexpected,
    p.Unsuback: handle_unexpected,
    p.Pingresp: handle_unexpected,
}


def _not_before_connect(client, packet, now):
    client.protocol_error(now, message=f"{type(packet).__name__} before CONNECT")


# Dispatch tables: a client uses the first until CONNECT succeeds, then the second, so
# "nothing but CONNECT first" costs no check per packet afterwards.
HANDLERS_BEFORE_CONNECT = {cls: (h if cls is p.Connect else _not_before_connect) for cls, h in _HANDLERS.items()}
HANDLERS_CONNECTED = dict(_HANDLERS)


class Broker(Database):
    """The broker core; `Database` (database.py) holds the per-session message queues."""

    def __init__(self, config, log, security=None, now: float = 0.0, wall_clock=time.time):
        self.config = config
        self.log = log
        self.security = security
        # Plugin notifications (on_connect / on_disconnect / on_message) cost a call per
        # message; only make them when a plugin is loaded.
        self.notify_plugins = bool(getattr(security, "has_plugins", False))
        self.wall_clock = wall_clock
        self.limits = Limits(config)
        self._listener_limits: dict[int, tuple[object, ListenerLimits]] = {}
        self.handlers_connected = HANDLERS_CONNECTED  # for handle_connect (no import cycle)
        self.debug = log.enabled(LogType.DEBUG)
        self.sessions: dict[str, Session] = {}
        self.clients: set[Client] = set()   # connected clients
        self.subs = SubscriptionTree()
        self.retained = RetainStore()
        self.timers = TimerHeap()
        self.keepalive_buckets: dict[int, set] = {}  # keepalive.py: second -> clients due then
        self.stats = Stats()
        self.start_time = now
        self._pending: list[Client] = []
        self.shutting_down = False
        self.persist = None   # midge.persist Changes while persistence is on (server sets it)
        self.router = None    # midge.broker.router.Router in a cluster (server/cluster.py sets it)
        self.now = now   # latest time the server gave us (for log lines published to $SYS)
        self.sys = sys_tree.SysTree(self, now)
        set_publisher = getattr(log, "set_topic_publisher", None)
        if set_publisher is not None:
            set_publisher(self._publish_log_line)

    def _publish_log_line(self, topic: str, payload: bytes) -> None:
        """`log_dest topic`: each log line to $SYS/broker/log/..., QoS 0, not retained,
        expiring after 20 s (Mosquitto logging.c)."""
        now = self.now
        self.publish(Message(topic, payload, 0, False, {}, now + 20), now)

    # -- Server interface --------------------------------------------------------------

    def listener_limits(self, listener) -> ListenerLimits:
        """The options a connect reads from `listener`, looked up once per listener."""
        entry = self._listener_limits.get(id(listener))
        if entry is None or entry[0] is not listener:
            entry = self._listener_limits[id(listener)] = (listener, ListenerLimits(listener))
        return entry[1]

    def new_client(self, listener, peer: str, tls=None, io=None, now: float = 0.0) -> Client:
        self.now = now
        client = Client(self, listener, peer, tls, io, now, HANDLERS_BEFORE_CONNECT)
        self.stats.sockets += 1
        keepalive.add(self, client, now)
        return client

    def take_pending(self) -> list[Client]:
        pending = self._pending
        if not pending:
            return []
        self._pending = []
        for client in pending:
            client.pending = False
        return pending

    def writing_resumed(self, client: Client, now: float) -> None:
        client.paused_qos0 = 0
        session = client.session
        if session is not None and client.state == CONNECTED and session.client is client:
            self.pump(session, now)

    def next_deadline(self) -> float | None:
        return self.timers.next_deadline(self._timer_live)

    def handle_timer(self, now: float) -> None:
        self.now = now
        for kind, owner, token in self.timers.pop_due(now):
            if kind == keepalive.KIND:
                keepalive.check(self, token, now)
            elif kind == will_delay.KIND:
                will_delay.check(self, owner, token, now)
            elif kind == session_expiry.KIND:
                session_expiry.check(self, owner, token, now)
            elif kind == sys_tree.KIND:
                self.sys.check(token, now)
            elif kind == _CONNECT_KIND:
                if owner.state != CLOSED:
                    owner.resume_deferred(now)

    def _timer_live(self, kind, owner, token) -> bool:
        if kind == keepalive.KIND:
            return keepalive.live(self, token)
        if kind == will_delay.KIND:
            return token == owner.will_token
        if kind == session_expiry.KIND:
            return token == owner.expiry_token
        if kind == sys_tree.KIND:
            return token == self.sys.token
        if kind == _CONNECT_KIND:
            return owner.state != CLOSED
        return True

    def defer_connect(self, client: Client, when: float) -> None:
        """Handle `client`'s held CONNECT at `when` (login delay)."""
        self.timers.add(when, _CONNECT_KIND, client, 0)

    def reload(self, config, now: float) -> None:
        """SIGHUP: Mosquitto's reloaded options, plus the limits Mosquitto forgets to apply."""
        self.notify_plugins = bool(getattr(self.security, "has_plugins", False))
        self.config = config
        self.limits = Limits(config)
        self._listener_limits.clear()
        self.debug = self.log.enabled(LogType.DEBUG)
        self.sys.reconfigure(now)
        security = self.security
        still_allowed = getattr(security, "still_allowed", None) if security is not None else None
        if still_allowed is not None:
            for client in list(self.clients):
                try:
                    allowed = still_allowed(client)
                except Exception:
                    allowed = False
                if not allowed:
                    client.close(now, "administrative", reason_code=ReasonCode.ADMINISTRATIVE_ACTION)

    def shutdown(self, now: float) -> None:
        """SIGTERM: tell v5 clients the server is going away, close every connection."""
        self.shutting_down = True
        for client in list(self.clients):
            client.will = None
            client.close(now, "shutdown", reason_code=ReasonCode.SERVER_SHUTTING_DOWN)

    def dump_subscriptions(self) -> list[str]:
        """SIGUSR2 (Mosquitto prints the tree): one line per subscription."""
        lines = []
        for session in self.sessions.values():
            for key, sub in session.subscriptions.items():
                lines.append(f"{sub.filter} (QoS {sub.qos}) {session.client_id}"
                             + (f" share {sub.group}" if sub.group else ""))
        return sorted(lines)

    # -- Output --------------------------------------------------------------------------

    def mark_pending(self, client: Client) -> None:
        if not client.pending:
            client.pending = True
            self._pending.append(client)

    def write(self, client: Client, data: bytes) -> None:
        if client.state == CLOSED and not client.closing:
            return
        client.output.append(data)
        persist = self.persist
        if persist is not None and data[0] >> 4 in _SESSION_CHANGING_PACKETS and client.session is not None:
            # CONNACK, PUBREC, PUBREL, PUBCOMP, SUBACK, UNSUBACK follow a change of the
            # session's durable state (persistence writes it before the bytes go out).
            persist.sessions.add(client.session)
        stats = self.stats
        stats.messages_sent += 1
        stats.bytes_sent += len(data)
        if not client.pending:
            client.pending = True
            self._pending.append(client)

    # -- Sessions ----------------------------------------------------------------------

    def create_session(self, client_id: str) -> Session:
        session = Session(client_id)
        self.sessions[client_id] = session
        total = len(self.sessions)
        if total > self.stats.clients_maximum:
            self.stats.clients_maximum = total
        return session

    def client_connected(self, client: Client, now: float) -> None:
        self.clients.add(client)
        keepalive.add(self, client, now)
        if self.notify_plugins:
            self.security.notify("on_connect", client)
        if self.router is not None:
            self.router.client_connected(client, now)   # client ids are cluster-wide

    def cancel_session_expiry(self, session: Session) -> None:
        session_expiry.remove(session)

    def cancel_delayed_will(self, session: Session) -> None:
        will_delay.remove(session)

    def client_gone(self, client: Client, now: float, send_will: bool) -> None:
        """A connected client's network connection ended (any reason)."""
        self.clients.discard(client)
        if self.notify_plugins:
            self.security.notify("on_disconnect", client)
        keepalive.remove(client)
        session = client.session
        will = client.will
        client.will = None
        if session is None or session.client is not client:
            if will is not None and send_will:
                self.publish_will(client, will, now)
            return
        session.client = None
        session.disconnected_at = now
        if self.persist is not None:
            self.persist.sessions.add(session)
        if will is not None and send_will:
            delay = will.properties.get(Property.WILL_DELAY_INTERVAL, 0) if client.version == 5 else 0
            if delay and session.expiry_interval:
                will_delay.add(self, session, will, client, delay, now)
            else:
                self.publish_will(client, will, now)
        if session.expiry_interval == 0:
            self.end_session(session, now)
        else:
            # Offline: QoS 0 messages are kept only with queue_qos0_messages.
            if not self.limits.queue_qos0_messages and session.queue:
                kept = [d for d in session.queue if d.qos]
                if len(kept) != len(session.queue):
                    session.queue.clear()
                    session.queue.extend(kept)
                    session.queue_bytes = sum(len(d.message.payload) for d in kept)
            session_expiry.add(self, session, now)

    def end_session(self, session: Session, now: float, expired: bool = False) -> None:
        """Forget a session: subscriptions, messages; send a will still waiting on its delay."""
        if expired and self.limits.connection_messages and self.log.enabled(LogType.NOTICE):
            self.log.notice(f"Expiring client {session.client_id} due to timeout.")
        if self.sessions.get(session.client_id) is session:
            del self.sessions[session.client_id]
        if self.persist is not None:
            self.persist.sessions.add(session)
        session_expiry.remove(session)
        if session.will is not None:
            will, client = session.will, session.will_client
            will_delay.remove(session)
            self.publish_will(client, will, now)
        for key, sub in list(session.subscriptions.items()):
            self.subs.remove(session, sub.filter, sub.group)
        session.subscriptions.clear()
        session.clear_messages()

    def send_delayed_will(self, session: Session, now: float) -> None:
        will, client = session.will, session.will_client
        will_delay.remove(session)
        if will is not None:
            self.publish_will(client, will, now)

    def publish_will(self, client, will, now: float) -> None:
        """Publish a will, checking the publisher's write access now (not at CONNECT)."""
        if not self.may_publish(client, will.topic):
            return
        props = will.properties
        if props:
            props = {k: v for k, v in props.items() if k != Property.WILL_DELAY_INTERVAL}
        expiry_at = None
        interval = props.get(Property.MESSAGE_EXPIRY_INTERVAL) if props else None
        if interval is not None:
            expiry_at = now + interval
            props = {k: v for k, v in props.items() if k != Property.MESSAGE_EXPIRY_INTERVAL}
        message = Message(will.topic, will.payload, will.qos, will.retain, props or {}, expiry_at,
                          client.client_id if client else None, client)
        self.publish(message, now)

    def resume_session(self, session: Session, client: Client, now: float) -> None:
        """Retransmit unacknowledged PUBLISH (DUP) and PUBREL in order, then the queue."""
        for delivery in session.inflight.values():
            if delivery.state == WAIT_COMP:
                client.send_bytes(bytes((0x62, 2, delivery.packet_id >> 8, delivery.packet_id & 0xFF)))
            else:
                data = self.encode_publish(client, delivery.message, delivery.qos, delivery.retain,
                                           True, delivery.packet_id, delivery.sub_ids, now)
                self.write(client, data)
        self.pump(session, now)

    # -- Access checks -------------------------------------------------------------------

    def may_publish(self, client, topic: str) -> bool:
        if topic.startswith("$"):
            if topic.startswith("$share/"):
                return False
            if topic.startswith("$SYS/"):
                parts = topic.split("/")
                # Bridges may report their state; nothing else in $SYS is writable.
                if not (len(parts) == 5 and parts[1] == "broker" and parts[2] == "connection"
                        and parts[4] == "state"):
                    return False
        security = self.security
        if security is None or client is None:
            return True
        return security.acl_check(client, topic, WRITE)

    def may_subscribe(self, client, topic_filter: str) -> bool:
        security = self.security
        if security is None:
            return True
        return security.acl_check(client, topic_filter, SUBSCRIBE)

    def may_unsubscribe(self, client, topic_filter: str) -> bool:
        security = self.security
        if security is None:
            return True
        return security.acl_check(client, topic_filter, UNSUBSCRIBE)

    def _may_read(self, session, topic: str) -> bool:
        security = self.security
        if security is None:
            return True
        client = session.client or session.last_client
        if client is None:
            return True
        return security.acl_check(client, topic, READ)

    # -- Routing -------------------------------------------------------------------------

    def publish(self, message: Message, now: float, wire: bytes | None = None) -> bool:
        """Store if retained, deliver to every matching session; True if any matched.

        `wire`, if given, is the message as a QoS 0 PUBLISH for a v3 client without
        mount point (the bytes received from a v3 publisher): sent as they are.
        """
        routed = False
        if self.router is not None:
            routed = self.router.route(message, now)   # other nodes' share (router.py)
        if message.retain:
            self.retained.store(message)
        limits = self.limits
        if limits.allow_duplicate_messages:
            return self._publish_per_subscription(message, now) or routed
        entries, groups = self.subs.match_sessions(message.topic)
        if not entries and not groups:
            return routed
        origin = message.origin_id
        upgrade = limits.upgrade_outgoing_qos
        msg_qos = message.qos
        msg_retain = message.retain
        topic = message.topic
        security = self.security
        check_read = security is not None
        # No ACL file or plugin anywhere: acl_check(READ) allows every client with an ID,
        # so deliveries to a connected client skip the call; it is still asked for a
        # session without any client. Saves 4 % of QoS 0, 14 % of fan-out.
        # (try, not getattr(..., False): 35 ns less per message; the stand-ins of the
        # tests have no such flag)
        read_open = False
        if check_read:
            try:
                read_open = security.acl_open
            except AttributeError:
                pass
        debug = self.debug
        cache = None      # encoded bytes shared by recipients with identical packets
        plain = None      # the commonest packet (QoS 0, v3, no mount point, no retain flag)
        pending = self._pending
        sent = 0
        sent_bytes = 0
        for session, sub_qos, rap, ids, no_local, subs in entries:
            if no_local and origin is not None and session.client_id == origin:
                # Only this session's subscriptions without No Local count (v5 3.8.3.1).
                subs = [sub for sub in subs if not sub.no_local]
                if not subs:
                    continue
                sub_qos = max(sub.qos for sub in subs)
                rap = any(sub.retain_as_published for sub in subs)
                ids = [sub.identifier for sub in subs if sub.identifier is not None] or None
            if check_read and not read_open and not security.acl_check(
                    session.client or session.last_client, topic, READ):
                continue   # (inlined _may_read: one call less per delivery)
            qos = sub_qos if upgrade else (msg_qos if msg_qos < sub_qos else sub_qos)
            retain = msg_retain and rap
            client = session.client
            if (qos == 0 and ids is None and client is not None and client.state == CONNECTED
                    and not debug and not client.topic_alias_max_out):
                # The common case inlined (QoS 0 to a connected client): saves a call and
                # the per-recipient counter updates. Paused clients too: a subscriber
                # slower than its publisher is paused most of the time (bench: most QoS 0
                # deliveries took Database._deliver, 12-20 % of the CPU).
                if client.write_paused:
                    # As in Database._deliver: the paused transport is Mosquitto's full
                    # per-client queue; beyond max_queued_messages QoS 0 is dropped.
                    max_queued = limits.max_queued_messages
                    if max_queued and client.paused_qos0 >= max_queued:
                        self.stats.publish_dropped += 1
                        continue
                    client.paused_qos0 += 1
                if not retain and client.version != 5 and not client.mount_point:
                    # Encoded once per message, straight from the codec (no cache key, no
                    # Database.encode_publish call; in-process: QoS 0 2.42 -> 2.31 us/msg,
                    # fan-out 1 -> 10 5.2 -> 4.5 us/msg), or not at all: the received bytes.
                    # (No size check: only a v5 client sets a Maximum Packet Size.)
                    if plain is None:
                        plain = wire or self.encode_qos0_v3(topic, message.payload, False)
                    data = plain
                else:
                    # Encode once per (version, retain, mount point): every recipient of
                    # this message with the same key gets the very same bytes object.
                    if cache is None:
                        cache = {}
                    key = (client.version, retain, client.mount_point)
                    data = cache.get(key)
                    if data is None:
                        data = cache[key] = self.encode_publish(client, message, 0, retain, False, None, None, now)
                    if client.max_packet_out and len(data) > client.max_packet_out:
                        self.stats.publish_dropped += 1
                        continue
                client.output.append(data)
                if not client.pending:
                    client.pending = True
                    pending.append(client)
                sent += 1
                sent_bytes += len(data)
                continue
            if read_open and client is None and not security.acl_check(session.last_client, topic, READ):
                # (an open ACL allows READ to every client with an ID, which a connected
                # client always has: only an offline session's last client is asked;
                # in-process QoS 1 6.8 -> 6.45 us/msg)
                continue
            if cache is None:
                cache = {}
            self._deliver(session, message, qos, retain, ids, now, cache)
        if sent:
            stats = self.stats
            stats.messages_sent += sent
            stats.bytes_sent += sent_bytes
            stats.publish_sent += sent
            stats.publish_bytes_sent += sent * len(message.payload)
        if groups:
            if cache is None:
                cache = {}
            for group in groups:
                sub = group.pick()
                if sub is None:
                    continue
                session = sub.session
                if check_read and not self._may_read(session, topic):
                    continue
                qos = sub.qos if upgrade else min(msg_qos, sub.qos)
                ids = [sub.identifier] if sub.identifier is not None else None
                self._deliver(session, message, qos, msg_retain and sub.retain_as_published, ids, now,
                              cache)
        return True

    def publish_remote(self, message: Message, now: float) -> bool:
        """A message from another node of the cluster: local delivery only, never
        routed back out."""
        router, self.router = self.router, None
        try:
            return self.publish(message, now)
        finally:
            self.router = router

    def _publish_per_subscription(self, message: Message, now: float) -> bool:
        """allow_duplicate_messages true: v3 sessions get one copy per matching
        subscription (Mosquitto 2.0); v5 sessions still get one with every identifier."""
        subs, groups = self.subs.match(message.topic)
        if not subs and not groups:
            return False
        origin = message.origin_id
        upgrade = self.limits.upgrade_outgoing_qos
        msg_qos = message.qos
        topic = message.topic
        cache: dict = {}
        per_session: dict = {}
        for sub in subs:
            session = sub.session
            if sub.no_local and origin is not None and session.client_id == origin:
                continue
            if session.protocol != 5:
                if self._may_read(session, topic):
                    qos = sub.qos if upgrade else min(msg_qos, sub.qos)
                    self._deliver(session, message, qos, message.retain and sub.retain_as_published,
                                  None, now, cache)
                continue
            entry = per_session.setdefault(session, [0, False, []])
            entry[0] = max(entry[0], sub.qos)
            entry[1] = entry[1] or sub.retain_as_published
            if sub.identifier is not None and sub.identifier not in entry[2]:
                entry[2].append(sub.identifier)
        for session, (sub_qos, rap, ids) in per_session.items():
            if not self._may_read(session, topic):
                continue
            qos = sub_qos if upgrade else min(msg_qos, sub_qos)
            self._deliver(session, message, qos, message.retain and rap, ids or None, now, cache)
        for group in groups:
            sub = group.pick()
            if sub is None or not self._may_read(sub.session, topic):
                continue
            qos = sub.qos if upgrade else min(msg_qos, sub.qos)
            ids = [sub.identifier] if sub.identifier is not None else None
            self._deliver(sub.session, message, qos, message.retain and sub.retain_as_published, ids, now, cache)
        return True

    def send_retained(self, client: Client, sub, now: float) -> None:
        """Retained messages for a new subscription, with the retain flag set."""
        messages = self.retained.match(sub.filter)
        if not messages:
            return
        session = client.session
        upgrade = self.limits.upgrade_outgoing_qos
        ids = [sub.identifier] if sub.identifier is not None else None
        # No ACL anywhere (`acl_open`): READ is allowed to this subscriber, which has an ID.
        check_read = self.security is not None and not getattr(self.security, "acl_open", False)
        check_source = self.security is not None and self.limits.check_retain_source
        for message in messages:
            if message.expired(now):
                self.retained.store(Message(message.topic, b"", 0, True, {}))
                continue
            if check_read and not self._may_read(session, message.topic):
                continue
            if check_source and message.origin_client is not None and not self.security.acl_check(
                    message.origin_client, message.topic, WRITE):
                continue   # check_retain_source: the publisher lost its write access
            qos = sub.qos if upgrade else min(message.qos, sub.qos)
            self._deliver(session, message, qos, True, ids, now, {})

__all__ = ["Broker"]
