"""The broker: sessions, routing and delivery, timers, reload and shutdown.

No I/O and no clock: bytes go to `client.output`, clients with something to
write or to close are collected for `take_pending()`, and time is an argument.

Backpressure and drop policy (a slow subscriber never blocks anyone else):

- QoS 1/2: at most `max_inflight_messages` (and the v5 client's receive maximum,
  and `max_inflight_bytes`) unacknowledged per session; the rest waits in the
  session queue, bounded by `max_queued_messages` / `max_queued_bytes`; beyond
  that new messages are dropped. While the server has paused writing to a client,
  new QoS 1/2 messages wait in the queue and flow again on `writing_resumed`.
  A connected subscriber whose queue reaches half its limit holds back the
  publishers feeding it until it has drained, for at most 0.5 s (flow.py): one that
  keeps up loses nothing to a publisher's batching, one that does not is dropped for.
- QoS 0 to a connected client is written at once; while writing is paused, at most
  `max_queued_messages` more are accepted until the transport drains, the rest are
  dropped (Mosquitto drops QoS 0 when its per-client packet queue is full).
- Offline sessions queue QoS 1/2 (and QoS 0 with `queue_qos0_messages`) within the
  same limits. Every drop counts in `$SYS/broker/publish/messages/dropped`.
"""

from __future__ import annotations

import time

from midge.config.model import Config, ListenerConfig
from midge.log import Log
from midge.broker import flow, keepalive, session_expiry, sys_tree, will_delay
from midge.broker.cleanup import attempt
from midge.broker.client import CLOSED, CONNECTED, Client
from midge.broker.database import Database
from midge.broker.handle_connect import handle_connect
from midge.broker.handle_disconnect import handle_auth, handle_disconnect, handle_pingreq, handle_unexpected
from midge.broker.handle_publish import (
    handle_puback, handle_pubcomp, handle_publish, handle_pubrec, handle_pubrel,
)
from midge.broker.handle_subscribe import handle_subscribe, handle_unsubscribe
from midge.broker.limits import Limits, ListenerLimits
from midge.broker.message import WAIT_COMP, WILL_ONLY_PROPERTIES, Message
from midge.broker.retain import RetainStore
from midge.broker.router import NO_ROUTE
from midge.broker.session import Session
from midge.broker.stats import Stats
from midge.broker.subs import SubscriptionTree, merge_by_session
from midge.broker.timers import TimerHeap
from midge.log import LogType
from midge.protocol import packets as p
from midge.protocol.codec import PUBREL_BYTE, encode_success_ack
from midge.protocol.constants import Property, ReasonCode
from midge.protocol.properties import properties_without

from midge.security import SUBSCRIBE, UNSUBSCRIBE, WRITE, Security, dollar_topic_allowed

