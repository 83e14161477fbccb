"""CONNECT: client identifier rules, authentication, takeover, session resume,
CONNACK (Mosquitto's handle_connect.c and connect__on_authorised)."""

from __future__ import annotations

import os

from midge.broker.client import CLOSED, CONNECTED
from midge.broker.session import NEVER
from midge.log import LogType
from midge.protocol.codec import CONNACK_V3_ACCEPTED
from midge.protocol.constants import ConnackCode, Property, ReasonCode
from midge.protocol.packets import Connack
from midge.security.throttle import peer_host

# v5 reason code -> the v3 CONNACK return code Mosquitto sends for the same refusal.
_V3_CODES = {
    ReasonCode.BAD_USER_NAME_OR_PASSWORD: ConnackCode.BAD_USERNAME_OR_PASSWORD,
    ReasonCode.NOT_AUTHORIZED: ConnackCode.NOT_AUTHORIZED,
    ReasonCode.CLIENT_IDENTIFIER_NOT_VALID: ConnackCode.IDENTIFIER_REJECTED,
    ReasonCode.SERVER_UNAVAILABLE: ConnackCode.SERVER_UNAVAILABLE,
    ReasonCode.SERVER_BUSY: ConnackCode.SERVER_UNAVAILABLE,
    ReasonCode.BANNED: ConnackCode.NOT_AUTHORIZED,
    ReasonCode.BAD_AUTHENTICATION_METHOD: ConnackCode.NOT_AUTHORIZED,
    ReasonCode.UNSUPPORTED_PROTOCOL_VERSION: ConnackCode.UNACCEPTABLE_PROTOCOL_VERSION,
}


# Mosquitto logs its protocol enum, not the protocol level: 3.1 -> p1, 3.1.1 -> p2, 5 -> p5.
_LOG_PROTOCOL = {3: 1, 4: 2, 5: 5}


def _refuse(client, now, v5_code, v3_code, kind="refused") -> None:
    """CONNACK with a failure code, then close (no will: the connection never started)."""
    if client.broker.debug:
        code = v5_code if client.version == 5 else v3_code
        client.broker.log.debug(f"Sending CONNACK to {client.id_for_log} (0, {int(code)})")
    if client.version == 5:
        client.send_packet(Connack(False, v5_code))
    else:
        client.send_packet(Connack(False, v3_code))
    client.close(now, kind)


def _refuse_auth(client, now, reason) -> None:
    v3 = _V3_CODES.get(reason, ConnackCode.NOT_AUTHORIZED)
    _refuse(client, now, reason, v3, kind="not_authorised")


def _username_from_tls(listener, tls):
    if tls is None:
        return None
    from midge.security import identity
    return identity.username_from_tls(listener, tls)


def _clientid_from_tls(listener, tls):
    if tls is None:
        return None
    from midge.security import identity
    return identity.clientid_from_tls(listener, tls)


