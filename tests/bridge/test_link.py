"""bridge/link.py: the bridge's local end, driven by the broker test harness (no sockets,
no loop; time is the harness's number)."""

from __future__ import annotations

from midge.bridge.link import LocalLink, publish_state
from midge.config import load_config_string
from midge.protocol.packets import Publish, Pubrel
from tests.broker.harness import Harness


def bridge_config(*lines: str):
    text = ("connection b\naddress 127.0.0.1:1883\nremote_clientid b-remote\n"
            + "\n".join(lines or ("topic out/# out 1", "topic in/# in 1")) + "\n")
    return load_config_string(text).bridges[0]


class Owner:
    """Stands where the bridge runner stands and records what the link tells it."""

    def __init__(self):
        self.forwarded: list[Publish] = []
        self.closed = 0
        self.keepalives: list[float] = []
        self.woken = False
        self.batches = 0

    def forward(self, packet):
        self.forwarded.append(packet)

    def local_closed(self):
        self.closed += 1

    def keep_alive(self, interval):
        self.keepalives.append(interval)

    def wake(self):
        self.woken = True

    def flushed(self):
        self.batches += 1


def settle(harness: Harness, owner: Owner) -> None:
    """Drain the broker until the link has nothing more to feed it."""
    while True:
        owner.woken = False
        harness.drain()
        if not owner.woken:
            return


def open_link(harness: Harness, config, owner: Owner | None = None) -> tuple[LocalLink, Owner]:
    owner = owner or Owner()
    link = LocalLink(harness.broker, config, owner, lambda: harness.now)
    link.open()
    settle(harness, owner)
    return link, owner


def test_link_connects_as_local_clientid_with_local_username_and_subscribes_out_topics():
    h = Harness()
    link, owner = open_link(h, bridge_config("topic out/# out 1 l/ r/", "local_username lu", "local_password wrong"))
    assert not link.closed and owner.closed == 0
    session = h.broker.sessions["local.b-remote"]
    assert [sub.filter for sub in session.subscriptions.values()] == ["l/out/#"]
    # The name appears in the log line; the password is never checked (Mosquitto's rule).
    assert h.log.has("New bridge connected from bridge:b as local.b-remote (p5, c0, k0, u'lu')")
    assert owner.batches >= 1


def test_local_message_is_forwarded_and_held_until_acknowledged_then_resent_with_dup():
    h = Harness()
    config = bridge_config()
    link, owner = open_link(h, config)
    publisher = h.connect("pub")
    publisher.publish("out/a", b"one", qos=1, packet_id=5)
    settle(h, owner)
    [packet] = owner.forwarded
    assert (packet.topic, packet.payload, packet.qos, packet.dup) == ("out/a", b"one", 1, False)
    session = h.broker.sessions["local.b-remote"]
    assert len(session.inflight) == 1  # not acknowledged: the remote has not confirmed it

    link.close()  # the remote side went down before confirming
    settle(h, owner)
    again, again_owner = open_link(h, config)
    [resent] = again_owner.forwarded
    assert (resent.topic, resent.dup) == ("out/a", True)
    again.acknowledge(resent.packet_id, 1)
    settle(h, again_owner)
    assert len(session.inflight) == 0


def test_qos2_both_ways_completes_without_the_owner():
    h = Harness()
    link, owner = open_link(h, bridge_config("topic both/# both 2"))
    subscriber = h.connect("sub")
    subscriber.subscribe("both/#", 2)
    link.publish("both/in", b"from remote", 2, False, {})
    settle(h, owner)
    [delivered] = subscriber.publishes()
    assert (delivered.topic, delivered.payload, delivered.qos) == ("both/in", b"from remote", 2)
    assert owner.forwarded == []  # No Local: the bridge does not get its own message back
    assert not h.broker.sessions["local.b-remote"].incoming_qos2  # PUBREL/PUBCOMP done by the link

    subscriber.publish("both/out", b"to remote", qos=2, packet_id=9)
    subscriber.send(Pubrel(9))  # the broker passes a QoS 2 message on at PUBREL
    settle(h, owner)
    [packet] = owner.forwarded
    link.acknowledge(packet.packet_id, 2)  # PUBREC; the broker's PUBREL is answered by the link
    settle(h, owner)
    assert len(h.broker.sessions["local.b-remote"].inflight) == 0


def test_offline_session_queues_for_the_lazy_threshold():
    h = Harness()
    config = bridge_config()
    link, owner = open_link(h, config)
    link.close()
    settle(h, owner)
    publisher = h.connect("pub")
    assert h.broker.queued_messages(config.local_clientid) == 0
    publisher.publish("out/1", qos=1, packet_id=1)
    publisher.publish("out/2", qos=1, packet_id=2)
    publisher.publish("out/3", qos=0)  # QoS 0 is not kept for an offline session
    assert h.broker.queued_messages(config.local_clientid) == 2
    assert h.broker.queued_messages("nobody") == 0


def test_takeover_of_the_local_clientid_tells_the_owner():
    h = Harness()
    link, owner = open_link(h, bridge_config())
    h.connect("local.b-remote")
    settle(h, owner)
    assert link.closed and owner.closed == 1


def test_clientid_prefixes_do_not_refuse_the_bridge():
    h = Harness(clientid_prefixes="allowed-")
    link, owner = open_link(h, bridge_config())
    assert not link.closed and owner.closed == 0
    assert not h.log.messages("error")
    h.connect("stranger", expect=5)  # other clients are still held to the prefix


def test_forced_keepalive_asks_the_owner_to_ping():
    h = Harness(max_keepalive=30)
    link, owner = open_link(h, bridge_config())
    assert owner.keepalives == [15]
    h.advance(20)
    link.ping()
    settle(h, owner)
    h.advance(40)  # 60 s after connecting: past 1.5 x 30 s without the ping, within it after
    assert not link.closed and owner.closed == 0


def test_publish_state_is_a_retained_local_notification():
    h = Harness()
    config = bridge_config("topic out/# out 1", "notification_topic bridges/b")
    publish_state(h.broker, config, b"1", h.now)
    late = h.connect("late")
    late.subscribe("bridges/b", 1)
    [message] = late.publishes()
    assert (message.payload, message.retain) == (b"1", True)
