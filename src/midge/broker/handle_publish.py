"""Incoming PUBLISH and the acknowledgements of both directions (Mosquitto's
handle_publish.c and the ack handlers of read_handle.c)."""

from __future__ import annotations

from midge.broker.message import WAIT_ACK, WAIT_COMP, Message, plain_message
from midge.protocol.codec import PUBACK_BYTE, PUBCOMP_BYTE, PUBREC_BYTE, PUBREL_BYTE, encode_success_ack
from midge.protocol.constants import Property, ReasonCode
from midge.protocol.packets import Puback, Pubcomp, Pubrec, Pubrel
from midge.protocol.topics import valid_topic_name

_MISSING = object()

_PUBACK = PUBACK_BYTE
_PUBREC = PUBREC_BYTE
_PUBREL = PUBREL_BYTE
_PUBCOMP = PUBCOMP_BYTE


def _send_ack(client, first_byte, packet_cls, packet_id, reason) -> None:
    if client.broker.debug:
        client.broker.log.debug(f"Sending {packet_cls.__name__.upper()} to {client.client_id} "
                                f"(m{packet_id}, rc{int(reason)})")
    if reason == 0 or client.version != 5:
        # The codec's ready-made success ack: no ack object and no encode() per message.
        client.send_bytes(encode_success_ack(first_byte, packet_id))
    else:
        client.send_packet(packet_cls(packet_id, reason))


def handle_publish(client, packet, now) -> None:
    broker = client.broker
    qos = packet.qos
    topic = packet.topic
    props = packet.properties

    if props and client.version == 5:
        response_topic = props.get(Property.RESPONSE_TOPIC)
        if response_topic is not None and not valid_topic_name(response_topic):
            client.protocol_error(now, ReasonCode.PROTOCOL_ERROR,
                                  f"response topic {response_topic!r} is not a valid topic name")
            return
        alias = props.get(Property.TOPIC_ALIAS)
        if alias is not None:
            if alias == 0 or alias > client.max_topic_alias:
                client.protocol_error(now, ReasonCode.TOPIC_ALIAS_INVALID,
                                      f"topic alias {alias} is above the maximum {client.max_topic_alias}")
                return
            if topic:
                if not client.aliases_in:
                    client.aliases_in = {}  # was the shared EMPTY_MAP
                client.aliases_in[alias] = topic
            else:
                topic = client.aliases_in.get(alias)
                if topic is None:
                    client.protocol_error(now, ReasonCode.PROTOCOL_ERROR, f"unknown topic alias {alias}")
                    return
    if not topic:
        client.protocol_error(now, ReasonCode.TOPIC_NAME_INVALID, "PUBLISH with an empty topic")
        return
    if qos > client.max_qos:
        client.protocol_error(now, ReasonCode.QOS_NOT_SUPPORTED,
                              f"PUBLISH with QoS {qos} above max_qos {client.max_qos}", kind="not_supported")
        return
    retain = packet.retain
    if retain and not broker.limits.retain_available:
        client.protocol_error(now, ReasonCode.RETAIN_NOT_SUPPORTED, "retained PUBLISH but retain_available is false",
                              kind="not_supported")
        return
    if client.mount_point:
        topic = client.mount_point + topic

    payload = packet.payload
    stats = broker.stats
    stats.publish_received += 1
    stats.publish_bytes_received += len(payload)

    if qos == 2:
        incoming_qos2 = client.session.incoming_qos2
        if packet.packet_id in incoming_qos2:
            # A resend of a message we hold until PUBREL: acknowledge again, deliver once.
            _send_ack(client, _PUBREC, Pubrec, packet.packet_id, 0)
            return
        if client.version == 5 and len(incoming_qos2) >= broker.limits.max_inflight_messages:
            client.protocol_error(now, ReasonCode.RECEIVE_MAXIMUM_EXCEEDED,
                                  "more QoS 2 messages in flight than the receive maximum")
            return

    if broker.debug:
        broker.log.debug(f"Received PUBLISH from {client.client_id} (d{int(packet.dup)}, q{qos}, "
                         f"r{int(retain)}, m{packet.packet_id or 0}, '{topic}', ... ({len(payload)} bytes))")

    limit = broker.limits.message_size_limit
    # No ACL file or plugin anywhere (`acl_open`): acl_check(WRITE) allows every
    # client with an ID to write a topic not starting with "$", so skip the call.
    if (limit and len(payload) > limit) or ((not broker.security.acl_open or topic[0] == "$")
                                            and not broker.may_publish(client, topic)):
        _refuse_publish(client, packet, topic, limit, now)
        return

    if broker.notify_plugins:
        broker.security.notify("on_message", client, topic, payload, qos, retain)
    if props:
        message = Message.from_publish(packet, topic, now, client.client_id, client)
    else:
        # No properties (every v3 message, most v5 ones): build it directly.
        message = plain_message(topic, payload, qos, retain, client.client_id, client)
    if qos == 0:
        # The received bytes (if the decoder kept them) are what a v3 subscriber gets,
        # unless a mount point changed the topic.
        broker.publish(message, now, None if client.mount_point else packet.wire)
    elif qos == 1:
        matched = broker.publish(message, now)
        reason = 0 if matched or client.version != 5 else ReasonCode.NO_MATCHING_SUBSCRIBERS
        _send_ack(client, _PUBACK, Puback, packet.packet_id, reason)
    else:
        client.session.own("incoming_qos2")[packet.packet_id] = message
        reason = 0
        if client.version == 5 and not broker.subs.has_subscribers(topic):
            reason = ReasonCode.NO_MATCHING_SUBSCRIBERS
        _send_ack(client, _PUBREC, Pubrec, packet.packet_id, reason)


