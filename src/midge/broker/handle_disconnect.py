"""DISCONNECT, PINGREQ and AUTH from a client."""

from __future__ import annotations

from midge.protocol.codec import PINGRESP
from midge.protocol.constants import Property, ReasonCode


def handle_disconnect(client, packet, now) -> None:
    if client.broker.debug:
        client.broker.log.debug(f"Received DISCONNECT from {client.client_id}")
    if client.version == 5:
        expiry = packet.properties.get(Property.SESSION_EXPIRY_INTERVAL)
        if expiry is not None:
            session = client.session
            if session.expiry_interval == 0 and expiry != 0:
                # MQTT-3.14.2-2: a session that was to end with the connection can't be kept.
                client.protocol_error(now, ReasonCode.PROTOCOL_ERROR,
                                      "DISCONNECT sets a session expiry after CONNECT set 0")
                return
            session.expiry_interval = expiry
        if packet.reason_code != ReasonCode.DISCONNECT_WITH_WILL_MESSAGE:
            client.will = None
    else:
        client.will = None
    client.close(now, "disconnected")


def handle_pingreq(client, packet, now) -> None:
    if client.broker.debug:
        client.broker.log.debug(f"Received PINGREQ from {client.client_id}")
        client.broker.log.debug(f"Sending PINGRESP to {client.client_id}")
    client.send_bytes(PINGRESP)


def handle_auth(client, packet, now) -> None:
    # No authentication method was accepted at CONNECT, so any AUTH is out of place.
    client.protocol_error(now, ReasonCode.PROTOCOL_ERROR, "AUTH without an authentication method")


def handle_unexpected(client, packet, now) -> None:
    client.protocol_error(now, ReasonCode.PROTOCOL_ERROR,
                          f"unexpected {type(packet).__name__} from a client")
