"""The v3 QoS 0 / QoS 1 PUBLISH fast path (`Decoder._publish_v3`) and the encoder caches:
same packets and same errors as the general path, whether the topic was seen before."""

import pytest

from midge.protocol import codec, errors
from midge.protocol.codec import Decoder, encode, encode_publish, encode_publish_qos0_v3
from midge.protocol.packets import Publish
from tests.protocol.helpers import as_server


@pytest.mark.parametrize("version", [3, 4])
def test_seen_and_unseen_topics_decode_alike(version):
    data = b"".join(encode(Publish(topic, payload), version) for topic, payload in
                    [("fast/a", b"1"), ("fast/a", b"2"), ("fast/\u00e9", b""), ("fast/\u00e9", b"3" * 300)])
    for _ in range(2):  # the second time every topic comes from the cache
        packets, error = as_server(data, version)
        assert error is None
        assert packets == [Publish("fast/a", b"1"), Publish("fast/a", b"2"),
                           Publish("fast/\u00e9", b""), Publish("fast/\u00e9", b"3" * 300)]


@pytest.mark.parametrize("topic, error", [
    (b"fast/+", errors.TopicNameInvalid), (b"#", errors.TopicNameInvalid),
    (b"", errors.ProtocolError), (b"a\x00", errors.MalformedPacket), (b"\xc0\xaf", errors.MalformedPacket),
])
def test_invalid_topics_are_never_cached(topic, error):
    packet = bytes((0x30, 2 + len(topic))) + len(topic).to_bytes(2, "big") + topic
    for _ in range(2):
        packets, got = as_server(packet, 4)
        assert packets == [] and type(got) is error
    assert topic not in codec._TOPIC_NAMES


def test_v5_and_flagged_publishes_take_the_general_path():
    data = encode(Publish("fast/v5", b"x", properties={}), 5)
    assert as_server(data, 5) == ([Publish("fast/v5", b"x")], None)
    retained = encode(Publish("fast/r", b"x", retain=True), 4)
    assert as_server(retained, 4) == ([Publish("fast/r", b"x", retain=True)], None)


def test_topic_cache_is_bounded(monkeypatch):
    monkeypatch.setattr(codec, "_TOPIC_NAMES_LIMIT", 3)
    data = b"".join(encode(Publish(f"bound/{i}", b"x"), 4) for i in range(10))
    packets, error = as_server(data, 4)
    assert error is None and [p.topic for p in packets] == [f"bound/{i}" for i in range(10)]
    assert len(codec._TOPIC_NAMES) <= 3


@pytest.mark.parametrize("retain", [False, True])
@pytest.mark.parametrize("size", [0, 1, 100, 120, 121, 122, 200, 20000])
def test_qos0_v3_encoder_matches_the_general_encoder(retain, size):
    for topic in ("enc/t", "enc/\u00e9", "x" * 300):
        payload = bytes(range(256)) * (size // 256) + b"p" * (size % 256)
        for _ in range(2):  # second time: the topic field comes from the cache
            assert encode_publish_qos0_v3(topic, payload, retain) == encode_publish(
                topic, payload, 0, retain, version=4)
    decoder = Decoder(version=4, role="client")
    assert decoder.feed(encode_publish_qos0_v3("enc/t", b"abc", retain)) == [
        Publish("enc/t", b"abc", retain=retain)]


def test_alternating_topics_and_the_last_topic_shortcut():
    topics = ["alt/a", "alt/b", "alt/a", "alt/a", "alt/bb", "alt/b", "/", "alt/a"]
    data = b"".join(encode(Publish(topic, topic.encode()), 4) for topic in topics)
    for _ in range(2):
        packets, error = as_server(data, 4)
        assert error is None
        assert [(p.topic, p.payload) for p in packets] == [(t, t.encode()) for t in topics]


def test_a_known_topic_running_past_its_packet_is_malformed():
    known = encode(Publish("fast/a", b"x"), 4)
    # Remaining length 3 cuts "fast/a" after "f"; the bytes that follow spell the rest.
    truncated = b"\x30\x03\x00\x06f" + b"ast/a"
    for data in (known + truncated, known + known + truncated):
        packets, error = as_server(data, 4)
        assert all(p == Publish("fast/a", b"x") for p in packets)
        assert type(error) is errors.MalformedPacket and "topic" in str(error)


def test_publish_qos0_is_the_dataclass_with_defaults():
    from midge.protocol.packets import publish_qos0
    built = publish_qos0("a/b", b"x")
    assert built == Publish("a/b", b"x") and type(built) is Publish
    assert built.properties == {} and built.properties is not publish_qos0("a/b", b"x").properties


def test_wire_is_the_received_packet_only_for_a_minimal_header():
    small = encode(Publish("wire/t", b"x"), 4)
    big = encode(Publish("wire/t", b"x" * 200), 4)
    padded = bytes((0x30, 0x80 | (len(small) - 2), 0)) + small[2:]   # a 2-byte remaining length
    for _ in range(2):
        packets, error = as_server(small + big + padded, 4)
        assert error is None and packets == [Publish("wire/t", b"x"), Publish("wire/t", b"x" * 200),
                                             Publish("wire/t", b"x")]
        assert [p.wire for p in packets][1:] == [None, None]
    assert packets[0].wire == small
    assert as_server(small, 3)[0][0].wire == small
    assert as_server(encode(Publish("wire/t", b"x", properties={}), 5), 5)[0][0].wire is None


@pytest.mark.parametrize("version", [3, 4])
def test_qos1_takes_the_fast_path_alike(version):
    data = b"".join(encode(Publish("q1/t", bytes([i]), 1, packet_id=i + 1), version) for i in range(3))
    for _ in range(2):
        packets, error = as_server(data, version)
        assert error is None
        assert packets == [Publish("q1/t", bytes([i]), 1, packet_id=i + 1) for i in range(3)]
        assert all(p.wire is None for p in packets)
    pid0 = encode(Publish("q1/t", b"x", 1, packet_id=1), 4).replace(b"q1/t\x00\x01", b"q1/t\x00\x00")
    packets, error = as_server(pid0, 4)
    assert packets == [] and type(error) is errors.ProtocolError and "identifier 0" in str(error)
    short = b"\x32\x07\x00\x04q1/t\x00"   # the packet id cut after one byte
    packets, error = as_server(short, 4)
    assert packets == [] and type(error) is errors.MalformedPacket and "identifier" in str(error)