_CONNECT_KIND = "connect"
_FLOW_KINDS = (flow.KIND, flow.RESUME_KIND)

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

    def __init__(self, config: Config, log: Log, security: Security, now: float = 0.0,
                 wall_clock=time.time):
        self.config = config
        self.log = log
        self.security = security
        # Plugin notifications (on_connect / on_disconnect / on_message) cost a call per
        # message; only make them when a plugin is loaded.
        self.notify_plugins = security.has_plugins
        self.wall_clock = wall_clock
        self.limits = Limits(config)
        self._listener_limits: dict[int, tuple[object, ListenerLimits]] = {}
        self.internal_listener = _internal_listener(config)
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
        self.read_changes: list[Client] = []   # flow.py: publishers held or released
        self.shutting_down = False
        self.persist = None   # midge.persist Changes while persistence is on (server sets it)
        self.router = None    # midge.broker.router.Router in a cluster (server/cluster.py sets it)
        self.now = now   # latest time the server gave us (for log lines published to $SYS)
        self.sys = sys_tree.SysTree(self, now)
        log.set_topic_publisher(self._publish_log_line)

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
        """A connection; `listener` None for one midge makes itself (a bridge's local end)."""
        self.now = now
        if listener is None:
            listener = self.internal_listener
        client = Client(self, listener, peer, tls, io, now, HANDLERS_BEFORE_CONNECT)
        self.stats.sockets += 1
        keepalive.add(self, client, now)
        return client

    def take_read_changes(self) -> list[Client]:
        """Clients whose socket reading should stop or resume (flow.py): the server
        asks `flow.reading_allowed(client)` for each."""
        changes, self.read_changes = self.read_changes, []
        return changes

    def queued_messages(self, client_id: str) -> int:
        """How many messages wait in the session `client_id` (0 without one): what a
        lazy bridge compares with its `threshold`."""
        session = self.sessions.get(client_id)
        return session.queued if session is not None else 0

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
            elif kind in _FLOW_KINDS:
                flow.check(self, kind, owner, token, now)

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
        if kind in _FLOW_KINDS:
            return flow.live(kind, owner, token)
        return True

    def defer_connect(self, client: Client, when: float) -> None:
        """Handle `client`'s held CONNECT at `when` (login delay)."""
        self.timers.add(when, _CONNECT_KIND, client, 0)

    def reload(self, config, now: float) -> None:
        """SIGHUP: Mosquitto's reloaded options, plus the limits Mosquitto forgets to apply."""
        self.notify_plugins = self.security.has_plugins
        self.config = config
        self.limits = Limits(config)
        self._listener_limits.clear()
        self.internal_listener = _internal_listener(config)
        self.debug = self.log.enabled(LogType.DEBUG)
        self.sys.reconfigure(now)
        still_allowed = self.security.still_allowed
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
            attempt(self.log, f"closing client {client.id_for_log} at shutdown", client.close, now,
                    "shutdown", ReasonCode.SERVER_SHUTTING_DOWN)

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
        """A connected client's network connection ended (any reason).

        Each step that can fail runs through `attempt` (cleanup.py): a will or a plugin
        that raises is logged and the session is still ended or parked (issue 14).
        """
        log = self.log
        self.clients.discard(client)
        keepalive.remove(client)
        who = f"closing client {client.id_for_log}"
        if self.notify_plugins:
            attempt(log, f"{who} (plugin on_disconnect)", self.security.notify, "on_disconnect", client)
        session = client.session
        will = client.will
        client.will = None
        if session is None or session.client is not client:
            if will is not None and send_will:
                attempt(log, f"{who} (publishing its will)", self.publish_will, client, will, now)
            return
        session.client = None
        session.disconnected_at = now
        if session.flow is not None:
            attempt(log, f"{who} (releasing the publishers it held)", flow.session_gone, self, session, now)
        if self.persist is not None:
            self.persist.sessions.add(session)
        if self.router is not None:
            self.router.session_changed(session)   # the cluster's record of it (session_moves.py)
        if will is not None and send_will:
            attempt(log, f"{who} (publishing its will)", self._will_on_close, session, client, will, now)
        if session.expiry_interval == 0:
            attempt(log, f"{who} (ending its session)", self.end_session, session, now)
        else:
            attempt(log, f"{who} (keeping its session)", self._park_session, session, now)

    def _will_on_close(self, session: Session, client: Client, will, now: float) -> None:
        delay = will.properties.get(Property.WILL_DELAY_INTERVAL, 0) if client.version == 5 else 0
        if delay and session.expiry_interval:
            will_delay.add(self, session, will, client, delay, now)
        else:
            self.publish_will(client, will, now)

    def _park_session(self, session: Session, now: float) -> None:
        """Offline: QoS 0 messages are kept only with queue_qos0_messages."""
        if not self.limits.queue_qos0_messages and session.queue:
            kept = [d for d in session.queue if d.qos]
            if len(kept) != len(session.queue):
                session.queue.clear()
                session.queue.extend(kept)
                session.queue_bytes = sum(len(d.message.payload) for d in kept)
        session_expiry.add(self, session, now)

    def end_session(self, session: Session, now: float, expired: bool = False) -> None:
        """Forget a session: subscriptions, messages; send a will still waiting on its delay.

        The session leaves the broker's tables first; a will that raises is logged and
        the rest still happens. The session lets go of its clients at the end, so no
        Client <-> Session cycle outlives it (issue 14: such cycles kept a closed
        connection's buffers until the cycle collector ran).
        """
        log = self.log
        if expired and self.limits.connection_messages and log.enabled(LogType.NOTICE):
            log.notice(f"Expiring client {session.client_id} due to timeout.")
        if self.sessions.get(session.client_id) is session:
            del self.sessions[session.client_id]
        if self.persist is not None:
            self.persist.sessions.add(session)
        if self.router is not None:
            self.router.session_changed(session)
        session_expiry.remove(session)
        if session.will is not None:
            will, client = session.will, session.will_client
            will_delay.remove(session)
            attempt(log, f"ending session {session.client_id} (publishing its will)",
                    self.publish_will, client, will, now)
        for key, sub in list(session.subscriptions.items()):
            attempt(log, f"ending session {session.client_id} (unsubscribing {key!r})",
                    self.subs.remove, session, sub.filter, sub.group)
        session.subscriptions.clear()
        session.clear_messages()
        session.last_client = None
        session.will_client = None

    def send_delayed_will(self, session: Session, now: float) -> None:
        will, client = session.will, session.will_client
        will_delay.remove(session)
        if self.persist is not None:
            self.persist.sessions.add(session)   # its stored will goes
        if will is not None:
            self.publish_will(client, will, now)

    def publish_will(self, client, will, now: float) -> None:
        """Publish a will, checking the publisher's write access now (not at CONNECT)."""
        if not self.may_publish(client, will.topic):
            return
        props = will.properties
        raw = will.property_bytes
        expiry_at = None
        if props:
            interval = props.get(Property.MESSAGE_EXPIRY_INTERVAL)
            if interval is not None:
                expiry_at = now + interval
            props = {k: v for k, v in props.items() if k not in WILL_ONLY_PROPERTIES}
            if raw:   # forwarded in the order they came (as Mosquitto)
                raw = properties_without(raw, WILL_ONLY_PROPERTIES)
        message = Message(will.topic, will.payload, will.qos, will.retain, props or {}, expiry_at,
                          client.client_id if client else None, client, raw)
        self.publish(message, now)

    def resume_session(self, session: Session, client: Client, now: float) -> None:
        """Retransmit unacknowledged PUBLISH (DUP) and PUBREL in order, then the queue;
        first drop what this client may no longer read (the ACL may have changed while
        it was away, or it is another user: Mosquitto's connection_check_acl)."""
        if not self.security.acl_open:
            self.drop_unreadable(session, client)
        for delivery in session.inflight.values():
            if delivery.state == WAIT_COMP:
                client.send_bytes(encode_success_ack(PUBREL_BYTE, delivery.packet_id))
            else:
                data = self.encode_publish(client, delivery.message, delivery.qos, delivery.retain,
                                           True, delivery.packet_id, delivery.sub_ids, now)
                self.write(client, data)
        self.pump(session, now)

    # -- Access checks -------------------------------------------------------------------

    def may_publish(self, client, topic: str) -> bool:
        """WRITE access, with Mosquitto's `$` rules (security/)."""
        if client is None:
            return dollar_topic_allowed(topic, WRITE)
        return self.security.acl_check(client, topic, WRITE)

    def may_subscribe(self, client, topic_filter: str) -> bool:
        return self.security.acl_check(client, topic_filter, SUBSCRIBE)

    def may_unsubscribe(self, client, topic_filter: str) -> bool:
        return self.security.acl_check(client, topic_filter, UNSUBSCRIBE)

    # -- Routing -------------------------------------------------------------------------

    def publish(self, message: Message, now: float, wire: bytes | None = None) -> bool:
        """Store if retained, deliver to every matching session; True if any matched.

        `wire`, if given, is the message as a QoS 0 PUBLISH for a v3 client without
        mount point (the bytes received from a v3 publisher): sent as they are.
        """
        routed = False
        router = self.router
        if router is not None and (message.retain or router.routes.get(message.topic) is not NO_ROUTE):
            # Other nodes' share (router.py); a topic cached as wanted by no other node
            # costs this lookup only.
            routed = router.route(message, now, wire)
        if message.retain:
            self.retained.store(message)
        if self.limits.allow_duplicate_messages:
            return self._publish_per_subscription(message, now) or routed
        entries, groups = self.subs.match_sessions(message.topic)
        if not entries and not groups:
            return routed
        cache = self.deliver(message, entries, now, wire)
        if groups:
            self.deliver(message, _group_picks(groups), now, None, cache)
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
        copies = [(sub.session, sub.qos, sub.retain_as_published, None, sub.no_local, (sub,))
                  for sub in subs if sub.session.protocol != 5]
        copies.extend(merge_by_session(sub for sub in subs if sub.session.protocol == 5))
        cache = self.deliver(message, copies, now)
        self.deliver(message, _group_picks(groups), now, None, cache)
        return True

    def send_retained(self, client: Client, sub, now: float) -> None:
        """Retained messages for a new subscription, with the retain flag set."""
        messages = self.retained.match(sub.filter)
        if not messages:
            return
        session = client.session
        ids = [sub.identifier] if sub.identifier is not None else None
        check_source = self.limits.check_retain_source
        entry = ((session, sub.qos, True, ids, False, None),)
        for message in messages:
            if message.expired(now):
                self.retained.store(Message(message.topic, b"", 0, True, {}))
                continue
            if check_source and message.origin_client is not None and not self.security.acl_check(
                    message.origin_client, message.topic, WRITE):
                continue   # check_retain_source: the publisher lost its write access
            self.deliver(message, entry, now, None, None, True)


def _internal_listener(config: Config) -> ListenerConfig:
    """The listener of connections midge makes itself (a bridge's local end): every
    listener option at its default, the global security options, and port -1, which
    no socket has (a persisted session of such a client maps to no listener)."""
    listener = ListenerConfig(port=-1)
    listener.security = config.security
    return listener


def _group_picks(groups) -> list:
    """One member of each `$share` group (round robin), as delivery entries."""
    picks = []
    for group in groups:
        sub = group.pick()
        if sub is not None:
            picks.append((sub.session, sub.qos, sub.retain_as_published,
                          [sub.identifier] if sub.identifier is not None else None, False, None))
    return picks


__all__ = ["Broker"]
