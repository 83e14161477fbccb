"""CONNECT: client identifier rules, authentication, takeover, session resume,
CONNACK (Mosquitto's handle_connect.c and connect__on_authorised)."""

from __future__ import annotations

import os

from midge.broker.cleanup import attempt
from midge.broker.client import CLOSED, CONNECTED
from midge.broker.limits import UNLIMITED_INFLIGHT
from midge.broker.session import NEVER
from midge.log import LogType
from midge.protocol.codec import CONNACK_V3_ACCEPTED, connack_properties
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
        client.send_packet(Connack(False, v5_code, connack_properties(maximum_qos=client.max_qos,
                                                                      accepted=False)))
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
        size_limit = limits.message_size_limit
        if size_limit and len(will.payload) > size_limit:
            # As Mosquitto: the will could never be published, so the CONNECT is refused.
            _refuse(client, now, ReasonCode.PACKET_TOO_LARGE, ConnackCode.NOT_AUTHORIZED)
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
    server_keep_alive = None
    max_keepalive = limits.max_keepalive
    if max_keepalive and (client.keepalive > max_keepalive or client.keepalive == 0):
        if client.version == 5:
            client.keepalive = server_keep_alive = max_keepalive
        else:
            _refuse(client, now, ReasonCode.CLIENT_IDENTIFIER_NOT_VALID, ConnackCode.IDENTIFIER_REJECTED)
            return

    _on_authorised(client, packet, now, session_expiry, assigned, server_keep_alive)


def _on_authorised(client, packet, now, session_expiry, assigned, server_keep_alive) -> None:
    router = client.broker.router
    if router is not None and router.moves.must_fetch(client.client_id, packet.clean_start):
        # In a cluster the session may be on another node (or only in the cluster's
        # store): hold this CONNECT, and what follows it, until it is here.
        client.deferred = []

        def fetched(when, client=client):
            if client.state == CLOSED:
                return
            client.deferred_resume_pending = True
            _open_session(client, packet, when, session_expiry, assigned, server_keep_alive)
            client.resume_deferred(when)
        router.moves.fetch(client, fetched)
        return
    _open_session(client, packet, now, session_expiry, assigned, server_keep_alive)


def _open_session(client, packet, now, session_expiry, assigned, server_keep_alive) -> None:
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
        # The old connection's will goes out only when the old or the new session is
        # clean (v3 clean session, v5 session expiry 0), as Mosquitto decides; a
        # session that goes on keeps quiet (issue 15 item 9).
        attempt(log, f"closing client {client_id} (takeover)", old.close, now, "takeover",
                ReasonCode.SESSION_TAKEN_OVER, None, existing.expiry_interval == 0 or packet.clean_start)
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

    client.state = CONNECTED
    client.handlers = broker.handlers_connected
    client.connected_at = now
    if broker.debug:
        log.debug(f"Sending CONNACK to {client_id} ({int(session_present)}, 0)")
    if client.version == 5:
        client.send_packet(Connack(session_present, 0, connack_properties(
            topic_alias_maximum=client.max_topic_alias, server_keep_alive=server_keep_alive,
            assigned_client_identifier=client_id if assigned else None,
            retain_available=limits.retain_available, maximum_packet_size=limits.max_packet_size,
            receive_maximum=(0 if limits.max_inflight_messages == UNLIMITED_INFLIGHT
                             else limits.max_inflight_messages), maximum_qos=client.max_qos)))
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
