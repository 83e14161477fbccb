"""What `midge pub`, `midge sub` and `midge rr` were asked to do, once parsed.

`cli/clientargs.py` fills a `ClientConfig` from the flags. Where and how to connect is
the client library's own `ClientOptions` (shared with bridges), kept whole in
`ClientConfig.options`; the other fields are the MQTT session (the CONNECT packet)
and what each tool does with it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from midge.client.options import ClientOptions, TlsOptions
from midge.protocol.constants import PacketType, Property
from midge.protocol.packets import Connect, Will
from midge.protocol.properties import WILL

NEVER_EXPIRES = 0xFFFFFFFF  # session expiry interval of a session that never expires

# Packets a client sends and may put `-D` properties on (keys of ClientConfig.properties).
PROPERTY_PACKETS = {"connect": PacketType.CONNECT, "publish": PacketType.PUBLISH, "will": WILL,
                    "subscribe": PacketType.SUBSCRIBE, "unsubscribe": PacketType.UNSUBSCRIBE,
                    "disconnect": PacketType.DISCONNECT}


@dataclass
class ClientConfig:
    """What the flags asked for. Where and how to connect is `options`, the client
    library's own type (shared with bridges); the rest is the MQTT session and what
    the tool does with it."""

    tool: str
    options: ClientOptions = field(default_factory=lambda: ClientOptions(tls=TlsOptions()))
    given: set = field(default_factory=set)  # first names of the flags given, for the checks
    # The MQTT session (the CONNECT packet)
    client_id: str | None = None
    id_prefix: str | None = None
    keepalive: int = 60
    clean_session: bool = True
    session_expiry: int | None = None
    protocol_version: int = 4
    username: str | None = None
    password: str | None = None
    will_topic: str | None = None
    will_payload: bytes | None = None
    will_qos: int = 0
    will_retain: bool = False
    properties: dict = field(default_factory=lambda: {name: {} for name in PROPERTY_PACKETS})
    qos: int = 0
    max_inflight: int = 20
    debug: bool = False
    quiet: bool = False
    # pub / rr: the message
    topics: list = field(default_factory=list)
    message_mode: str | None = None  # "m", "f", "s", "l", "n"
    message: bytes | None = None
    file: str | None = None
    retain: bool = False
    repeat: int = 1
    repeat_delay: float = 0.0
    # sub / rr: what to receive and how to print it
    filter_outs: list = field(default_factory=list)
    unsub_topics: list = field(default_factory=list)
    msg_count: int = 0
    timeout: int = 0
    exit_after_sub: bool = False
    no_retain: bool = False
    retained_only: bool = False
    remove_retained: bool = False
    retain_as_published: bool = False
    random_filter: int = 10000  # per ten thousand
    eol: bool = True
    verbose: bool = False
    format: str | None = None
    pretty: bool = False
    response_topic: str | None = None

    def connect_packet(self) -> Connect:
        props = dict(self.properties["connect"])
        if self.protocol_version == 5:
            expiry = self.session_expiry_interval()
            if expiry:  # as mosquitto: only a non-zero interval is sent
                props[Property.SESSION_EXPIRY_INTERVAL] = expiry
            if self.tool == "sub" and 0 < self.msg_count < 20 and Property.RECEIVE_MAXIMUM not in props:
                props[Property.RECEIVE_MAXIMUM] = self.msg_count
        will = None
        if self.will_topic is not None:
            will = Will(self.will_topic, self.will_payload or b"", self.will_qos, self.will_retain,
                        dict(self.properties["will"]) if self.protocol_version == 5 else {})
        return Connect(
            protocol_version=self.protocol_version, client_id=self.resolved_client_id(),
            clean_start=self.clean_session, keepalive=self.keepalive, username=self.username,
            password=None if self.password is None else self.password.encode(),
            will=will, properties=props,
            protocol_name="MQIsdp" if self.protocol_version == 3 else "MQTT")

    def session_expiry_interval(self) -> int:
        """MQTT v5: -x if given, else "never" with -c (mosquitto's rule), else 0."""
        if self.session_expiry is not None:
            return self.session_expiry
        return 0 if self.clean_session else NEVER_EXPIRES

    def resolved_client_id(self) -> str:
        if self.client_id is not None:
            return self.client_id
        if self.id_prefix is not None:
            return f"{self.id_prefix}{os.getpid()}"
        if self.protocol_version == 3:  # 3.1 forbids empty identifiers: make one up
            import secrets
            import string

            alphabet = string.ascii_letters + string.digits
            return "mosq-" + "".join(secrets.choice(alphabet) for _ in range(18))
        return ""
