"""An in-memory "server" for broker tests: connections are byte pipes, time is a number.

Packets are encoded with the real codec, fed to `client.receive_data`, and the
broker's output is decoded with a client-role Decoder, so every test goes
through the wire format.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile

from midge.broker import Broker
from midge.config import load_config_string
from midge.config.model import Config, ListenerConfig
from midge.log import LogType, MemoryLog as _MemoryLog
from midge.protocol.codec import Decoder, encode
from midge.protocol.packets import (
    Connack, Connect, Disconnect, Publish, Puback, Pubcomp, Pubrec, Pubrel, Suback, Subscribe,
    Subscription, Unsuback, Unsubscribe, Will,
)
from midge.security import Security
from midge.security.passwords import hash_password


class MemoryLog(_MemoryLog):
    """midge's MemoryLog with every type enabled, and the harness's lookups by name."""

    def messages(self, kind=None) -> list[str]:
        if isinstance(kind, str):
            kind = LogType[kind.upper()]
        return super().messages(kind)

    def has(self, text: str) -> bool:
        return self.contains(text)


# Options that `per_listener_settings false` (the default) keeps global: given to
# make_listener, they still go to the global part of the config text.
_SECURITY_OPTIONS = frozenset((
    "allow_anonymous", "allow_zero_length_clientid", "auto_id_prefix", "password_file",
    "acl_file", "psk_file",
))


class ListenerOptions(dict):
    """Listener options by their mosquitto.conf names, for `make_config(listener=...)`
    and `Harness.open(listener=...)`."""


def make_listener(**options) -> ListenerOptions:
    return ListenerOptions(options)


def _line(name: str, value) -> str:
    if value is True or value is False:
        value = "true" if value else "false"
    return f"{name} {value}\n"


def config_text(listener: dict | None = None, **options) -> str:
    """mosquitto.conf text for the harness: one listener, anonymous allowed unless said."""
    listener = dict(listener or {})
    for name in _SECURITY_OPTIONS & listener.keys():
        options[name] = listener.pop(name)
    options.setdefault("allow_anonymous", True)
    options.setdefault("sys_interval", 0)
    text = "".join(_line(name, value) for name, value in options.items() if value is not None)
    text += "listener 1883\n"
    text += "".join(_line(name, value) for name, value in listener.items() if value is not None)
    return text


def make_config(listener: dict | None = None, **options) -> Config:
    """A real Config from config text: global options by their mosquitto.conf names,
    listener options via `listener=make_listener(...)`."""
    return load_config_string(config_text(listener, **options), "harness.conf")


def build_listener(options: dict) -> ListenerConfig:
    """A real ListenerConfig for a second listener of a harness broker."""
    return make_config(listener=options).listeners[0]


_TEMP_DIRS: list[str] = []
atexit.register(lambda: [shutil.rmtree(d, ignore_errors=True) for d in _TEMP_DIRS])


def security_files(users: dict[str, bytes] | None = None, acl: str | None = None,
                   plugin: str | None = None) -> dict[str, str]:
    """A password file (cheap hashes: 10 iterations), an ACL file and a Python plugin
    (its source) in a temporary folder, as `password_file` / `acl_file` / `plugin`."""
    folder = tempfile.mkdtemp(prefix="midge-harness-")
    _TEMP_DIRS.append(folder)
    options = {}
    if users is not None:
        path = f"{folder}/passwords"
        with open(path, "w") as f:
            for name, password in users.items():
                f.write(f"{name}:{hash_password(password, iterations=10)}\n")
        options["password_file"] = path
    if acl is not None:
        path = f"{folder}/acl"
        with open(path, "w") as f:
            f.write(acl)
        options["acl_file"] = path
    if plugin is not None:
        path = f"{folder}/plugin.py"
        with open(path, "w") as f:
            f.write(plugin)
        options["plugin"] = path
    return options


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
    """A broker on a real Config and a real Security. `users`, `acl` (ACL file text) and
    `plugin` (plugin source) become a password file, an ACL file and a plugin; without
    users, anonymous clients are let in."""

    def __init__(self, config=None, security=None, now=1000.0, users=None, acl=None, plugin=None,
                 **options):
        self.now = now
        self.log = MemoryLog()
        if users is not None or acl is not None or plugin is not None:
            options.update(security_files(users, acl, plugin))
            if users is not None:
                options.setdefault("allow_anonymous", False)
            options.setdefault("auth_fail_delay", 0)
        self.config = config or make_config(**options)
        self.listener = self.config.listeners[0]
        self.security = security or Security(self.config, self.log)
        self.broker = Broker(self.config, self.log, self.security, now=now)
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
        if isinstance(listener, ListenerOptions):
            listener = build_listener(listener)
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


__all__ = ["Harness", "MemoryLog", "make_config", "make_listener", "security_files", "Will", "Puback", "Pubrec",
           "Pubrel", "Pubcomp", "Publish", "Disconnect", "Connect", "Subscribe", "Subscription"]
