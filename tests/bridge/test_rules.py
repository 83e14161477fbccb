"""bridge/rules.py: what a bridge decides from its options, tested without a loop."""

from __future__ import annotations

import random

import pytest

from midge.bridge.rules import (
    Backoff, local_connect, local_subscriptions, notification_topic, packet_limit, probes_primary,
    protocol_version, refusal_text, refuses_try_private, relayed_properties, remap_incoming, remap_outgoing,
    remote_connect, remote_requests, tls_options,
)
from midge.broker.session import NEVER
from midge.config import load_config_string
from midge.config.model import BridgeTopic
from midge.protocol.constants import Property


def bridge(*lines: str):
    """The BridgeConfig of `connection b` with these option lines (real config parsing)."""
    text = "connection b\nremote_clientid b-remote\n" + "\n".join(lines) + "\n"
    if not any(line.startswith("address") for line in lines):
        text += "address 127.0.0.1:1883\n"
    if not any(line.startswith("topic ") for line in lines):
        text += "topic # out 0\n"
    return load_config_string(text).bridges[0]


# -- Remapping ----------------------------------------------------------------------------------

TOPICS = [BridgeTopic("sensors/#", "both", 1, "local/", "remote/"),
          BridgeTopic("", "out", 0, "a/b", "x/y"),
          BridgeTopic("plain/#", "in", 0)]


def test_remap_outgoing_strips_local_prefix_and_adds_remote_prefix():
    assert remap_outgoing(TOPICS, "local/sensors/t1") == "remote/sensors/t1"
    assert remap_outgoing(TOPICS, "a/b") == "x/y"           # pattern "" maps one topic
    assert remap_outgoing(TOPICS, "other/t") == "other/t"   # no matching line: unchanged


def test_remap_incoming_strips_remote_prefix_and_adds_local_prefix():
    assert remap_incoming(TOPICS, "remote/sensors/t1") == "local/sensors/t1"
    assert remap_incoming(TOPICS, "x/y") == "x/y"           # an `out` line never maps inwards
    assert remap_incoming(TOPICS, "plain/z") == "plain/z"


def test_remapping_from_parsed_topic_lines_uses_the_first_matching_line():
    config = bridge('topic a/# out 0 "" r1/', 'topic a/b/# out 0 "" r2/', 'topic in/# in 1 l/ ""')
    assert remap_outgoing(config.topics, "a/b/c") == "r1/a/b/c"
    assert remap_incoming(config.topics, "in/x") == "l/in/x"
    assert remap_outgoing(config.topics, "l/in/x") == "l/in/x"  # `in` lines never map outwards


def test_relayed_properties_drop_what_belongs_to_one_hop():
    properties = {Property.TOPIC_ALIAS: 3, Property.SUBSCRIPTION_IDENTIFIER: [7],
                  Property.CONTENT_TYPE: "text/plain", Property.USER_PROPERTY: [("k", "v")]}
    assert relayed_properties(properties) == {Property.CONTENT_TYPE: "text/plain",
                                              Property.USER_PROPERTY: [("k", "v")]}
    assert relayed_properties({}) == {}


# -- Back-off and addresses -------------------------------------------------------------------

class _Highest:
    def randint(self, low, high):
        return high


def test_backoff_fixed_and_jitter_capped():
    fixed = Backoff((3, None))
    assert [fixed.next() for _ in range(3)] == [3, 3, 3]
    jitter = Backoff((2, 30), rng=_Highest())
    assert [jitter.next() for _ in range(4)] == [6, 18, 30, 30]
    jitter.reset()
    assert jitter.delay == 2


def test_backoff_jitter_stays_between_base_and_cap():
    backoff = Backoff((5, 30), rng=random.Random(11))
    delays = [backoff.next() for _ in range(200)]
    assert min(delays) >= 5 and max(delays) <= 30
    assert len(set(delays)) > 5  # jitter, not a fixed step


def test_restart_timeout_option_drives_the_backoff():
    assert Backoff(bridge("restart_timeout 7").restart_timeout).next() == 7
    default = Backoff(bridge().restart_timeout, rng=_Highest())
    assert (default.base, default.cap) == (5, 30)
    assert default.next() == 15


def test_only_round_robin_false_on_a_backup_address_probes_the_primary():
    two = "addresses 127.0.0.1:1883 127.0.0.1:1884"
    assert probes_primary(bridge(two), 1)
    assert not probes_primary(bridge(two), 0)
    assert not probes_primary(bridge(two, "round_robin true"), 1)


# -- Packets ------------------------------------------------------------------------------------

def test_protocol_version_by_name():
    assert protocol_version(bridge()) == 4
    assert protocol_version(bridge("bridge_protocol_version mqttv31")) == 3
    assert protocol_version(bridge("bridge_protocol_version mqttv50")) == 5


def test_notification_topic_default_and_configured():
    assert notification_topic(bridge()) == "$SYS/broker/connection/b-remote/state"
    assert notification_topic(bridge("notification_topic up/b")) == "up/b"