def _refuse_publish(client, packet, topic, limit, now) -> None:
    """A PUBLISH over message_size_limit or without write access: dropped, and refused
    in the ack its QoS asks for (v3 QoS 2 runs the flow to its end, delivering nothing)."""
    broker = client.broker
    qos = packet.qos
    if limit and len(packet.payload) > limit:
        if broker.debug:
            broker.log.debug(f"Dropped too large PUBLISH from {client.client_id} (q{qos}, '{topic}', "
                             f"{len(packet.payload)} bytes)")
        reason = ReasonCode.IMPLEMENTATION_SPECIFIC_ERROR
    else:
        if broker.debug:
            broker.log.debug(f"Denied PUBLISH from {client.client_id} (q{qos}, '{topic}')")
        reason = ReasonCode.NOT_AUTHORIZED
    broker.stats.publish_dropped += 1
    packet_id = packet.packet_id
    if qos == 1:
        _send_ack(client, _PUBACK, Puback, packet_id, reason)
    elif qos == 2:
        if client.version != 5:
            # v3 has no failure acks: run the flow to its end, deliver nothing.
            client.session.own("incoming_qos2")[packet_id] = None
        _send_ack(client, _PUBREC, Pubrec, packet_id, reason)


def handle_pubrel(client, packet, now) -> None:
    """Release of an incoming QoS 2 message: deliver it now (as Mosquitto does)."""
    session = client.session
    message = session.incoming_qos2.pop(packet.packet_id, _MISSING)
    if message is _MISSING:
        _send_ack(client, _PUBCOMP, Pubcomp, packet.packet_id,
                  ReasonCode.PACKET_IDENTIFIER_NOT_FOUND)
        return
    if message is not None:
        client.broker.publish(message, now)
    _send_ack(client, _PUBCOMP, Pubcomp, packet.packet_id, 0)


def handle_puback(client, packet, now) -> None:
    session = client.session
    delivery = session.inflight.get(packet.packet_id)
    if delivery is None or delivery.qos != 1:
        return
    client.broker.complete_delivery(session, packet.packet_id, now)


def handle_pubrec(client, packet, now) -> None:
    session = client.session
    packet_id = packet.packet_id
    delivery = session.inflight.get(packet_id)
    if delivery is None or delivery.qos != 2:
        _send_ack(client, _PUBREL, Pubrel, packet_id, ReasonCode.PACKET_IDENTIFIER_NOT_FOUND)
        return
    if client.version == 5 and packet.reason_code >= 0x80:
        # The receiver refused the message: the flow ends here (v5 4.3.3).
        client.broker.complete_delivery(session, packet_id, now)
        return
    delivery.state = WAIT_COMP
    _send_ack(client, _PUBREL, Pubrel, packet_id, 0)


def handle_pubcomp(client, packet, now) -> None:
    session = client.session
    delivery = session.inflight.get(packet.packet_id)
    if delivery is None or delivery.qos != 2 or delivery.state not in (WAIT_COMP, WAIT_ACK):
        return
    client.broker.complete_delivery(session, packet.packet_id, now)
