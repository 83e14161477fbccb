"""SUBSCRIBE and UNSUBSCRIBE (Mosquitto's handle_subscribe.c / handle_unsubscribe.c)."""

from __future__ import annotations

from midge.broker.subs import Subscription
from midge.log import LogType
from midge.protocol import topics
from midge.protocol.constants import Property, ReasonCode
from midge.protocol.packets import Suback, Unsuback


def _split(topic_filter: str):
    """(group, filter) for `$share/group/filter`, (None, filter) otherwise; None if invalid."""
    if not topic_filter.startswith("$share/"):
        return None, topic_filter
    try:
        shared = topics.split_shared(topic_filter)
    except Exception:
        return None
    return shared


def handle_subscribe(client, packet, now) -> None:
    broker = client.broker
    session = client.session
    v5 = client.version == 5
    failure = ReasonCode.UNSPECIFIED_ERROR  # 0x80: the v3 failure code too
    identifier = None
    if v5:
        ids = packet.properties.get(Property.SUBSCRIPTION_IDENTIFIER)
        if ids:
            identifier = ids[0] if isinstance(ids, list) else ids
    log = broker.log
    log_subscribe = log.enabled(LogType.SUBSCRIBE)
    debug = broker.debug
    if debug:
        log.debug(f"Received SUBSCRIBE from {client.client_id}")
    codes: list[int] = []
    retained_for = []
    for request in packet.subscriptions:
        split = _split(request.topic_filter)
        if split is None or not topics.valid_topic_filter(split[1]):
            codes.append(ReasonCode.TOPIC_FILTER_INVALID if v5 else failure)
            continue
        group, topic_filter = split
        if group is not None and request.no_local:
            client.protocol_error(now, ReasonCode.PROTOCOL_ERROR, "no local on a shared subscription")
            return
        if client.mount_point:
            topic_filter = client.mount_point + topic_filter
        if not broker.may_subscribe(client, topic_filter):
            codes.append(ReasonCode.NOT_AUTHORIZED if v5 else failure)
            continue
        qos = min(request.qos, client.max_qos)
        no_local, retain_as_published = request.no_local, request.retain_as_published
        if client.is_bridge and not v5:
            # A v3 bridge (protocol level | 0x80) gets no echo of its own messages and
            # the retain flag as published, as Mosquitto sets for bridges.
            no_local = retain_as_published = True
        sub = Subscription(session, topic_filter, qos, no_local, retain_as_published,
                           request.retain_handling, identifier, group)
        is_new = broker.subs.add(sub)
        key = request.topic_filter if not client.mount_point else client.mount_point + "\0" + request.topic_filter
        session.own("subscriptions")[key] = sub
        codes.append(qos)
        if debug:
            log.debug(f"\t{request.topic_filter} (QoS {request.qos})")
        if log_subscribe:
            log.subscribe(f"{client.client_id} {qos} {request.topic_filter}")
        if group is None and (request.retain_handling == 0 or (request.retain_handling == 1 and is_new)):
            retained_for.append(sub)
    if debug:
        log.debug(f"Sending SUBACK to {client.client_id}")
    client.send_packet(Suback(packet.packet_id, codes))
    for sub in retained_for:
        broker.send_retained(client, sub, now)


def handle_unsubscribe(client, packet, now) -> None:
    broker = client.broker
    session = client.session
    log = broker.log
    log_unsubscribe = log.enabled(LogType.UNSUBSCRIBE)
    if broker.debug:
        log.debug(f"Received UNSUBSCRIBE from {client.client_id}")
    codes: list[int] = []
    for requested in packet.topic_filters:
        split = _split(requested)
        if split is None:
            codes.append(ReasonCode.TOPIC_FILTER_INVALID)
            continue
        group, topic_filter = split
        if client.mount_point:
            topic_filter = client.mount_point + topic_filter
        key = requested if not client.mount_point else client.mount_point + "\0" + requested
        if not broker.may_unsubscribe(client, topic_filter):
            codes.append(ReasonCode.NOT_AUTHORIZED)   # a plugin may refuse; the file ACL never does
            continue
        removed = broker.subs.remove(session, topic_filter, group)
        session.subscriptions.pop(key, None)
        codes.append(ReasonCode.SUCCESS if removed else ReasonCode.NO_SUBSCRIPTION_EXISTED)
        if log_unsubscribe:
            log.unsubscribe(f"{client.client_id} {requested}")
    if broker.debug:
        log.debug(f"Sending UNSUBACK to {client.client_id}")
    client.send_packet(Unsuback(packet.packet_id, codes if client.version == 5 else []))
