"""Protocol trace lines in the words of libmosquitto's `-d` output.

`mosquitto_pub -d` prints e.g. `Client (null) sending CONNECT` and
`Client (null) received CONNACK (0)`; scripts grep for these, so midge prints the
same lines. `client_id` is `(null)` until the client has an identifier.
"""

from __future__ import annotations

from midge.protocol.constants import PacketType


def describe(packet, direction: str, client_id: str, mid: int = 0) -> list[str]:
    """Trace lines for one packet; `direction` is "sending" or "received"."""
    who = f"Client {client_id or '(null)'} {direction}"
    kind = packet.type
    sending = direction == "sending"
    if kind == PacketType.PUBLISH:
        return [f"{who} PUBLISH (d{int(packet.dup)}, q{packet.qos}, r{int(packet.retain)}, "
                f"m{packet.packet_id or mid}, '{packet.topic}', ... ({len(packet.payload)} bytes))"]
    if kind == PacketType.CONNACK:
        return [f"{who} CONNACK ({packet.reason_code})"]
    if kind == PacketType.SUBSCRIBE:
        return [f"{who} SUBSCRIBE (Mid: {packet.packet_id}, Topic: {sub.topic_filter}, QoS: {sub.qos}, "
                f"Options: 0x{_options(sub):02x})" for sub in packet.subscriptions]
    if kind == PacketType.UNSUBSCRIBE:
        return [f"{who} UNSUBSCRIBE (Mid: {packet.packet_id}, Topic: {topic})" for topic in packet.topic_filters]
    if kind in (PacketType.PUBACK, PacketType.PUBREC):
        name = kind.name
        if sending:
            return [f"{who} {name} (m{packet.packet_id}, rc{packet.reason_code})"]
        if kind == PacketType.PUBACK:
            return [f"{who} {name} (Mid: {packet.packet_id}, RC:{packet.reason_code})"]
        return [f"{who} {name} (Mid: {packet.packet_id})"]
    if kind == PacketType.PUBREL:
        return [f"{who} PUBREL (m{packet.packet_id})" if sending else f"{who} PUBREL (Mid: {packet.packet_id})"]
    if kind == PacketType.PUBCOMP:
        if sending:
            return [f"{who} PUBCOMP (m{packet.packet_id})"]
        return [f"{who} PUBCOMP (Mid: {packet.packet_id}, RC:{packet.reason_code})"]
    return [f"{who} {PacketType(kind).name}"]


def _options(sub) -> int:
    return (sub.no_local << 2) | (sub.retain_as_published << 3) | (sub.retain_handling << 4)
