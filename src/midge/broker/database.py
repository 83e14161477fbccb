"""Per-session message queues and flows (Mosquitto's database.c): encode a
PUBLISH for one client, send it or queue it within the inflight window and queue
limits, move the queue on as acknowledgements arrive, outgoing topic aliases.

A mixin of `Broker`: it uses the broker's `limits`, `stats`, `debug`, `log` and
`write`.
"""

from __future__ import annotations

from midge.broker.client import CONNECTED
from midge.broker.message import WAIT_ACK, Delivery
from midge.broker.session import NO_ENTRIES
from midge.protocol.codec import (
    encode_publish as codec_encode_publish, encode_publish_qos0_v3, prepare_publish,
    publish_property_block,
)


class Database:
    # The codec's encoder of a QoS 0 PUBLISH for a v3 client without mount point, for
    # Broker.publish's fast path.
    encode_qos0_v3 = staticmethod(encode_publish_qos0_v3)

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
                client.aliases_out = {}  # was the shared empty mapping (client.NO_ALIASES)
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

    def _deliver(self, session, message, qos, retain, sub_ids, now, cache) -> None:
        client = session.client
        limits = self.limits
        stats = self.stats
        if client is None or client.state != CONNECTED:
            if qos == 0:
                if limits.queue_qos0_messages:
                    self._queue(session, Delivery(message, 0, retain, sub_ids))
                return
            # Numbered now, even if the queue is full (Mosquitto's subs__send).
            self._queue(session, Delivery(message, qos, retain, sub_ids, session.allocate_packet_id()))
            return
        if qos == 0:
            if client.write_paused:
                # Mosquitto drops QoS 0 for a client whose outgoing queue is full;
                # a paused transport plays the part of that queue.
                max_queued = limits.max_queued_messages
                if max_queued and client.paused_qos0 >= max_queued:
                    stats.publish_dropped += 1
                    return
                client.paused_qos0 += 1
            if sub_ids is None and not client.topic_alias_max_out:
                # Encode once per (version, retain, mount point): every recipient of
                # this message with the same key gets the very same bytes object.
                key = (client.version, retain, client.mount_point)
                data = cache.get(key)
                if data is None:
                    data = cache[key] = self.encode_publish(client, message, 0, retain, False, None, None, now)
            else:
                data = self.encode_publish(client, message, 0, retain, False, None, sub_ids, now)
            if client.max_packet_out and len(data) > client.max_packet_out:
                self._dropped_too_large(client)
                return
            if self.debug:
                self._log_sending(client, message, 0, retain, False, 0)
            self.write(client, data)
            stats.publish_sent += 1
            stats.publish_bytes_sent += len(message.payload)
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
        if inflight is NO_ENTRIES:
            inflight = session.own("inflight")
        inflight[packet_id] = delivery
        session.inflight_bytes += len(delivery.message.payload)
        persist = self.persist
        if persist is not None and session.expiry_interval:
            persist.sessions.add(session)
        self.write(client, data)
        self.stats.publish_sent += 1
        self.stats.publish_bytes_sent += len(delivery.message.payload)

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