def test_remote_connect_v311_with_try_private_will_and_credentials():
    config = bridge("remote_username u", "remote_password p", "keepalive_interval 30")
    packet = remote_connect(config, 4, try_private=True)
    assert (packet.protocol_version, packet.protocol_name, packet.client_id) == (4, "MQTT", "b-remote")
    assert packet.bridge and not packet.clean_start and packet.keepalive == 30
    assert (packet.username, packet.password) == ("u", b"p")
    will = packet.will
    assert (will.topic, will.payload, will.qos, will.retain) == ("$SYS/broker/connection/b-remote/state", b"0", 1, True)
    assert packet.properties == {}
    assert not remote_connect(config, 4, try_private=False).bridge


def test_remote_connect_v31_and_v5():
    assert remote_connect(bridge(), 3, True).protocol_name == "MQIsdp"
    v5 = remote_connect(bridge(), 5, try_private=True)
    assert not v5.bridge  # MQTT 5 has No Local; Mosquitto sets the bit for 3.x only
    assert v5.properties == {Property.SESSION_EXPIRY_INTERVAL: NEVER}
    clean = remote_connect(bridge("cleansession true"), 5, True)
    assert clean.clean_start and Property.SESSION_EXPIRY_INTERVAL not in clean.properties


@pytest.mark.parametrize("line", ["notifications false", "notifications_local_only true"])
def test_no_will_without_remote_notifications(line):
    assert remote_connect(bridge(line), 4, True).will is None


def test_remote_requests_follow_topic_order_and_cap_qos():
    config = bridge("topic in/# in 2", "topic out/# out 1", "topic both/# both 2 l/ r/")
    requests = remote_requests(config, 4, max_qos=1)
    assert [(kind, getattr(r, "topic_filter", r)) for kind, r in requests] == [
        ("subscribe", "in/#"), ("unsubscribe", "out/#"), ("subscribe", "r/both/#")]
    assert [r.qos for kind, r in requests if kind == "subscribe"] == [1, 1]
    assert not any(r.no_local for kind, r in requests if kind == "subscribe")
    v5 = remote_requests(config, 5, max_qos=2)
    assert all(r.no_local and r.retain_as_published for kind, r in v5 if kind == "subscribe")
    quiet = bridge("topic out/# out 1", "bridge_attempt_unsubscribe false")
    assert remote_requests(quiet, 4, 2) == []


def test_local_connect_names_the_local_end_and_keeps_its_session():
    config = bridge("local_username lu", "local_password lp")
    packet = local_connect(config)
    assert (packet.protocol_version, packet.client_id, packet.username) == (5, "local.b-remote", "lu")
    assert packet.password is None  # never checked, as in Mosquitto: not sent
    assert packet.bridge and not packet.clean_start
    assert packet.properties == {Property.SESSION_EXPIRY_INTERVAL: NEVER}
    clean = local_connect(bridge("local_cleansession true", "local_clientid mine"))
    assert clean.clean_start and clean.client_id == "mine" and clean.properties == {}


def test_local_subscriptions_cover_out_and_both_lines_with_no_local():
    config = bridge("topic in/# in 1", "topic out/# out 1 l/ r/", "topic both/# both 2")
    subscriptions = local_subscriptions(config)
    assert [(s.topic_filter, s.qos) for s in subscriptions] == [("l/out/#", 1), ("both/#", 2)]
    assert all(s.no_local and s.retain_as_published for s in subscriptions)


@pytest.mark.parametrize("remote, own, limit", [(0, 0, 0), (100, 0, 100), (0, 50, 50), (100, 50, 50), (40, 50, 40)])
def test_packet_limit_is_the_smaller_of_the_set_ones(remote, own, limit):
    assert packet_limit(remote, own) == limit


# -- Refusals and TLS ---------------------------------------------------------------------------

def test_refusal_wording_matches_mosquitto():
    assert refusal_text(4, 5) == "Connection Refused: not authorised"
    assert refusal_text(3, 2) == "Connection Refused: identifier rejected"
    assert refusal_text(4, 9) == "Connection Refused: unknown reason"
    assert refusal_text(5, 0x87) == "Connection Refused: Not authorized (0x87)"


def test_try_private_refusal_is_a_protocol_level_refusal():
    assert refuses_try_private(True, 1)
    assert refuses_try_private(True, 0x84)
    assert not refuses_try_private(False, 1)
    assert not refuses_try_private(True, 5)


def test_tls_options_from_bridge_options(tmp_path):
    assert tls_options(bridge()) is None
    psk = tls_options(bridge("bridge_identity id", "bridge_psk deadbeef"))
    assert (psk.psk, psk.psk_identity) == (bytes.fromhex("deadbeef"), "id")
    ca = tmp_path / "ca.pem"
    ca.write_text("")
    cert = tls_options(bridge(f"bridge_cafile {ca}", "bridge_insecure true", "bridge_alpn mqtt",
                              "bridge_tls_version tlsv1.3"))
    assert (cert.cafile, cert.insecure, cert.alpn, cert.min_version) == (str(ca), True, ["mqtt"], "tlsv1.3")

