"""The local end of a bridge: a client of midge's own broker, fed encoded packets.

`LocalLink.open()` creates a `broker.Client` whose `io` is the link, sends it the
local CONNECT and SUBSCRIBE (`bridge/rules.py`), and from then on the link talks to
the broker in MQTT 5 bytes as a network client would, but in the same process:
`send(packet)` is input to the broker; `flush()`, called by whoever drains the
broker's output (the server's `drain()`, or the broker test harness), decodes what
the broker sent to the bridge and hands it to the link's owner.

The owner (the bridge runner in `server/bridge.py`, or a test) implements:

- `forward(publish)`: a local message for an `out`/`both` topic;
- `local_closed()`: the broker closed the local client (shutdown, takeover, refusal);
- `keep_alive(interval)`: the broker forced a keepalive on us: call `ping()` that often;
- `wake()`: the broker has new output: drain it soon;
- `flushed()`: the end of one `flush()` batch (write to the remote now).

No clock of its own: `clock()` gives the time the broker is told.
"""

from __future__ import annotations

from midge.bridge.rules import local_connect, local_subscriptions, notification_topic
from midge.broker.message import Message
from midge.client.reasons import reason_string
from midge.protocol.codec import Decoder, encode
from midge.protocol.constants import PacketType, Property
from midge.protocol.packets import Pingreq, Puback, Pubcomp, Publish, Pubrec, Pubrel, Subscribe


class LocalLink:
    """The bridge's connection to midge's own broker: the `io` of a broker Client."""

    def __init__(self, broker, config, owner, clock):
        self.broker = broker
        self.config = config
        self.owner = owner
        self.clock = clock
        self.decoder = Decoder(version=5, role="client")
        self.client = None
        self.closed = False
        self.next_id = 0

    def open(self) -> None:
        config = self.config
        # No listener: the broker's internal one (Mosquitto's bridge context has none).
        self.client = self.broker.new_client(None, f"bridge:{config.name}", None, self, self.clock())
        # Security and the broker treat a client with `bridge` set as midge's own
        # (no authentication or ACL checks, kept across reloads), as Mosquitto does
        # its bridge context.
        self.client.bridge = config
        self.send(local_connect(config))
        subscriptions = local_subscriptions(config)
        if subscriptions:
            self.send(Subscribe(self._new_id(), subscriptions))
        self.owner.wake()

    def close(self) -> None:
        """End the local side (the remote is down): its session keeps what QoS > 0 waits."""
        client = self.client
        if client is not None and not self.closed:
            self.closed = True
            client.close(self.clock(), "shutdown", send_will=False)
            self.owner.wake()

    def send(self, packet) -> None:
        client = self.client
        if client is None or self.closed:
            return
        client.receive_data(encode(packet, 5), self.clock())

    def publish(self, topic: str, payload: bytes, qos: int, retain: bool, properties: dict) -> None:
        """A message from the remote, published locally."""
        packet_id = self._new_id() if qos else None
        self.send(Publish(topic, payload, qos, retain, False, packet_id, properties))

    def acknowledge(self, packet_id: int, qos: int) -> None:
        """The remote has a local QoS 1/2 message: complete it locally (PUBACK / PUBREC)."""
        self.send(Puback(packet_id) if qos == 1 else Pubrec(packet_id))
        self.owner.wake()

    def ping(self) -> None:
        if not self.closed:
            self.send(Pingreq())
            self.owner.wake()

    def _new_id(self) -> int:
        self.next_id = self.next_id % 65535 + 1
        return self.next_id

    # -- Called by whoever drains the broker ------------------------------------------

    def flush(self) -> None:
        client = self.client
        if client is None:
            return
        output = client.output
        data = b"".join(output) if output else b""
        output.clear()
        owner = self.owner
        fed = False
        for packet in self.decoder.feed(data) if data else ():
            kind = packet.type
            if kind == PacketType.PUBLISH:
                owner.forward(packet)
            elif kind == PacketType.PUBREC:  # our QoS 2 publish arrived
                self.send(Pubrel(packet.packet_id))
                fed = True
            elif kind == PacketType.PUBREL:  # a QoS 2 message we acknowledged with PUBREC
                self.send(Pubcomp(packet.packet_id))
                fed = True
            elif kind == PacketType.CONNACK:
                self._connack(packet)
            elif kind == PacketType.SUBACK:
                failed = [c for c in packet.reason_codes if c >= 0x80]
                if failed:
                    self.broker.log.warning(f"Bridge {self.config.name}: the local broker refused "
                                            f"{len(failed)} of the bridge's local subscriptions.")
        if client.closing and not self.closed:
            self.closed = True  # the broker closed us (shutdown, takeover, refusal)
            owner.local_closed()
        if fed:
            owner.wake()
        owner.flushed()

    def _connack(self, packet) -> None:
        code = packet.reason_code
        if code:
            # Nothing the configuration controls refuses midge's own bridge (no password
            # or ACL check, no clientid_prefixes): this reports a bug, not a setting.
            self.broker.log.error(
                f"Bridge {self.config.name}: the local broker refused the bridge's local connection "
                f"as {self.config.local_clientid} ({reason_string(code)}, {code:#x}); restarting the bridge.")
            return
        keepalive = packet.properties.get(Property.SERVER_KEEP_ALIVE)
        if keepalive:  # max_keepalive forced one on us: keep the local session alive
            self.owner.keep_alive(keepalive / 2)


def publish_state(broker, config, payload: bytes, now: float) -> None:
    """The bridge's retained local notification (`1` up, `0` down), published by the
    broker itself: the local client may not exist yet."""
    broker.publish(Message(notification_topic(config), payload, 1, True, {}), now)
