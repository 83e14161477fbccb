"""Per-session message queues and flows (Mosquitto's database.c): encode a
PUBLISH for one client, send it or queue it within the inflight window and queue
limits, move the queue on as acknowledgements arrive, outgoing topic aliases.

A mixin of `Broker`: it uses the broker's `limits`, `stats`, `debug`, `log` and
`write`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from midge.broker import flow
from midge.broker.client import CONNECTED
from midge.broker.message import WAIT_ACK, WAIT_COMP, Delivery
from midge.empty import EMPTY_MAP
from midge.protocol.codec import (
    encode_publish as codec_encode_publish, encode_publish_qos0_v3, prepare_publish,
    publish_property_block,
)
from midge.security import READ

if TYPE_CHECKING:   # for the annotations of what the mixin uses of Broker
    from midge.broker.limits import Limits
    from midge.broker.stats import Stats
    from midge.broker.timers import TimerHeap
    from midge.log import Log
    from midge.persist.changes import Changes
    from midge.security import Security


class Database:
    # What the mixin uses of `Broker` (set by Broker.__init__).
    limits: Limits
    stats: Stats
    security: Security
    log: Log
    debug: bool
    persist: Changes | None
    _pending: list
    now: float            # the latest time the server gave the broker
    timers: TimerHeap
    read_changes: list    # flow.py: publishers held or released

    def write(self, client, data: bytes) -> None:
        raise NotImplementedError   # Broker.write

    def _topic_and_properties(self, client, message, sub_ids, now):
        """The topic as this client sees it and (v5) the PUBLISH's property block:
        the subscription identifiers, the message's properties as they came (their
        received bytes, not re-encoded), the message expiry left, as Mosquitto orders
        them (codec.publish_property_block); midge's outgoing topic alias last."""
        topic = message.topic
        mount = client.mount_point
        if mount and topic.startswith(mount):
            topic = topic[len(mount):]
        if client.version != 5:
            return topic, None
        alias = None
        if client.topic_alias_max_out:
            topic, alias = self._alias(client, topic)
        expiry = None
        if message.expiry_at is not None:
            # Whole seconds left, rounded up; none once nothing is left (as Mosquitto).
            expiry = int(message.expiry_at - now + 0.999) or None
        return topic, publish_property_block(message.forwarded_properties(), sub_ids, expiry, alias)

    def _alias(self, client, topic):
        """Outgoing v5 topic alias: the first PUBLISH of a topic sets an alias (while
        the client's Topic Alias Maximum allows), later ones send it with an empty
        topic; (topic to send, alias or None). `client.alias_set_by_last` lets a
        dropped packet undo what it set."""
        alias = client.aliases_out.get(topic)
        if alias is not None:
            client.alias_set_by_last = None
            return "", alias
        if len(client.aliases_out) < client.topic_alias_max_out:
            alias = len(client.aliases_out) + 1
            if not client.aliases_out:
                client.aliases_out = {}  # was the shared EMPTY_MAP
            client.aliases_out[topic] = alias
            client.alias_set_by_last = topic
            return topic, alias
        client.alias_set_by_last = None
        return topic, None

    def _dropped_too_large(self, client) -> None:
        """A PUBLISH over the client's maximum packet size is not sent; an alias it
        would have set must not be used later."""
        self.stats.publish_dropped += 1
        topic = client.alias_set_by_last
        if topic is not None:
            client.alias_set_by_last = None
            del client.aliases_out[topic]

    def encode_publish(self, client, message, qos, retain, dup, packet_id, sub_ids, now) -> bytes:
        if not qos and client.version != 5 and not client.mount_point:
            # QoS 0 to a v3 client without mount point: no properties, no alias, no
            # packet id (saves a call and the general encoder's branches per message).
            return encode_publish_qos0_v3(message.topic, message.payload, retain)
        topic, block = self._topic_and_properties(client, message, sub_ids, now)
        # codec.encode_publish skips building a Publish object per recipient.
        return codec_encode_publish(topic, message.payload, qos, retain, dup, packet_id, None,
                                    client.version, block)

    def _prepared(self, client, message, qos, retain, sub_ids, now, cache):
        """Bytes of a QoS 1/2 PUBLISH minus the packet id, shared by recipients that
        differ only in packet id (saves re-encoding topic and properties per recipient)."""
        key = None
        if sub_ids is None and cache is not None and not client.topic_alias_max_out:
            key = (client.version, qos, retain, client.mount_point)
            prepared = cache.get(key)
            if prepared is not None:
                return prepared
        topic, block = self._topic_and_properties(client, message, sub_ids, now)
        prepared = prepare_publish(topic, message.payload, qos, retain, None, client.version, block)
        if key is not None:
            cache[key] = prepared
        return prepared

    def deliver(self, message, entries, now, wire=None, cache=None, retained=False):
        """The delivery policy, in one place, for every way a message reaches sessions
        (a PUBLISH, a will, `$share` picks, retained messages on SUBSCRIBE).

        `entries`: (session, subscription QoS, retain as published, subscription ids or
        None, no local, the session's matching subscriptions) per session. For each:
        which subscriptions count (No Local), READ access, the QoS (the lower of the
        message's and the subscription's, or the subscription's with
        `upgrade_outgoing_qos`), the retain flag (set for `retained` deliveries, else
        retain-as-published), then QoS 0 to a connected client is written here and the
        rest goes to `_send_or_queue`. QoS 0 to a client whose transport is paused
        counts against `max_queued_messages` and is dropped beyond it (Mosquitto drops
        QoS 0 when a client's packet queue is full). Recipients that would get the
        same bytes share one encoded packet: `cache` (returned, for the next call on
        the same message) and, for a v3 client without mount point, `wire` or one
        plain encoding.
        """
        origin = message.origin_id
        limits = self.limits
        upgrade = limits.upgrade_outgoing_qos
        msg_qos = message.qos
        msg_retain = message.retain or retained   # retained: every entry has rap True
        topic = message.topic
        security = self.security
        # No ACL file or plugin anywhere: acl_check(READ) allows every client with an ID,
        # which a connected client has, so only a session without a connected client is
        # asked (QoS 0 -4 %, fan-out -14 %, QoS 1 6.8 -> 6.45 us/msg in-process).
        read_open = security.acl_open
        debug = self.debug
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
            client = session.client
            if not read_open or client is None:
                reader = client or session.last_client   # an offline session's last client
                if reader is None or not security.acl_check(reader, topic, READ):
                    continue
            qos = sub_qos if upgrade else (msg_qos if msg_qos < sub_qos else sub_qos)
            retain = msg_retain and rap
            if qos or client is None or client.state != CONNECTED:
                if cache is None:
                    cache = {}
                self._send_or_queue(session, client, message, qos, retain, ids, now, cache)
                continue
            # QoS 0 to a connected client, the commonest delivery: written here.
            if client.write_paused:
                # The paused transport plays the part of Mosquitto's per-client queue.
                max_queued = limits.max_queued_messages
                if max_queued and client.paused_qos0 >= max_queued:
                    self.stats.publish_dropped += 1
                    continue
                client.paused_qos0 += 1
            if ids is None and not retain and client.version != 5 and not client.mount_point:
                # Encoded once per message, or not at all: the received bytes.
                # (Only a v5 client sets a Maximum Packet Size: no size check.)
                if plain is None:
                    plain = wire or encode_publish_qos0_v3(topic, message.payload, False)
                data = plain
            else:
                if ids is not None or client.topic_alias_max_out:
                    # Per recipient: subscription ids and topic aliases differ.
                    data = self.encode_publish(client, message, 0, retain, False, None, ids, now)
                else:
                    # Once per (version, retain, mount point): every recipient of this
                    # message with the same key gets the very same bytes object.
                    if cache is None:
                        cache = {}
                    key = (client.version, retain, client.mount_point)
                    data = cache.get(key)
                    if data is None:
                        data = cache[key] = self.encode_publish(client, message, 0, retain, False, None,
                                                                None, now)
                if client.max_packet_out and len(data) > client.max_packet_out:
                    self._dropped_too_large(client)
                    continue
            if debug:
                self._log_sending(client, message, 0, retain, False, 0)
            client.output.append(data)
            if not client.pending:
                client.pending = True
                pending.append(client)
            sent += 1
            sent_bytes += len(data)
        if sent:
            stats = self.stats
            stats.messages_sent += sent
            stats.bytes_sent += sent_bytes
            stats.publish_sent += sent
            stats.publish_bytes_sent += sent * len(message.payload)
        return cache

    def withhold_while_moving(self, withheld) -> None:
        """While a cluster session move is on (session_moves.py), a QoS 1/2 delivery, or
        any to an offline session, that `withheld(session)` names is not made: the node
        at the other end of the move makes it. None when no move is on. Installed over
        `_send_or_queue` on the instance, so that the commonest case, no move, costs
        that hot path nothing."""
        if withheld is None:
            self.__dict__.pop("_send_or_queue", None)
            return
        send_or_queue = type(self)._send_or_queue.__get__(self)

        def send_or_queue_unless_withheld(session, *rest) -> None:
            if not withheld(session):
                send_or_queue(session, *rest)
        self.__dict__["_send_or_queue"] = send_or_queue_unless_withheld

    def _send_or_queue(self, session, client, message, qos, retain, sub_ids, now, cache) -> None:
        """A QoS 1/2 delivery, or any delivery to a session without a connected client:
        into flight while the window allows, else into the session queue (QoS 0 to an
        offline session only with `queue_qos0_messages`)."""
        if client is None or client.state != CONNECTED:
            if qos == 0:
                if self.limits.queue_qos0_messages:
                    self._queue(session, Delivery(message, 0, retain, sub_ids))
                return
            # Numbered now, even if the queue is full (Mosquitto's subs__send).
            self._queue(session, Delivery(message, qos, retain, sub_ids, session.allocate_packet_id()))
            return
        delivery = Delivery(message, qos, retain, sub_ids, session.allocate_packet_id())
        if not session.queued and not client.write_paused and self._has_room(session, client):
            self._send_new(session, client, delivery, now, cache)
        else:
            self._queue(session, delivery)

    def _has_room(self, session, client) -> bool:
        limits = self.limits
        quota = limits.max_inflight_messages
        if client.receive_maximum < quota:
            quota = client.receive_maximum
        if len(session.inflight) >= quota:
            return False
        max_bytes = limits.max_inflight_bytes
        return not max_bytes or session.inflight_bytes < max_bytes

    def _queue(self, session, delivery) -> None:
        limits = self.limits
        if limits.max_queued_messages and len(session.queue) >= limits.max_queued_messages:
            self.stats.publish_dropped += 1
            return
        size = len(delivery.message.payload)
        if limits.max_queued_bytes and session.queue_bytes + size > limits.max_queued_bytes:
            self.stats.publish_dropped += 1
            return
        session.queue.append(delivery)
        session.queue_bytes += size
        persist = self.persist
        if persist is not None and session.expiry_interval:
            persist.sessions.add(session)
        if session.client is not None:
            # A connected subscriber is behind its window: maybe hold the publisher.
            flow.queued(self, session, delivery.message, self.now)

    def _send_new(self, session, client, delivery, now, cache=None) -> None:
        """Send a numbered QoS 1/2 delivery and put it in flight (its id is free)."""
        packet_id = delivery.packet_id
        inflight = session.inflight
        prepared = self._prepared(client, delivery.message, delivery.qos, delivery.retain,
                                  delivery.sub_ids, now, cache)
        data = prepared.with_packet_id(packet_id)
        if client.max_packet_out and len(data) > client.max_packet_out:
            # Too large for this client (v5 3.1.2.25): discard as if it had been delivered.
            self._dropped_too_large(client)
            return
        if self.debug:
            self._log_sending(client, delivery.message, delivery.qos, delivery.retain, False, packet_id)
        delivery.state = WAIT_ACK
        if inflight is EMPTY_MAP:
            inflight = session.own("inflight")
        inflight[packet_id] = delivery
        session.inflight_bytes += len(delivery.message.payload)
        persist = self.persist
        if persist is not None and session.expiry_interval:
            persist.sessions.add(session)
        self.write(client, data)
        self.stats.publish_sent += 1
        self.stats.publish_bytes_sent += len(delivery.message.payload)

    def drop_unreadable(self, session, client) -> None:
        """Forget the outgoing messages (in flight or queued) `client` has no READ
        access to now, before they are sent again or at last. (A message waiting for
        PUBCOMP was delivered already: its PUBREL still goes, unlike in Mosquitto.)"""
        acl_check = self.security.acl_check
        inflight = session.inflight
        denied = [packet_id for packet_id, delivery in inflight.items()
                  if delivery.state != WAIT_COMP and not acl_check(client, delivery.message.topic, READ)]
        for packet_id in denied:
            session.inflight_bytes -= len(inflight.pop(packet_id).message.payload)
        dropped = len(denied)
        if session.queued:
            queue = session.queue
            kept = [delivery for delivery in queue if acl_check(client, delivery.message.topic, READ)]
            if len(kept) != len(queue):
                dropped += len(queue) - len(kept)
                queue.clear()
                queue.extend(kept)
                session.queue_bytes = sum(len(delivery.message.payload) for delivery in kept)
        if dropped:
            self.stats.publish_dropped += dropped
            if self.persist is not None and session.expiry_interval:
                self.persist.sessions.add(session)

    def _log_sending(self, client, message, qos, retain, dup, packet_id) -> None:
        self.log.debug(f"Sending PUBLISH to {client.client_id} (d{int(dup)}, q{qos}, r{int(retain)}, "
                       f"m{packet_id}, '{message.topic}', ... ({len(message.payload)} bytes))")

    def complete_delivery(self, session, packet_id, now) -> None:
        delivery = session.inflight.pop(packet_id, None)
        if delivery is not None:
            session.inflight_bytes -= len(delivery.message.payload)
            persist = self.persist
            if persist is not None and session.expiry_interval:
                persist.sessions.add(session)
        if session.queued:
            self.pump(session, now)
        if session.flow is not None:
            flow.drained(self, session, now)

    def pump(self, session, now) -> None:
        """Move queued messages into flight while the window allows."""
        client = session.client
        if client is None or client.state != CONNECTED or client.write_paused or not session.queued:
            return
        queue = session.queue
        if queue and self.persist is not None and session.expiry_interval:
            self.persist.sessions.add(session)
        while queue:
            delivery = queue[0]
            if delivery.qos and not self._has_room(session, client):
                return
            queue.popleft()
            session.queue_bytes -= len(delivery.message.payload)
            if delivery.message.expired(now):
                continue
            if delivery.qos == 0:
                data = self.encode_publish(client, delivery.message, 0, delivery.retain, False, None,
                                           delivery.sub_ids, now)
                if client.max_packet_out and len(data) > client.max_packet_out:
                    self._dropped_too_large(client)
                    continue
                self.write(client, data)
                self.stats.publish_sent += 1
                self.stats.publish_bytes_sent += len(delivery.message.payload)
            else:
                packet_id = delivery.packet_id
                if packet_id is None or packet_id in session.inflight:
                    # Not numbered (a queue stored by an older midge), or its number came
                    # round again while an older message with it is in flight (65535 later).
                    delivery.packet_id = session.allocate_packet_id()
                self._send_new(session, client, delivery, now)


