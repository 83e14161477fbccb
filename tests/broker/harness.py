"""An in-memory "server" for broker tests: connections are byte pipes, time is a number.

Packets are encoded with the real codec, fed to `client.receive_data`, and the
broker's output is decoded with a client-role Decoder, so every test goes
through the wire format.
"""

from __future__ import annotations

from types import SimpleNamespace

from midge.broker import Broker
from midge.protocol.codec import Decoder, encode
from midge.protocol.packets import (
    Connack, Connect, Disconnect, Publish, Puback, Pubcomp, Pubrec, Pubrel, Suback, Subscribe,
    Subscription, Unsuback, Unsubscribe, Will,
)


class MemoryLog:
    """Collects log lines; every type enabled (so formatting code paths run)."""

    def __init__(self):
        self.lines: list[tuple[object, str]] = []

    def enabled(self, log_type) -> bool:
        return True

    def log(self, log_type, message):
        self.lines.append((log_type, message))

    def _make(name):
        def method(self, message):
            self.lines.append((name, message))
        return method

    error = _make("error")
    warning = _make("warning")
    notice = _make("notice")
    info = _make("info")
    debug = _make("debug")
    subscribe = _make("subscribe")
    unsubscribe = _make("unsubscribe")
    del _make

    def messages(self, kind=None) -> list[str]:
        return [m for k, m in self.lines if kind is None or k == kind]

    def has(self, text: str) -> bool:
        return any(text in m for _, m in self.lines)


def make_listener(**options):
    security = SimpleNamespace(allow_anonymous=True, allow_zero_length_clientid=True,
                               auto_id_prefix="auto-", password_file=None, acl_file=None,
                               psk_file=None, plugins=[])
    for name in ("allow_anonymous", "allow_zero_length_clientid", "auto_id_prefix"):
        if name in options:
            setattr(security, name, options.pop(name))
    listener = SimpleNamespace(port=1883, mount_point=None, max_qos=2, max_topic_alias=10,
                               use_username_as_clientid=False, use_identity_as_username=False,
                               use_subject_as_username=False, cert_identity_as_username=None,
                               cert_identity_as_clientid=None, security=security)
    for name, value in options.items():
        setattr(listener, name, value)
    return listener


def make_config(**options):
    """Global options by their mosquitto.conf names; listener options via `listener=`."""
    listener = options.pop("listener", None) or make_listener()
    config = SimpleNamespace(
        max_inflight_messages=20, max_inflight_bytes=0, max_queued_messages=1000,
        max_queued_bytes=0, queue_qos0_messages=False, upgrade_outgoing_qos=False,
        message_size_limit=0, max_packet_size=0, max_keepalive=0, retain_available=True,
        persistent_client_expiration=None, sys_interval=0, connection_messages=True,
        allow_duplicate_messages=False, clientid_prefixes=None, check_retain_source=False,
        listeners=[listener], security=listener.security,
    )
    for name, value in options.items():
        setattr(config, name, value)
    return config