def handle_connect(client, packet, now) -> None:
    if client.state == CONNECTED:
        # The decoder refuses a second CONNECT already; keep the rule here too.
        client.protocol_error(now, message="second CONNECT")
        return
    broker = client.broker
    security = broker.security
    if not client.connect_delayed and security.throttling:
        # Brute-force slow-down (security/throttle.py): an address with recent failed
        # logins gets its CONNACK later, whatever the outcome.
        delay = security.login_delay(peer_host(client.peer), now)
        if delay > 0:
            client.connect_delayed = True
            client.deferred = [packet]
            broker.defer_connect(client, now + delay)
            return
    listener = client.listener
    limits = broker.limits
    version = packet.protocol_version
    client.version = version
    client.clean_start = packet.clean_start
    client.keepalive = packet.keepalive
    client.is_bridge = packet.bridge
    props = packet.properties
    stats = broker.stats
    stats.connections += 1

    if version == 5:
        if Property.AUTHENTICATION_METHOD in props:
            # No enhanced authentication in midge (Mosquitto without an auth plugin).
            _refuse(client, now, ReasonCode.BAD_AUTHENTICATION_METHOD, ConnackCode.NOT_AUTHORIZED,
                    kind="not_supported")
            return
        client.receive_maximum = props.get(Property.RECEIVE_MAXIMUM, 65535)
        client.max_packet_out = props.get(Property.MAXIMUM_PACKET_SIZE, 0)
        client.topic_alias_max_out = props.get(Property.TOPIC_ALIAS_MAXIMUM, 0)
        client.request_problem_info = bool(props.get(Property.REQUEST_PROBLEM_INFORMATION, 1))
        session_expiry = props.get(Property.SESSION_EXPIRY_INTERVAL, 0)
    else:
        session_expiry = 0 if packet.clean_start else NEVER

    # -- Client identifier ---------------------------------------------------------
    client_id = packet.client_id
    assigned = False
    if not client_id:
        if version == 3 or (version == 4 and not packet.clean_start):
            _refuse(client, now, ReasonCode.CLIENT_IDENTIFIER_NOT_VALID, ConnackCode.IDENTIFIER_REJECTED)
            return
        listener_limits = broker.listener_limits(listener)
        if not listener_limits.allow_zero_length_clientid:
            _refuse(client, now, ReasonCode.UNSPECIFIED_ERROR, ConnackCode.IDENTIFIER_REJECTED)
            return
        client_id = listener_limits.auto_id_prefix + _random_id()
        assigned = True
    elif version == 3 and len(client_id) > 23:
        # MQTT 3.1 section 3.1: a client identifier is 1 to 23 characters (Mosquitto: rc 2).
        _refuse(client, now, ReasonCode.CLIENT_IDENTIFIER_NOT_VALID, ConnackCode.IDENTIFIER_REJECTED)
        return
    client.client_id = client_id

    prefixes = limits.clientid_prefixes
    # midge's own bridge is exempt: Mosquitto's bridge context never passes this check.
    if prefixes and client.bridge is None and not client_id.startswith(prefixes):
        _refuse(client, now, ReasonCode.NOT_AUTHORIZED, ConnackCode.NOT_AUTHORIZED, kind="not_authorised")
        return

    # -- Will checks -----------------------------------------------------------------
    will = packet.will
    if will is not None:
        if will.qos > client.max_qos:
            _refuse(client, now, ReasonCode.QOS_NOT_SUPPORTED, ConnackCode.NOT_AUTHORIZED,
                    kind="not_supported")
            return
        if will.retain and not limits.retain_available:
            _refuse(client, now, ReasonCode.RETAIN_NOT_SUPPORTED, ConnackCode.NOT_AUTHORIZED,
                    kind="not_supported")
            return
        if will.topic.startswith("$CONTROL/"):
            _refuse(client, now, ReasonCode.NOT_AUTHORIZED, ConnackCode.NOT_AUTHORIZED,
                    kind="not_authorised")
            return

    # -- Username: from TLS, or from the packet and checked ------------------------
    username = packet.username
    if broker.listener_limits(listener).tls_username:
        username = _username_from_tls(listener, client.tls)
        client.username = username
        if not username:
            _refuse(client, now, ReasonCode.BAD_USER_NAME_OR_PASSWORD,
                    ConnackCode.BAD_USERNAME_OR_PASSWORD, kind="not_authorised")
            return
        _after_authentication(client, packet, now, session_expiry, assigned)
        return
    client.username = username
    reason = broker.security.authenticate(client, username, packet.password)
    if not isinstance(reason, int):
        # An async plugin hook decides later (security.PendingAuth): hold every
        # packet that follows until it has.
        client.deferred = []

        def finished(result, client=client):
            if client.state == CLOSED:
                return
            when = client.last_activity  # no clock in the core: the latest known time
            client.deferred_resume_pending = True
            _authentication_result(client, packet, when, session_expiry, assigned, result)
            client.resume_deferred(when)
        reason.on_done(finished)
        return
    _authentication_result(client, packet, now, session_expiry, assigned, reason)


def _authentication_result(client, packet, now, session_expiry, assigned, reason) -> None:
    security = client.broker.security
    if reason:
        security.record_failure(peer_host(client.peer), now)
        _refuse_auth(client, now, reason)
        return
    # `throttling` is False while no address has failed logins: nothing to clear.
    if security.throttling:
        security.record_success(peer_host(client.peer))
    _after_authentication(client, packet, now, session_expiry, assigned)


