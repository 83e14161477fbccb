"""Partial and coalesced reads, and the fan-out encoders."""

import pytest

from midge.protocol.codec import Decoder, encode, encode_publish, prepare_publish
from midge.protocol.constants import Property as P
from midge.protocol.packets import Connect, Puback, Publish, Subscribe, Subscription
from tests.protocol.helpers import connect_bytes


def stream(version: int) -> tuple[list, bytes]:
    packets = [Connect(version, "c", protocol_name="MQIsdp" if version == 3 else "MQTT")]
    packets += [Publish(f"t/{i}", bytes([i]) * i, i % 3, bool(i % 2), False, (i or 1) if i % 3 else None)
                for i in range(20)]
    packets += [Puback(5), Subscribe(7, [Subscription("a/#", 1)]), Publish("big", b"z" * 70000)]
    return packets, b"".join(encode(p, version) for p in packets)


@pytest.mark.parametrize("version", [3, 4, 5])
def test_one_byte_at_a_time(version):
    packets, data = stream(version)
    decoder = Decoder()
    out = []
    for i in range(len(data)):
        out += decoder.feed(data[i:i + 1])
    assert decoder.error is None
    assert out == packets


@pytest.mark.parametrize("version", [4, 5])
@pytest.mark.parametrize("size", [2, 3, 7, 100, 4096])
def test_chunks_of_every_size(version, size):
    packets, data = stream(version)
    decoder = Decoder()
    out = []
    for i in range(0, len(data), size):
        out += decoder.feed(data[i:i + size])
    assert (out, decoder.error) == (packets, None)


@pytest.mark.parametrize("version", [4, 5])
def test_hundred_publishes_in_one_call(version):
    publishes = [Publish(f"sensors/{i}", b"%d" % i) for i in range(100)]
    decoder = Decoder()
    decoder.feed(connect_bytes(version))
    assert decoder.feed(b"".join(encode(p, version) for p in publishes)) == publishes


def test_split_inside_fixed_header_and_body():
    data = encode(Publish("t", b"x" * 300), 4)  # remaining length takes 2 bytes
    decoder = Decoder()
    decoder.feed(connect_bytes(4))
    assert decoder.feed(data[:1]) == []
    assert decoder.feed(data[1:2]) == []
    assert decoder.feed(data[2:150]) == []
    assert decoder.feed(data[150:] + data[:3]) == [Publish("t", b"x" * 300)]
    assert decoder.feed(data[3:]) == [Publish("t", b"x" * 300)]


def test_large_payload_in_many_reads_is_decoded_once():
    payload = bytes(range(256)) * 4096  # 1 MiB
    data = encode(Publish("t", payload, 1, packet_id=3), 4)
    decoder = Decoder()
    decoder.feed(connect_bytes(4))
    out = []
    for i in range(0, len(data), 1000):
        out += decoder.feed(data[i:i + 1000])
    assert len(out) == 1 and out[0].payload == payload


def test_accepts_bytearray_and_memoryview():
    data = connect_bytes(4) + encode(Publish("t", b"x"), 4)
    decoder = Decoder()
    chunk = bytearray(data[:5])
    out = decoder.feed(chunk)
    chunk[:] = b"\xff" * 5  # the caller reuses its buffer: the decoder kept a copy
    out += decoder.feed(memoryview(data)[5:])
    assert decoder.error is None and [type(p) for p in out] == [Connect, Publish]


def test_invalid_role():
    with pytest.raises(ValueError):
        Decoder(role="peer")


# -- Fan-out encoders ----------------------------------------------------------------------

@pytest.mark.parametrize("version", [3, 4, 5])
@pytest.mark.parametrize("qos", [0, 1, 2])
def test_encode_publish_matches_encode(version, qos):
    properties = {P.USER_PROPERTY: [("a", "b")]} if version == 5 else {}
    packet_id = 42 if qos else None
    packet = Publish("t/x", b"p" * 200, qos, True, bool(qos), packet_id, properties)
    assert encode_publish("t/x", b"p" * 200, qos, True, bool(qos), packet_id, properties,
                          version) == encode(packet, version)


@pytest.mark.parametrize("version", [4, 5])
@pytest.mark.parametrize("qos", [1, 2])
def test_prepared_publish_patches_only_the_packet_id(version, qos):
    properties = {P.MESSAGE_EXPIRY_INTERVAL: 9} if version == 5 else {}
    prepared = prepare_publish("a/b", b"m" * 300, qos, True, properties, version)
    for packet_id in (1, 2, 65535):
        expected = encode(Publish("a/b", b"m" * 300, qos, True, False, packet_id, properties), version)
        assert prepared.with_packet_id(packet_id) == expected
        assert b"".join(prepared.chunks(packet_id)) == expected
    resend = encode(Publish("a/b", b"m" * 300, qos, True, True, 9, properties), version)
    assert prepared.with_packet_id(9, dup=True) == resend
    assert b"".join(prepared.chunks(9, dup=True)) == resend


@pytest.mark.parametrize("version", [4, 5])
def test_prepared_publish_qos0_is_shared_bytes(version):
    prepared = prepare_publish("a/b", b"m", 0, False, None, version)
    assert prepared.data == encode(Publish("a/b", b"m"), version)
    assert b"".join(prepared.chunks()) == prepared.data
    assert prepared.chunks()[1] is prepared.tail  # the payload part is passed through


def test_encode_publish_refuses_missing_packet_id():
    with pytest.raises(ValueError):
        encode_publish("t", b"", 1)