class Conn:
    """One fake network connection and the MQTT client at its end."""

    def __init__(self, harness, client, version):
        self.harness = harness
        self.client = client
        self.version = version
        self.decoder = Decoder(version=version, role="client")
        self.inbox: list = []
        self.closed = False

    # -- sending ---------------------------------------------------------------------
    def send(self, *packets) -> None:
        data = b"".join(encode(packet, self.version) for packet in packets)
        self.send_raw(data)

    def send_raw(self, data: bytes) -> None:
        self.client.receive_data(data, self.harness.now)
        self.harness.drain()

    def lose(self) -> None:
        """The network connection drops."""
        self.client.connection_lost(self.harness.now)
        self.closed = True
        self.harness.drain()

    # -- receiving -------------------------------------------------------------------
    def take(self) -> list:
        packets, self.inbox = self.inbox, []
        return packets

    def take_one(self, cls=None):
        packets = self.take()
        assert len(packets) == 1, f"expected one packet, got {packets}"
        if cls is not None:
            assert isinstance(packets[0], cls), f"expected {cls.__name__}, got {packets[0]}"
        return packets[0]

    def publishes(self) -> list[Publish]:
        packets = self.take()
        assert all(isinstance(p, Publish) for p in packets), packets
        return packets

    # -- MQTT conveniences -------------------------------------------------------------
    def subscribe(self, topic_filter, qos=0, packet_id=1, properties=None, **options):
        self.send(Subscribe(packet_id, [Subscription(topic_filter, qos, **options)], properties or {}))
        assert self.inbox and isinstance(self.inbox[0], Suback), self.inbox
        return self.inbox.pop(0)  # retained messages that follow stay in the inbox

    def unsubscribe(self, topic_filter, packet_id=2):
        self.send(Unsubscribe(packet_id, [topic_filter]))
        return self.take_one(Unsuback)

    def publish(self, topic, payload=b"x", qos=0, retain=False, packet_id=None, properties=None, dup=False):
        if qos and packet_id is None:
            packet_id = 1
        self.send(Publish(topic, payload, qos, retain, dup, packet_id, properties or {}))

    def disconnect(self, reason_code=0, properties=None):
        self.send(Disconnect(reason_code, properties or {}))


class Harness:
    def __init__(self, config=None, security=None, now=1000.0, **options):
        self.now = now
        self.log = MemoryLog()
        self.config = config or make_config(**options)
        self.listener = self.config.listeners[0]
        self.broker = Broker(self.config, self.log, security=security, now=now)
        self.conns: dict[object, Conn] = {}
        self.port = 40000

    def drain(self) -> None:
        for client in self.broker.take_pending():
            conn = self.conns.get(id(client))
            if conn is None:
                if client.io is not None:
                    client.io.flush()  # an in-process peer (a bridge's LocalLink) reads its own output
                else:
                    client.output.clear()
                continue
            if client.output:
                data = b"".join(client.output)
                client.output.clear()
                if not conn.closed:
                    conn.inbox.extend(conn.decoder.feed(data))
                    assert conn.decoder.error is None, conn.decoder.error
            if client.closing and not conn.closed:
                conn.closed = True
                client.connection_lost(self.now)

    def open(self, version=4, listener=None, tls=None) -> Conn:
        self.port += 1
        client = self.broker.new_client(listener or self.listener, f"127.0.0.1:{self.port}", tls,
                                        None, self.now)
        conn = Conn(self, client, version)
        self.conns[id(client)] = conn
        return conn

    def connect(self, client_id="c1", version=4, clean_start=True, keepalive=60, will=None,
                username=None, password=None, properties=None, expect=0, listener=None, tls=None) -> Conn:
        conn = self.open(version, listener, tls)
        conn.send(Connect(version, client_id, clean_start, keepalive, username, password, will,
                          properties or {}, "MQIsdp" if version == 3 else "MQTT"))
        assert conn.inbox, "no CONNACK"
        connack = conn.inbox.pop(0)
        assert isinstance(connack, Connack), connack
        assert connack.reason_code == expect, connack
        if expect:
            assert conn.inbox == [], conn.inbox
        conn.connack = connack
        return conn

    def advance(self, seconds: float) -> None:
        """Move the clock, firing every timer that falls due on the way."""
        target = self.now + seconds
        while True:
            deadline = self.broker.next_deadline()
            if deadline is None or deadline > target:
                break
            self.now = max(self.now, deadline)
            self.broker.handle_timer(self.now)
            self.drain()
        self.now = target
        self.broker.handle_timer(self.now)
        self.drain()


__all__ = ["Harness", "MemoryLog", "make_config", "make_listener", "Will", "Puback", "Pubrec",
           "Pubrel", "Pubcomp", "Publish", "Disconnect", "Connect", "Subscribe", "Subscription"]