def _after_authentication(client, packet, now, session_expiry, assigned) -> None:
    listener = client.listener
    broker = client.broker
    limits = broker.limits
    listener_limits = broker.listener_limits(listener)
    client_id = client.client_id
    if listener_limits.cert_identity_as_clientid:
        tls_id = _clientid_from_tls(listener, client.tls)
        if not tls_id:
            _refuse(client, now, ReasonCode.NOT_AUTHORIZED, ConnackCode.NOT_AUTHORIZED, kind="not_authorised")
            return
        client.client_id = client_id = tls_id
    if listener_limits.use_username_as_clientid:
        if not client.username:
            _refuse(client, now, ReasonCode.NOT_AUTHORIZED, ConnackCode.NOT_AUTHORIZED, kind="not_authorised")
            return
        client.client_id = client_id = client.username

    # -- Keepalive limit ---------------------------------------------------------------
    connack_props = {}
    max_keepalive = limits.max_keepalive
    if max_keepalive and (client.keepalive > max_keepalive or client.keepalive == 0):
        if client.version == 5:
            client.keepalive = max_keepalive
            connack_props[Property.SERVER_KEEP_ALIVE] = max_keepalive
        else:
            _refuse(client, now, ReasonCode.CLIENT_IDENTIFIER_NOT_VALID, ConnackCode.IDENTIFIER_REJECTED)
            return

    _on_authorised(client, packet, now, session_expiry, assigned, connack_props)


def _on_authorised(client, packet, now, session_expiry, assigned, connack_props) -> None:
    broker = client.broker
    limits = broker.limits
    log = broker.log
    client_id = client.client_id

    # Takeover: the old connection is closed before the session is looked at.
    existing = broker.sessions.get(client_id)
    if existing is not None and existing.client is not None:
        old = existing.client
        if limits.connection_messages and log.enabled(LogType.NOTICE):
            log.notice(f"Client {client_id} already connected, closing old connection.")
        old.close(now, "takeover", reason_code=ReasonCode.SESSION_TAKEN_OVER)
        existing = broker.sessions.get(client_id)

    session_present = False
    if existing is not None and not packet.clean_start:
        session = existing
        session_present = True
        broker.cancel_session_expiry(session)
        if session.will is not None:
            # Reconnected within the will delay: the will is not sent (MQTT 3.1.3.2.2).
            broker.cancel_delayed_will(session)
    else:
        if existing is not None:
            broker.end_session(existing, now)
        session = broker.create_session(client_id)
    session.expiry_interval = session_expiry
    session.client = client
    session.protocol = client.version
    session.last_client = client
    client.session = session

    will = packet.will
    if will is not None and client.mount_point:
        will.topic = client.mount_point + will.topic
    client.will = will

    if client.version == 5:
        if assigned:
            connack_props[Property.ASSIGNED_CLIENT_IDENTIFIER] = client_id
        if limits.max_inflight_messages != 65535:
            connack_props[Property.RECEIVE_MAXIMUM] = limits.max_inflight_messages
        if client.max_qos < 2:
            connack_props[Property.MAXIMUM_QOS] = client.max_qos
        if not limits.retain_available:
            connack_props[Property.RETAIN_AVAILABLE] = 0
        if limits.max_packet_size:
            connack_props[Property.MAXIMUM_PACKET_SIZE] = limits.max_packet_size
        if client.max_topic_alias:
            connack_props[Property.TOPIC_ALIAS_MAXIMUM] = client.max_topic_alias
    client.state = CONNECTED
    client.handlers = broker.handlers_connected
    client.connected_at = now
    if broker.debug:
        log.debug(f"Sending CONNACK to {client_id} ({int(session_present)}, 0)")
    if client.version == 5:
        client.send_packet(Connack(session_present, 0, connack_props))
    else:
        # MQTT 3.1 has no session present flag: that CONNACK byte is reserved (0).
        broker.write(client, CONNACK_V3_ACCEPTED[session_present and client.version == 4])
    broker.client_connected(client, now)

    if limits.connection_messages and log.enabled(LogType.NOTICE):
        kind = "bridge" if client.is_bridge else "client"
        user = f", u'{client.username}'" if client.username is not None else ""
        log.notice(f"New {kind} connected from {client.peer} as {client_id} "
                   f"(p{_LOG_PROTOCOL[client.version]}, c{int(packet.clean_start)}, k{client.keepalive}{user}).")

    if session_present:
        broker.resume_session(session, client, now)


def _random_id() -> str:
    """36 characters of upper-case hex in 8-4-4-4-12 form, like Mosquitto's client_id_gen."""
    h = os.urandom(16).hex().upper()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
